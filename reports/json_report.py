"""The CONTRACT report "dindcheck/report/v1" (docs/contracts.md): users' scripts read it, so keys are only ever added.

Keys are written in the contract's order, evidence exactly as the probes gave it (made JSON-safe), UTF-8, indent 2.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

from probes.model import ClusterInfo, FleetRun, Mode, PoolResult, RunResult

if TYPE_CHECKING:
    from pathlib import Path

    from reports.recommend import ModeAssessment, Recommendation

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


def pool_json(pool: PoolResult, own: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of `pools`: the pool's identity, then its own report's (own) checks, modes, recommendation, timings.

    Its timing has only the checks': the pools were probed in one run, whose wall time is the top-level total_s.
    """
    return {
        **plain_object(pool.to_json()),
        "checks": own["checks"],
        "modes": own["modes"],
        "recommendation": own["recommendation"],
        "timing": {"checks": own["timing"]["checks"]},
    }


def _modes_json(assessments: tuple[ModeAssessment, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": assessment.mode.value,
            "usable": assessment.usable,
            "blocked_by": list(assessment.blocked_by),
            "warnings": list(assessment.warnings),
        }
        for assessment in assessments
    ]


def _recommendation_json(recommendation: Recommendation) -> dict[str, Any]:
    return {
        "full_docker": recommendation.full_docker.value,
        "build_only": recommendation.build_only.value,
        "from_source": recommendation.from_source.value,
        "reasons": list(recommendation.reasons),
        "snippets": dict(recommendation.snippets),
    }


def build_report_json(
    run: RunResult,
    assessments: tuple[ModeAssessment, ...],
    recommendation: Recommendation,
    *,
    pools: Sequence[tuple[PoolResult, Mapping[str, Any]]] = (),
    unusable_pools: Sequence[str] = (),
) -> dict[str, Any]:
    """The v1 dict. Extra keys beyond the contract: required_mode (when asked for) and timing.checks.

    With pools (an --each-pool run: each pool and its own report's JSON) also pool_label, pools and unprobed_pools;
    checks is then empty (no check ran on the cluster as a whole) and modes and recommendation are what holds on every
    pool, and required_mode names unusable_pools (the pools where the required mode is not usable).
    """
    report: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "generated_at": run.generated_at,
        "cluster": plain_object(run.cluster.to_json()),
        "checks": [plain_object(verdict.to_json()) for verdict in run.verdicts],
        "modes": _modes_json(assessments),
        "recommendation": _recommendation_json(recommendation),
        "timing": {
            "total_s": round(run.total_s, 3),
            "checks": {verdict.id: round(verdict.duration_s, 3) for verdict in run.verdicts},
        },
    }
    if pools:
        report["pool_label"] = run.pool_label
        report["pools"] = [pool_json(pool, own) for pool, own in pools]
        report["unprobed_pools"] = [plain_object(pool.to_json()) for pool in run.unprobed_pools]
    if run.throttled is not None:
        report["throttled"] = plain_object(run.throttled.to_json())
    if run.required_mode is not None:
        report["required_mode"] = {
            "mode": run.required_mode.value,
            "usable": required_mode_usable(run.required_mode, assessments),
        }
        if pools:
            report["required_mode"]["unusable_pools"] = list(unusable_pools)
    return report


def fleet_notes(contexts: Sequence[str]) -> str:
    """The fleet document's cluster note: it is no cluster itself, each cluster's report is in `clusters`."""
    return f"a fleet of {len(contexts)} clusters (contexts {', '.join(contexts)}): each cluster's report is in clusters"


def build_fleet_json(
    fleet: FleetRun,
    assessments: tuple[ModeAssessment, ...],
    recommendation: Recommendation,
    *,
    clusters: Sequence[tuple[str, Mapping[str, Any]]],
    unusable_clusters: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The v1 dict of a fleet run: what holds on every cluster at top level, each cluster's own document in clusters.

    clusters: (context, that cluster's whole v1 document) for each probed cluster. The top level's cluster block is
    no cluster (empty server, version and nodes; a note says where the clusters are) and its checks are empty: no
    check ran on the fleet as a whole.
    """
    contexts = [*(context for context, _ in clusters), *(unprobed.context for unprobed in fleet.unprobed)]
    report: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "generated_at": fleet.generated_at,
        "cluster": plain_object(ClusterInfo(server="", version="", notes=(fleet_notes(contexts), *notes)).to_json()),
        "checks": [],
        "modes": _modes_json(assessments),
        "recommendation": _recommendation_json(recommendation),
        "timing": {"total_s": round(fleet.total_s, 3)},
        "clusters": [{"context": context, **document} for context, document in clusters],
        "unprobed_clusters": [plain_object(unprobed.to_json()) for unprobed in fleet.unprobed],
    }
    if fleet.required_mode is not None:
        report["required_mode"] = {
            "mode": fleet.required_mode.value,
            "usable": required_mode_usable(fleet.required_mode, assessments),
            "unusable_clusters": list(unusable_clusters),
        }
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
