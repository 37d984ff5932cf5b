"""--each-pool through the plugin's real collection: one test per pool, ids that -k and JUnit can use.

The cluster is replaced by fixed Node objects (tests/plugin/fixed_runner.py swaps the two cluster calls the plugin
makes before collection); pool discovery, parametrization and selection are the plugin's own code.
"""

from __future__ import annotations

import pytest

from tests.plugin.fixed_runner import conftest, probe_tests, with_every_probe_passing_on_its_pool, with_nodes

pytest_plugins = ("pytester",)


def collect(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeconftest(conftest(with_nodes, "default", "tainted-ci"))
    pytester.makepyfile(test_lsm=probe_tests("lsm"))
    return pytester.runpytest_subprocess("-p", "dindcheck.plugin", "--collect-only", "-q", *args)


def test_each_pool_collects_one_test_per_pool(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--each-pool", "dindcheck.io/pool", "--toleration", "all")
    result.stdout.fnmatch_lines(["test_lsm.py::test_lsm[pool=ci]", "test_lsm.py::test_lsm[pool=default]"])
    assert result.ret == 0


def test_k_selects_one_pool(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--each-pool", "dindcheck.io/pool", "--toleration", "all", "-k", "pool_ci")
    result.stdout.fnmatch_lines(["test_lsm.py::test_lsm[pool=ci]"])
    result.stdout.no_fnmatch_line("*pool=default*")


def test_a_tainted_pool_without_toleration_is_left_out(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--each-pool", "dindcheck.io/pool")
    result.stdout.fnmatch_lines(["test_lsm.py::test_lsm[pool=default]"])
    result.stdout.no_fnmatch_line("*pool=ci*")


def test_a_label_no_node_has_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--each-pool", "agentpool")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--each-pool agentpool: no node has the label agentpool*"])


def test_each_pool_and_node_contradict(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--each-pool", "dindcheck.io/pool", "--node", "node-a")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--each-pool and --node contradict each other*"])


def test_without_each_pool_ids_are_unchanged(pytester: pytest.Pytester) -> None:
    result = collect(pytester)
    result.stdout.fnmatch_lines(["test_lsm.py::test_lsm"])


# --- the gate over pools: a pool that exists by label but was not probed is never "usable on every pool" ---


def gate(pytester: pytest.Pytester, nodes: tuple[str, ...], *args: str) -> pytest.RunResult:
    """Every selected probe of every probed pool has passed, on that pool's node (nodes: names in NODES)."""
    pytester.makeconftest(conftest(with_every_probe_passing_on_its_pool, *nodes))
    pytester.makepyfile(test_dind=probe_tests("privileged-admission", "socket-sharing", "docker-run"))
    return pytester.runpytest_subprocess(
        "-p", "dindcheck.plugin", "--each-pool", "dindcheck.io/pool", "--require-mode", "dind", *args
    )


def test_a_cordoned_pool_fails_the_gate_and_is_named_with_why(pytester: pytest.Pytester) -> None:
    """Every check passed on the default pool, but the ci pool was never probed: dind is not proven on every pool."""
    result = gate(pytester, ("default", "cordoned-ci"), "--toleration", "all")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "dindcheck: pool ci: NOT PROBED: no Ready, schedulable node: node-ci cordoned",
            "dindcheck: --require-mode dind: NOT usable on pool(s) ci",
            "dindcheck: --require-mode dind: pool ci was not probed: no Ready, schedulable node: node-ci cordoned",
        ]
    )
    assert "--require-mode dind: usable on every pool" not in result.stdout.str()


def test_an_untolerated_pool_fails_the_gate_and_names_the_toleration(pytester: pytest.Pytester) -> None:
    result = gate(pytester, ("default", "tainted-ci"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["dindcheck: --require-mode dind: pool ci was not probed: *add --toleration dedicated=ci:NoSchedule*"]
    )


def test_the_gate_passes_when_every_pool_was_probed_and_proven(pytester: pytest.Pytester) -> None:
    result = gate(pytester, ("default", "tainted-ci"), "--toleration", "all")
    result.assert_outcomes(passed=6)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["dindcheck: --require-mode dind: usable on every pool"])
