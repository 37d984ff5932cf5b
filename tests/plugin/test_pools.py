"""--each-pool through the plugin's real collection: one test per pool, ids that -k and JUnit can use.

The cluster is replaced by fixed Node objects (a conftest in the pytester directory swaps the two cluster calls the
plugin makes before collection); pool discovery, parametrization and selection are the plugin's own code.
"""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)

CONFTEST = """
import dindcheck.plugin as plugin
from probes.targets import NodeView, Taint

NODES = (
    NodeView("node-a", ready=True, schedulable=True, labels={"dindcheck.io/pool": "default"}),
    NodeView(
        "node-ci", ready=True, schedulable=True, labels={"dindcheck.io/pool": "ci"},
        taints=(Taint("dedicated", "ci", "NoSchedule"),),
    ),
)

plugin.cluster.connect = lambda kubeconfig, context: object()
plugin.cluster.node_views = lambda connection: NODES
"""

SUITE = """
import pytest
from dindcheck.plugin import expect_pass

@pytest.mark.probe("lsm")
def test_lsm(probe_verdict):
    expect_pass(probe_verdict)
"""


def collect(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lsm=SUITE)
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
    result.stderr.fnmatch_lines(["*--each-pool agentpool: no Ready node has the label agentpool*"])


def test_each_pool_and_node_contradict(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--each-pool", "dindcheck.io/pool", "--node", "node-a")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--each-pool and --node contradict each other*"])


def test_without_each_pool_ids_are_unchanged(pytester: pytest.Pytester) -> None:
    result = collect(pytester)
    result.stdout.fnmatch_lines(["test_lsm.py::test_lsm"])
