"""Report JSON v1: every report we build validates against the shipped schema, and the contract keys hold."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import reports
from probes.model import Mode, RunResult, Status, Verdict
from reports import json_report

MakeVerdict = Callable[..., Verdict]
MakeRun = Callable[..., RunResult]
CONTRACT_KEYS = ["schema", "generated_at", "cluster", "checks", "modes", "recommendation", "timing"]


def written(run: RunResult, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "out" / "report.json"
    reports.write_json(reports.build_report(run), path)
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def test_every_profile_report_validates(profile_run: RunResult, tmp_path: Path) -> None:
    report = written(profile_run, tmp_path)
    assert json_report.validate(report) is True
    assert list(report)[: len(CONTRACT_KEYS)] == CONTRACT_KEYS
    assert report["schema"] == "dindcheck/report/v1"


def test_written_file_equals_the_report_dict(profile_run: RunResult, tmp_path: Path) -> None:
    assert written(profile_run, tmp_path) == reports.build_report(profile_run).json


def test_modes_never_include_none(profile_run: RunResult) -> None:
    modes = reports.build_report(profile_run).json["modes"]
    assert [mode["id"] for mode in modes] == [
        "buildkit-rootless",
        "kaniko",
        "sysbox",
        "dind",
        "host-socket",
        "buildpacks",
    ]
    assert all(set(mode) == {"id", "usable", "blocked_by", "warnings"} for mode in modes)


def test_schema_rejects_none_as_an_assessed_mode(profiles: dict[str, RunResult]) -> None:
    report = copy.deepcopy(reports.build_report(profiles["permissive"]).json)
    report["modes"][0]["id"] = "none"
    with pytest.raises(jsonschema.ValidationError):
        json_report.validate(report)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("checks", 0, "status"), "passed"),
        (("recommendation", "full_docker"), "buildah"),
        (("timing", "total_s"), "84s"),
        (("schema",), "dindcheck/report/v2"),
    ],
)
def test_schema_rejects_contract_violations(
    profiles: dict[str, RunResult], path: tuple[str | int, ...], value: str
) -> None:
    report = copy.deepcopy(reports.build_report(profiles["permissive"]).json)
    target: Any = report
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        json_report.validate(report)


def test_schema_requires_the_skypilot_snippet(profiles: dict[str, RunResult]) -> None:
    report = copy.deepcopy(reports.build_report(profiles["permissive"]).json)
    del report["recommendation"]["snippets"]["skypilot"]
    with pytest.raises(jsonschema.ValidationError):
        json_report.validate(report)


def test_checks_hold_only_what_ran(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    report = reports.build_report(make_run(make_verdict("lsm", Status.SKIPPED, "no node access")))
    assert [check["id"] for check in report.json["checks"]] == ["lsm"]
    assert report.json["checks"][0]["status"] == "skipped"
    assert json_report.validate(report.json)


def test_required_mode_is_added_when_asked(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    run = make_run(make_verdict("buildkit-rootless"), required_mode=Mode.DIND)
    report = reports.build_report(run)
    assert report.json["required_mode"] == {"mode": "dind", "usable": False}
    assert not report.is_usable(Mode.DIND)
    assert report.is_usable(Mode.BUILDKIT_ROOTLESS)
    assert report.is_usable(Mode.NONE)
    assert json_report.validate(report.json)


def test_required_mode_is_absent_when_not_asked(profiles: dict[str, RunResult]) -> None:
    assert "required_mode" not in reports.build_report(profiles["permissive"]).json


def test_timing_has_the_total_and_each_check(profiles: dict[str, RunResult]) -> None:
    timing = reports.build_report(profiles["permissive"]).json["timing"]
    assert timing["total_s"] == 84.25
    assert timing["checks"]["docker-run"] == 1.5


def test_file_is_utf8_with_indent_2(make_verdict: MakeVerdict, make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run(make_verdict("lsm", summary="AppArmor profile “cri-containerd.apparmor.d” enforced"))
    path = tmp_path / "report.json"
    reports.write_json(reports.build_report(run), path)
    text = path.read_text(encoding="utf-8")
    assert "“cri-containerd.apparmor.d”" in text
    assert text.startswith('{\n  "schema": "dindcheck/report/v1",\n')
    assert text.endswith("}\n")


def test_writing_twice_gives_identical_bytes(profiles: dict[str, RunResult], tmp_path: Path) -> None:
    report = reports.build_report(profiles["userns-off"])
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    reports.write_json(report, first)
    reports.write_json(report, second)
    assert first.read_bytes() == second.read_bytes()


def test_odd_evidence_values_become_json(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    evidence = {"modes": {"dind", "sysbox"}, "pair": (1, 2), "path": Path("/var/lib/docker"), "status": Status.FAIL}
    report = reports.build_report(make_run(make_verdict("overlay-cache", evidence=evidence)))
    assert report.json["checks"][0]["evidence"] == {
        "modes": ["dind", "sysbox"],
        "pair": [1, 2],
        "path": "/var/lib/docker",
        "status": "fail",
    }
    json.dumps(report.json)


def test_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    schema = json_report.load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
