"""The exit code a CI step sees: --fail-on-inconclusive and --require-mode, through the plugin's real session end.

The cluster part of the run is replaced by a runner with fixed verdicts (tests/plugin/fixed_runner.py); everything
after it, the tests' outcomes, the report, the exit policy and the terminal summary, is the plugin's own code.
"""

from __future__ import annotations

import pytest

from probes.definitions import catalog
from tests.plugin.fixed_runner import conftest, make_probe_modules, with_statuses

pytest_plugins = ("pytester",)


def run(pytester: pytest.Pytester, statuses: dict[str, str], *args: str) -> pytest.RunResult:
    pytester.makeconftest(conftest(with_statuses, statuses))
    make_probe_modules(pytester, *statuses)
    return pytester.runpytest_subprocess("-p", "dindcheck.plugin", *args)


def test_an_inconclusive_check_is_a_skip_and_exit_0_by_default(pytester: pytest.Pytester) -> None:
    result = run(pytester, {"lsm": "inconclusive"})
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["proved nothing: 1 of 1 checks (1 inconclusive, 0 skipped): lsm inconclusive: lsm said inconclusive"]
    )


def test_fail_on_inconclusive_turns_proved_nothing_into_exit_1(pytester: pytest.Pytester) -> None:
    result = run(pytester, {"lsm": "inconclusive", "docker-run": "pass"}, "--fail-on-inconclusive")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["dindcheck: --fail-on-inconclusive: lsm proved nothing"])


@pytest.mark.parametrize("status", ["pass", "skipped"])
def test_fail_on_inconclusive_leaves_answers_alone(pytester: pytest.Pytester, status: str) -> None:
    """A skip is an answer (sysbox is not installed), not 'proved nothing' about the cluster's behaviour."""
    result = run(pytester, {"sysbox": status}, "--fail-on-inconclusive")
    assert result.ret == pytest.ExitCode.OK
    assert "--fail-on-inconclusive:" not in result.stdout.str()


def test_require_mode_exits_0_when_the_mode_is_usable_even_if_other_checks_fail(pytester: pytest.Pytester) -> None:
    result = run(pytester, {"buildkit-rootless": "pass", "host-socket": "fail"}, "--require-mode", "buildkit-rootless")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["dindcheck: --require-mode buildkit-rootless: usable"])


def test_require_mode_exits_1_when_the_mode_is_not_proven_although_every_test_passed(
    pytester: pytest.Pytester,
) -> None:
    result = run(pytester, {"lsm": "pass"}, "--require-mode", "dind")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["dindcheck: --require-mode dind: NOT usable"])


def test_a_usable_required_mode_does_not_hide_an_inconclusive_check(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        {"buildkit-rootless": "pass", "lsm": "inconclusive"},
        "--require-mode",
        "buildkit-rootless",
        "--fail-on-inconclusive",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_the_report_lists_every_catalog_check_selected_or_not(pytester: pytest.Pytester) -> None:
    """The check list is the catalog's, in its order (RunResult.capabilities): a deselected check shows as not run."""
    result = run(pytester, {"lsm": "pass"})
    result.stdout.fnmatch_lines(
        [f"{definition.id} *{'pass' if definition.id == 'lsm' else 'not run'}*" for definition in catalog()]
    )


def test_a_run_stopped_early_still_reports_every_probe_that_finished(pytester: pytest.Pytester) -> None:
    """-x stops pytest at the first failure; the report is fed by the runner, so the probes it finished are in it."""
    result = run(pytester, {"buildkit-rootless": "fail", "docker-run": "pass", "lsm": "pass"}, "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["buildkit-rootless *fail *said fail", "docker-run *pass *docker-run said pass", "lsm *pass *lsm said pass"]
    )


@pytest.mark.parametrize(
    ("args", "why"),
    [(("--collect-only",), "--collect-only"), (("-k", "no_such_check"), "no check was selected")],
    ids=["collect-only", "all-deselected"],
)
def test_a_gate_that_ran_nothing_exits_1_saying_so(pytester: pytest.Pytester, args: tuple[str, ...], why: str) -> None:
    """--require-mode answers 'was MODE proven?': with no check run nothing was, so the gate cannot pass."""
    result = run(pytester, {"docker-run": "pass"}, "--require-mode", "dind", *args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"dindcheck: --require-mode dind: NOT usable: no check ran ({why}), *"])


def test_collect_only_without_a_gate_keeps_pytest_s_exit_code(pytester: pytest.Pytester) -> None:
    result = run(pytester, {"docker-run": "pass"}, "--collect-only")
    assert result.ret == pytest.ExitCode.OK
    assert "--require-mode" not in result.stdout.str()
