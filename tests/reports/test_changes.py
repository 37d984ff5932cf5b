"""What changed since the baseline: status moves, regressions, recommendation moves, cluster facts; bad baselines."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from probes.exceptions import UsageError
from reports import build_report, changes
from tests.reports.conftest import PROFILES

SERVER = "https://127.0.0.1:6443"


def report(profile: str) -> dict[str, Any]:
    return copy.deepcopy(build_report(PROFILES[profile]()).json)


def test_no_change_is_one_line() -> None:
    found = changes.compute_changes(report("permissive"), report("permissive"))
    assert found.empty
    assert found.regressions == ()
    assert changes.changes_terminal_lines(found) == ["since the baseline of 2025-06-01T12:00:00Z: no change"]
    assert "No change." in changes.changes_markdown(found)
    assert found.to_json()["none"] is True


def test_privileged_denied_since_last_night_is_a_dind_regression() -> None:
    found = changes.compute_changes(report("permissive"), report("deny-privileged"))
    assert found.regressions == ("dind",)
    moved = {change.id: change for change in found.checks}
    assert (moved["privileged-admission"].before, moved["privileged-admission"].after) == ("pass", "fail")
    assert "ValidatingAdmissionPolicy" in moved["privileged-admission"].after_summary
    assert any(change.what == "full_docker" and change.after == "none" for change in found.recommendation)
    lines = changes.changes_terminal_lines(found)
    assert "REGRESSED: dind" in lines[0]
    assert any(
        line.startswith("  - mode dind: usable -> NOT usable (blocked by privileged-admission") for line in lines
    )
    assert "**Regressed:** `dind`" in changes.changes_markdown(found)


def test_a_mode_that_starts_working_is_a_change_not_a_regression() -> None:
    found = changes.compute_changes(report("deny-privileged"), report("permissive"))
    assert found.regressions == ()
    assert any(change.id == "dind" and change.is_usable for change in found.modes)


def test_node_runtime_kernel_and_image_digest_changes_are_listed() -> None:
    before, after = report("permissive"), report("permissive")
    before["cluster"]["images"] = {"dind": {"ref": "docker:28-dind", "digest": "sha256:old"}}
    after["cluster"]["images"] = {"dind": {"ref": "docker:28-dind", "digest": "sha256:new"}}
    after["cluster"]["nodes"][0]["container_runtime"] = "containerd://2.1.4"
    after["cluster"]["nodes"][0]["kernel"] = "6.8.0-45-generic"
    after["cluster"]["version"] = "v1.32.0"
    found = changes.compute_changes(before, after)
    described = [change.describe() for change in found.cluster]
    assert "server version: v1.31.4 -> v1.32.0" in described
    assert "node testbed-0 container_runtime: containerd://1.7.24 -> containerd://2.1.4" in described
    assert "node testbed-0 kernel: 6.1.0-28-amd64 -> 6.8.0-45-generic" in described
    assert "image dind (docker:28-dind): sha256:old -> sha256:new" in described


def test_a_check_missing_from_one_report_moved_from_or_to_not_run() -> None:
    before, after = report("permissive"), report("permissive")
    after["checks"] = [c for c in after["checks"] if c["id"] != "lsm"]
    (change,) = changes.compute_changes(before, after).checks
    assert (change.id, change.before, change.after) == ("lsm", "pass", "not run")


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"schema": "dindcheck/report/v0"}), "schema 'dindcheck/report/v0'"),
        (json.dumps([1, 2]), "not a dindcheck report"),
        (
            json.dumps({"schema": "dindcheck/report/v1", "cluster": {"server": "https://other:6443"}}),
            "https://other:6443",
        ),
    ],
)
def test_bad_baselines_are_one_line_usage_errors(tmp_path: Path, content: str, said: str) -> None:
    with pytest.raises(UsageError) as raised:
        changes.load_baseline(write(tmp_path, content), server=SERVER)
    assert said in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unreadable_baseline_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read it"):
        changes.load_baseline(tmp_path / "absent.json", server=SERVER)


def test_a_baseline_of_this_cluster_loads(tmp_path: Path) -> None:
    baseline = changes.load_baseline(write(tmp_path, json.dumps(report("permissive"))), server=SERVER)
    assert baseline["schema"] == "dindcheck/report/v1"


def test_the_report_carries_its_changes_block() -> None:
    built = build_report(PROFILES["deny-privileged"](), report("permissive"))
    assert built.changes is not None
    assert built.json["changes"]["regressions"] == ["dind"]
