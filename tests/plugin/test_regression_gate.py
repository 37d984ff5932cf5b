"""--fail-on-regression through the plugin's real session end, with a pinned baseline.

The pinned baseline keeps failing after the night a mode was lost, when the rolling one (last night) sees no loss.

The cluster part is the fixed runner (tests/plugin/fixed_runner.py); the baselines are read by the plugin's own loader.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from reports import build_report
from tests.plugin.fixed_runner import SERVER, conftest, make_probe_modules, with_statuses
from tests.reports.conftest import CLUSTER, PROFILES

pytest_plugins = ("pytester",)

# tonight: the dind pod is refused (its checks skipped: exit 0 without the gate); everything else as the permissive run
TONIGHT = {
    "privileged-admission": "skipped",
    "socket-sharing": "skipped",
    "docker-run": "skipped",
    "buildkit-rootless": "pass",
}


def baseline_file(path: Path, profile: str) -> Path:
    """A report of a testbed profile, as if of the fixed runner's cluster."""
    run = PROFILES[profile]()
    report = build_report(replace(run, cluster=replace(CLUSTER, server=SERVER))).json
    path.write_text(json.dumps(report))
    return path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeconftest(conftest(with_statuses, TONIGHT, load_baselines=True))
    make_probe_modules(pytester, *TONIGHT)
    return pytester.runpytest_subprocess("-p", "dindcheck.plugin", *args)


def test_a_mode_lost_before_last_night_fails_again_against_the_pinned_baseline(pytester: pytest.Pytester) -> None:
    last_night = baseline_file(pytester.path / "last-night.json", "deny-privileged")
    pinned = baseline_file(pytester.path / "pinned.json", "permissive")
    rolling_only = run(pytester, "--baseline", str(last_night), "--fail-on-regression")
    assert rolling_only.ret == 0, "the rolling baseline alone forgets: dind was lost the night before"
    result = run(pytester, "--baseline", str(last_night), "--pinned-baseline", str(pinned), "--fail-on-regression")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["dindcheck: --fail-on-regression: no longer usable: dind (lost since the pinned baseline of *)"]
    )
    result.stdout.fnmatch_lines(["since the pinned baseline of 2025-06-01T12:00:00Z: REGRESSED: dind"])
    assert "REGRESSED" not in next(line for line in result.outlines if line.startswith("since the baseline of"))


def test_a_pinned_baseline_alone_is_enough_for_the_gate(pytester: pytest.Pytester) -> None:
    pinned = baseline_file(pytester.path / "pinned.json", "permissive")
    result = run(pytester, "--pinned-baseline", str(pinned), "--fail-on-regression")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["dindcheck: --fail-on-regression: no longer usable: dind (lost since the pinned *"])


def test_a_pinned_baseline_that_lost_nothing_passes(pytester: pytest.Pytester) -> None:
    pinned = baseline_file(pytester.path / "pinned.json", "deny-privileged")
    result = run(pytester, "--pinned-baseline", str(pinned), "--fail-on-regression")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["since the pinned baseline of *: nothing lost"])


def test_an_unreadable_pinned_baseline_is_a_usage_error_naming_it(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--pinned-baseline", str(pytester.path / "absent.json"), "--fail-on-regression")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pinned-baseline *absent.json: cannot read it*"])


def test_fail_on_regression_without_any_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--fail-on-regression")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--fail-on-regression needs --baseline PATH or --pinned-baseline PATH*"])
