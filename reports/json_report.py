"""The CONTRACT report "dindcheck/report/v1" (docs/contracts.md): users' scripts read it, so keys are only ever added.

Keys are written in the contract's order, evidence exactly as the probes gave it (made JSON-safe), UTF-8, indent 2.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

from probes.model import Mode, RunResult, UnprobedPool

if TYPE_CHECKING:
    from pathlib import Path

    from reports.recommend import ModeAssessment, Recommendation
    from reports.report import PoolReport

SCHEMA_ID = "dindcheck/report/v1"
SCHEMA_RESOURCE = ("schema", "report-v1.json")

JsonValue: TypeAlias = "dict[str, JsonValue] | list[JsonValue] | str | int | float | bool | None"


def plain(value: object) -> JsonValue:
    """Evidence is free-form: turn tuples, sets, enums and odd objects into values json.dumps always accepts."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return [plain(text) for text in sorted(map(str, value))]
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def plain_object(value: Mapping[str, Any]) -> dict[str, JsonValue]:
    """Like plain, for the mappings the model's to_json() gives: the result is known to be an object."""
    return {key: plain(item) for key, item in value.items()}


def required_mode_usable(mode: Mode, assessments: tuple[ModeAssessment, ...]) -> bool:
    """--require-mode gate: 'none' asks for nothing, so it is always met; a mode never assessed is not usable."""
    if mode is Mode.NONE:
        return True
    return any(assessment.mode is mode and assessment.usable for assessment in assessments)


def unusable_pools(mode: Mode, pools: Sequence[PoolReport], unprobed: Sequence[UnprobedPool]) -> list[str]:
    """The pools where a mode is not usable: the probed ones in run order, then every pool nothing was proven on."""
    if mode is Mode.NONE:
        return []
    return [pool.name for pool in pools if not pool.report.is_usable(mode)] + [pool.name for pool in unprobed]


def pool_json(pool: PoolReport) -> dict[str, Any]:
    """One entry of `pools`: the pool's identity, then its own report's checks, modes, recommendation and timings.

    Its timing has only the checks': the pools were probed in one run, whose wall time is the top-level total_s.
    """
    own = pool.report.json
    return {
        **plain_object(pool.pool.to_json()),
        "checks": own["checks"],
        "modes": own["modes"],
        "recommendation": own["recommendation"],
        "timing": {"checks": own["timing"]["checks"]},
    }


def build_report_json(
    run: RunResult,
    assessments: tuple[ModeAssessment, ...],
    recommendation: Recommendation,
    *,
    pools: Sequence[PoolReport] = (),
) -> dict[str, Any]:
    """The v1 dict. Extra keys beyond the contract: required_mode (when asked for) and timing.checks.

    With pools (an --each-pool run) also pool_label, pools and unprobed_pools; checks is then empty (no check ran on
    the cluster as a whole) and modes and recommendation are what holds on every pool.
    """
    report: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "generated_at": run.generated_at,
        "cluster": plain_object(run.cluster.to_json()),
        "checks": [plain_object(verdict.to_json()) for verdict in run.verdicts],
        "modes": [
            {
                "id": assessment.mode.value,
                "usable": assessment.usable,
                "blocked_by": list(assessment.blocked_by),
                "warnings": list(assessment.warnings),
            }
            for assessment in assessments
        ],
        "recommendation": {
            "full_docker": recommendation.full_docker.value,
            "build_only": recommendation.build_only.value,
            "from_source": recommendation.from_source.value,
            "reasons": list(recommendation.reasons),
            "snippets": dict(recommendation.snippets),
        },
        "timing": {
            "total_s": round(run.total_s, 3),
            "checks": {verdict.id: round(verdict.duration_s, 3) for verdict in run.verdicts},
        },
    }
    if pools:
        report["pool_label"] = run.pool_label
        report["pools"] = [pool_json(pool) for pool in pools]
        report["unprobed_pools"] = [plain_object(pool.to_json()) for pool in run.unprobed_pools]
    if run.throttled is not None:
        report["throttled"] = plain_object(run.throttled.to_json())
    if run.required_mode is not None:
        report["required_mode"] = {
            "mode": run.required_mode.value,
            "usable": required_mode_usable(run.required_mode, assessments),
        }
        if pools:
            report["required_mode"]["unusable_pools"] = unusable_pools(run.required_mode, pools, run.unprobed_pools)
    return report


def dumps(report: Mapping[str, Any]) -> str:
    """The file text: UTF-8 characters kept as they are, indent 2, keys in the order built, trailing newline."""
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


def write(report: Mapping[str, Any], path: Path) -> None:
    """Write the report, creating the parent directory a CI step may not have made yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(report), encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """The shipped JSON Schema (draft 2020-12) of report v1."""
    text = resources.files("reports").joinpath(*SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate(report: Mapping[str, Any]) -> bool:
    """Check a report against the shipped schema.

    jsonschema is a test dependency, not a runtime one: returns False when it is not installed (nothing checked),
    True when the report is valid, and raises jsonschema.ValidationError when it is not.
    """
    try:
        import jsonschema  # noqa: PLC0415 - optional dependency, imported only when asked to validate
    except ImportError:
        return False
    jsonschema.Draft202012Validator(load_schema()).validate(report)
    return True
