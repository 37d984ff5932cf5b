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
    result.stderr.fnmatch_lines(["*--each-pool agentpool: no node has the label agentpool*"])


def test_each_pool_and_node_contradict(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--each-pool", "dindcheck.io/pool", "--node", "node-a")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--each-pool and --node contradict each other*"])


def test_without_each_pool_ids_are_unchanged(pytester: pytest.Pytester) -> None:
    result = collect(pytester)
    result.stdout.fnmatch_lines(["test_lsm.py::test_lsm"])


# --- the gate over pools: a pool that exists by label but was not probed is never "usable on every pool" ---

GATE_CONFTEST = """
import threading
import time

import dindcheck.plugin as plugin
from probes.engine import ImageLedger
from probes.model import ClusterInfo, Status, Verdict
from probes.targets import NodeView, Taint

NODES = __NODES__


class FixedRunner:
    '''Every selected probe of every probed pool has passed, on that pool's node.'''

    def __init__(self, verdicts):
        self._verdicts = verdicts
        self.cancel = threading.Event()
        self.images = ImageLedger()

    def started(self, key):
        return key in self._verdicts

    def verdict(self, key, on_wait, poll_s=1.0):
        return self._verdicts[key]

    def finished(self):
        return dict(self._verdicts)

    def stop(self, wait_s=5.0):
        self.cancel.set()


def start_without_a_cluster(state, options, reporter):
    state.started_at = time.monotonic()
    state.generated_at = "2026-01-01T00:00:00+00:00"
    state.cluster_info = ClusterInfo(server="https://fixed.example:6443", version="v1.31.4")
    nodes = {target.pool: target.node for target in state.targets}
    verdicts = {}
    for key in state.selected:
        pool, _, probe_id = key.partition("/")
        verdicts[key] = Verdict(probe_id, probe_id, Status.PASS, "passed", nodes=(nodes[pool],))
    state.runner = FixedRunner(verdicts)
    for line in plugin._where_lines(state, options):
        reporter.write_line(line)


plugin.cluster.connect = lambda kubeconfig, context: object()
plugin.cluster.node_views = lambda connection: NODES
plugin._start_run = start_without_a_cluster
"""

DIND_SUITE = """
import pytest
from dindcheck.plugin import expect_pass

@pytest.mark.probe("privileged-admission")
def test_privileged_admission(probe_verdict):
    expect_pass(probe_verdict)

@pytest.mark.probe("socket-sharing")
def test_socket_sharing(probe_verdict):
    expect_pass(probe_verdict)

@pytest.mark.probe("docker-run")
def test_docker_run(probe_verdict):
    expect_pass(probe_verdict)
"""

DEFAULT_NODE = 'NodeView("node-a", ready=True, schedulable=True, labels={"dindcheck.io/pool": "default"})'
CORDONED_CI = 'NodeView("node-ci", ready=True, schedulable=False, labels={"dindcheck.io/pool": "ci"})'
TAINTED_CI = (
    'NodeView("node-ci", ready=True, schedulable=True, labels={"dindcheck.io/pool": "ci"}, '
    'taints=(Taint("dedicated", "ci", "NoSchedule"),))'
)


def gate(pytester: pytest.Pytester, nodes: tuple[str, ...], *args: str) -> pytest.RunResult:
    pytester.makeconftest(GATE_CONFTEST.replace("__NODES__", f"({', '.join(nodes)},)"))
    pytester.makepyfile(test_dind=DIND_SUITE)
    return pytester.runpytest_subprocess(
        "-p", "dindcheck.plugin", "--each-pool", "dindcheck.io/pool", "--require-mode", "dind", *args
    )


def test_a_cordoned_pool_fails_the_gate_and_is_named_with_why(pytester: pytest.Pytester) -> None:
    """Every check passed on the default pool, but the ci pool was never probed: dind is not proven on every pool."""
    result = gate(pytester, (DEFAULT_NODE, CORDONED_CI), "--toleration", "all")
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
    result = gate(pytester, (DEFAULT_NODE, TAINTED_CI))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["dindcheck: --require-mode dind: pool ci was not probed: *add --toleration dedicated=ci:NoSchedule*"]
    )


def test_the_gate_passes_when_every_pool_was_probed_and_proven(pytester: pytest.Pytester) -> None:
    result = gate(pytester, (DEFAULT_NODE, TAINTED_CI), "--toleration", "all")
    result.assert_outcomes(passed=6)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["dindcheck: --require-mode dind: usable on every pool"])
