"""A fleet run (--context repeated, --all-contexts) through the plugin's real session: ids, outcomes, gate, report.

The clusters are replaced by fixed answers per context (tests/plugin/fixed_runner.py's with_fleet); everything else,
from collection to the exit code and the JSON report, is the plugin's own code.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.plugin.fixed_runner import conftest, make_probe_modules, with_fleet

pytest_plugins = ("pytester",)

ROOTLESS_EVERYWHERE = {
    "prod": {"buildkit-rootless": "pass", "privileged-admission": "pass"},
    "ci": {"buildkit-rootless": "pass", "privileged-admission": "fail"},
}


def run(
    pytester: pytest.Pytester,
    statuses: dict[str, dict[str, str]],
    *args: str,
    unreachable: dict[str, str] | None = None,
) -> pytest.RunResult:
    pytester.makeconftest(conftest(with_fleet, statuses, unreachable))
    make_probe_modules(pytester, *{probe for by_probe in statuses.values() for probe in by_probe})
    return pytester.runpytest_subprocess("-p", "dindcheck.plugin", *args)


def contexts(statuses: dict[str, dict[str, str]], *extra: str) -> list[str]:
    return [arg for context in (*statuses, *extra) for arg in ("--context", context)]


def report_of(pytester: pytest.Pytester) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((pytester.path / "report.json").read_text())
    return document


def test_each_test_runs_once_per_cluster_with_the_cluster_in_its_id(pytester: pytest.Pytester) -> None:
    result = run(pytester, ROOTLESS_EVERYWHERE, *contexts(ROOTLESS_EVERYWHERE), "-v")
    result.stdout.fnmatch_lines_random(
        [
            "*test_buildkit_rootless[[]cluster=prod[]] PASSED*",
            "*test_buildkit_rootless[[]cluster=ci[]] PASSED*",
            "*test_privileged_admission[[]cluster=prod[]] PASSED*",
            "*test_privileged_admission[[]cluster=ci[]] FAILED*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_k_selects_one_cluster(pytester: pytest.Pytester) -> None:
    result = run(pytester, ROOTLESS_EVERYWHERE, *contexts(ROOTLESS_EVERYWHERE), "-k", "cluster_prod", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*cluster=ci*PASSED*")


def test_all_contexts_takes_every_context_of_the_kubeconfig(pytester: pytest.Pytester) -> None:
    result = run(pytester, ROOTLESS_EVERYWHERE, "--all-contexts", "--collect-only", "-q")
    result.stdout.fnmatch_lines_random(["*[[]cluster=prod[]]", "*[[]cluster=ci[]]"])


def test_all_contexts_and_context_contradict(pytester: pytest.Pytester) -> None:
    result = run(pytester, ROOTLESS_EVERYWHERE, "--all-contexts", "--context", "prod")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--all-contexts and --context contradict each other*"])


def test_the_gate_holds_only_where_the_mode_is_usable_on_every_cluster(pytester: pytest.Pytester) -> None:
    result = run(pytester, ROOTLESS_EVERYWHERE, *contexts(ROOTLESS_EVERYWHERE), "--require-mode", "buildkit-rootless")
    result.stdout.fnmatch_lines(["dindcheck: --require-mode buildkit-rootless: usable on every cluster"])
    assert result.ret == pytest.ExitCode.OK


def test_the_gate_names_the_clusters_where_the_mode_is_not_usable(pytester: pytest.Pytester) -> None:
    statuses = {"prod": {"buildkit-rootless": "pass"}, "ci": {"buildkit-rootless": "fail"}}
    result = run(pytester, statuses, *contexts(statuses), "--require-mode", "buildkit-rootless")
    result.stdout.fnmatch_lines(["dindcheck: --require-mode buildkit-rootless: NOT usable on cluster(s) ci"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_an_unreachable_cluster_is_named_and_the_others_still_run(pytester: pytest.Pytester) -> None:
    statuses = {"prod": {"buildkit-rootless": "pass"}}
    result = run(
        pytester,
        statuses,
        *contexts(statuses, "gone"),
        "--require-mode",
        "buildkit-rootless",
        "--report-json",
        "report.json",
        "-v",
        "-rs",
        unreachable={"gone": "the API server https://gone.example:6443 did not answer"},
    )
    result.stdout.fnmatch_lines(
        [
            "dindcheck: [[]gone[]] NOT PROBED: the API server https://gone.example:6443 did not answer",
            "*test_buildkit_rootless[[]cluster=gone[]] SKIPPED*",
        ]
    )
    result.stdout.fnmatch_lines(["SKIPPED*not run: cluster gone was not probed: the API server*did not answer"])
    result.stdout.fnmatch_lines(["*--require-mode buildkit-rootless: NOT usable on cluster(s) gone*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED, "a cluster nothing was proven on holds the gate back"
    report = report_of(pytester)
    assert [entry["context"] for entry in report["clusters"]] == ["prod"]
    assert report["unprobed_clusters"] == [
        {
            "context": "gone",
            "server": "",
            "reason": "the API server https://gone.example:6443 did not answer",
        }
    ]


def test_no_cluster_reachable_is_a_usage_error_naming_each(pytester: pytest.Pytester) -> None:
    statuses: dict[str, dict[str, str]] = {}
    make_probe_modules(pytester, "lsm")
    pytester.makeconftest(conftest(with_fleet, statuses, {"a": "no route to a", "b": "no route to b"}))
    result = pytester.runpytest_subprocess("-p", "dindcheck.plugin", "--context", "a", "--context", "b")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no cluster could be probed: a: no route to a; b: no route to b*"])


def test_the_json_report_has_each_cluster_and_what_holds_on_every_one(pytester: pytest.Pytester) -> None:
    run(pytester, ROOTLESS_EVERYWHERE, *contexts(ROOTLESS_EVERYWHERE), "--report-json", "report.json")
    report = report_of(pytester)
    assert report["schema"] == "dindcheck/report/v1"
    by_context = {entry["context"]: entry for entry in report["clusters"]}
    assert list(by_context) == ["prod", "ci"]
    assert by_context["prod"]["cluster"]["server"] == "https://prod.example:6443"
    assert {check["id"]: check["status"] for check in by_context["ci"]["checks"]} == {
        "buildkit-rootless": "pass",
        "privileged-admission": "fail",
    }
    assert report["checks"] == [], "no check ran on the fleet as a whole"
    assert report["recommendation"]["build_only"] == "buildkit-rootless"


def test_fail_on_inconclusive_names_the_cluster(pytester: pytest.Pytester) -> None:
    statuses = {"prod": {"lsm": "pass"}, "ci": {"lsm": "inconclusive"}}
    result = run(pytester, statuses, *contexts(statuses), "--fail-on-inconclusive")
    result.stdout.fnmatch_lines(["dindcheck: --fail-on-inconclusive: ci/lsm proved nothing"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_each_pool_applies_per_cluster(pytester: pytest.Pytester) -> None:
    statuses = {"prod": {"lsm": "pass"}, "ci": {"lsm": "fail"}}
    pytester.makeconftest(conftest(with_fleet, statuses, None, ("default", "tainted-ci")))
    make_probe_modules(pytester, "lsm")
    result = pytester.runpytest_subprocess(
        "-p", "dindcheck.plugin", *contexts(statuses), "--each-pool", "dindcheck.io/pool", "--toleration", "all", "-v"
    )
    result.stdout.fnmatch_lines_random(
        [
            "*test_lsm[[]cluster=prod,pool=default[]] PASSED*",
            "*test_lsm[[]cluster=prod,pool=ci[]] PASSED*",
            "*test_lsm[[]cluster=ci,pool=default[]] FAILED*",
            "*test_lsm[[]cluster=ci,pool=ci[]] FAILED*",
        ]
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), {"prod": "(a fresh one)", "ci": "ci-builds"}),
        (("--namespace", "shared"), {"prod": "shared", "ci": "shared"}),
    ],
)
def test_each_cluster_probes_in_its_context_namespace_unless_namespace_is_given(
    pytester: pytest.Pytester, extra: tuple[str, ...], expected: dict[str, str]
) -> None:
    statuses = {"prod": {"lsm": "pass"}, "ci": {"lsm": "pass"}}
    pytester.makeconftest(conftest(with_fleet, statuses, None, (), {"ci": "ci-builds"}))
    make_probe_modules(pytester, "lsm")
    result = pytester.runpytest_subprocess("-p", "dindcheck.plugin", *contexts(statuses), *extra)
    result.stdout.fnmatch_lines_random(
        [f"dindcheck: [[]{context}[]] probing in namespace {namespace}" for context, namespace in expected.items()]
    )
