"""The cluster part of a run replaced by fixed answers, for pytester runs of the plugin's real session.

A pytester conftest (made by `conftest`) imports this module and calls one of its `with_*` functions, which swap the
plugin's cluster calls; everything after them (collection, outcomes, report, exit policy, summary) is the plugin's own
code. The pytester runs are subprocesses, so the swap never reaches the session running these tests; they import this
module through the repo root on PYTHONPATH, as they import dindcheck and probes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dindcheck import plugin
from dindcheck.options import Options
from probes import cluster, sweep
from probes.definitions import lsm
from probes.engine import ImageLedger, ProbeRunner
from probes.exceptions import UsageError
from probes.model import ClusterInfo, NodeInfo, Status, Verdict
from probes.targets import NodeView, Taint

SERVER = "https://fixed.example:6443"
NODES = {
    "default": NodeView("node-a", ready=True, schedulable=True, labels={"dindcheck.io/pool": "default"}),
    "cordoned-ci": NodeView("node-ci", ready=True, schedulable=False, labels={"dindcheck.io/pool": "ci"}),
    "tainted-ci": NodeView(
        "node-ci",
        ready=True,
        schedulable=True,
        labels={"dindcheck.io/pool": "ci"},
        taints=(Taint("dedicated", "ci", "NoSchedule"),),
    ),
}
"""The nodes a fixed cluster can have, by a name saying what matters about each."""

PROBE_TEST = """
@pytest.mark.probe("{probe}")
def test_{name}(probe_verdict):
    expect_pass(probe_verdict)
"""


class FixedRunner:
    """A ProbeRunner whose probes have all finished with the given verdicts (keyed by task key)."""

    def __init__(self, verdicts: Mapping[str, Verdict]) -> None:
        self._verdicts = dict(verdicts)
        self.cancel = threading.Event()
        self.images = ImageLedger()

    def started(self, key: str) -> bool:
        """Every probe it has a verdict for."""
        return key in self._verdicts

    def verdict(self, key: str, on_wait: Any, poll_s: float = 1.0) -> Verdict:  # noqa: ARG002 (ProbeRunner's signature)
        """The fixed verdict, without waiting."""
        return self._verdicts[key]

    def finished(self) -> dict[str, Verdict]:
        """All of them: every probe has finished."""
        return dict(self._verdicts)

    def stop(self, wait_s: float = 5.0) -> None:  # noqa: ARG002 (ProbeRunner's signature)
        """Nothing runs; only the cancel flag is set, as the real runner's is."""
        self.cancel.set()


def server_of(context: str) -> str:
    """The fixed API server of a context: SERVER for a single-cluster run, one per context in a fleet."""
    return f"https://{context}.example:6443" if context else SERVER


def _start_with(
    verdicts_of: Callable[[plugin.RunState], dict[str, Verdict]],
    *,
    load_baselines: bool,
    nodes: tuple[NodeInfo, ...] = (),
) -> None:
    """Swap the plugin's _start_run for one that connects to nothing and whose runner has verdicts_of(state).

    nodes: the cluster's nodes as the API describes them (none listed by default).
    """

    def start_without_a_cluster(state: plugin.RunState, options: Options, reporter: Any) -> None:
        state.started_at = time.monotonic()
        state.generated_at = "2026-01-01T00:00:00+00:00"
        state.cluster_info = ClusterInfo(server=server_of(state.context), version="v1.31.4", nodes=nodes)
        if state.context:  # a fleet member: say where it would probe (its namespace is the plugin's choice)
            reporter.write_line(f"dindcheck: probing in namespace {options.namespace or '(a fresh one)'}")
        state.runner = cast("ProbeRunner", FixedRunner(verdicts_of(state)))
        for line in plugin._where_lines(state, options):
            reporter.write_line(line)
        if load_baselines:
            plugin._load_baselines(state, options, state.cluster_info.server)

    plugin._start_run = start_without_a_cluster


def with_statuses(statuses: Mapping[str, str], *, load_baselines: bool = False) -> None:
    """Each selected probe finished with its status in statuses, its summary saying so ('lsm said pass')."""
    _start_with(
        lambda state: {
            pid: Verdict(pid, pid, Status(statuses[pid]), f"{pid} said {statuses[pid]}") for pid in state.selected
        },
        load_baselines=load_baselines,
    )


def with_nodes(*names: str) -> None:
    """A cluster of the named NODES (for pool discovery before collection); probes are not started."""
    nodes = tuple(NODES[name] for name in names)
    cluster.connect = lambda kubeconfig, context: object()  # type: ignore[assignment,return-value]  # noqa: ARG005
    cluster.node_listing = lambda connection: cluster.NodeListing(objects=(), views=nodes)  # noqa: ARG005


def with_every_probe_passing_on_its_pool(*names: str) -> None:
    """A cluster of the named NODES where every selected probe of every probed pool passed, on that pool's node."""
    with_nodes(*names)

    def verdicts_of(state: plugin.RunState) -> dict[str, Verdict]:
        nodes = {target.pool: target.node for target in state.targets}
        verdicts = {}
        for key in state.selected:
            pool, _, probe_id = key.partition("/")
            verdicts[key] = Verdict(probe_id, probe_id, Status.PASS, "passed", nodes=(nodes[pool],))
        return verdicts

    _start_with(verdicts_of, load_baselines=False)


def with_fleet(
    statuses: Mapping[str, Mapping[str, str]],
    unreachable: Mapping[str, str] | None = None,
    nodes: tuple[str, ...] = (),
    namespaces: Mapping[str, str] | None = None,
) -> None:
    """A kubeconfig of the given contexts, each probe finished with statuses[context][probe] there.

    The contexts in unreachable fail to connect with that error (a fleet run names them and goes on). With nodes
    (names of NODES), every cluster has those nodes, for --each-pool; a pool's probe has its cluster's status.
    namespaces: the namespace a context names in the kubeconfig.
    """
    failing = dict(unreachable or {})
    every = (*statuses, *failing)

    def connect(kubeconfig: str | None, context: str | None) -> Any:
        if context in failing:
            raise UsageError(failing[context])
        own = (namespaces or {}).get(context or "", "")
        return SimpleNamespace(api_client=None, server=server_of(context or ""), context_namespace=own)

    cluster.connect = connect
    cluster.context_names = lambda kubeconfig: every  # noqa: ARG005
    views = tuple(NODES[name] for name in nodes)
    cluster.node_listing = lambda connection: cluster.NodeListing(objects=(), views=views)  # noqa: ARG005

    def verdicts_of(state: plugin.RunState) -> dict[str, Verdict]:
        verdicts = {}
        for key in state.selected:
            probe_id = key.rpartition("/")[2]
            status = statuses[state.context][probe_id]
            verdicts[key] = Verdict(probe_id, probe_id, Status(status), f"{probe_id} said {status}")
        return verdicts

    _start_with(verdicts_of, load_baselines=False)


def with_sweep_finding(lines: tuple[str, ...], removed: tuple[str, ...], spared: tuple[str, ...]) -> None:
    """A cluster whose sweep (permissions granted) prints lines, removed those runs and spared these."""
    connection = cast("cluster.Connection", SimpleNamespace(api_client=None, server=SERVER, context_namespace=""))
    cluster.connect = lambda kubeconfig, context: connection  # noqa: ARG005
    plugin._checked_sweep = lambda connection, namespace: sweep.SweepResult(  # noqa: ARG005
        lines, (), removed=removed, spared=spared
    )


CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
"""The directory holding the tests package."""


def conftest(swap: Callable[..., None], *args: Any, **kwargs: Any) -> str:
    """The source of a pytester conftest that calls swap (one of the with_* functions above) with these arguments."""
    arguments = [repr(arg) for arg in args] + [f"{name}={value!r}" for name, value in kwargs.items()]
    # pytester's subprocess sees the installed package, not this checkout: it finds this module by the checkout's
    # root, appended so the installed dindcheck still comes first
    return (
        f"import sys\n\nsys.path.append({str(CHECKOUT_ROOT)!r})\n\nfrom tests.plugin import fixed_runner\n\n"
        f"fixed_runner.{swap.__name__}({', '.join(arguments)})\n"
    )


def probe_tests(*probe_ids: str) -> str:
    """The source of a test module with one test per probe, each expecting its probe to pass."""
    tests = "".join(PROBE_TEST.format(probe=pid, name=module_name(pid)) for pid in probe_ids)
    return f"import pytest\nfrom dindcheck.plugin import expect_pass\n{tests}"


def module_name(probe_id: str) -> str:
    """A Python name for a probe id (lsm, docker_run)."""
    return probe_id.replace("-", "_")


def make_probe_modules(pytester: pytest.Pytester, *probe_ids: str) -> None:
    """One test module per probe (test_docker_run.py, ...), as the suites directory has."""
    pytester.makepyfile(**{f"test_{module_name(pid)}": probe_tests(pid) for pid in probe_ids})


def with_lsm_read(readings: Mapping[str, Mapping[str, str]], *names: str) -> None:
    """A cluster of the named NODES, listed as the API lists them, whose lsm probe read readings[node] on its node.

    The lsm verdict is the probe's own reading of them (probes.definitions.lsm.verdict), so the facts are the ones a
    real run records; every other probe passed. A run without --each-pool probes on the first node.
    """
    with_nodes(*names)
    views = [NODES[name] for name in names]
    listed = tuple(
        NodeInfo(view.name, "v1.31.4", "containerd://1.7.24", "6.1.0-28-amd64", "Debian 12", "amd64") for view in views
    )

    def verdicts_of(state: plugin.RunState) -> dict[str, Verdict]:
        on_pool = {target.pool: target.node for target in state.targets}
        verdicts = {}
        for key in state.selected:
            pool, _, probe_id = key.rpartition("/")
            node = on_pool.get(pool) or views[0].name
            if probe_id == "lsm":
                said = "\n".join(f"{reading}={value}" for reading, value in readings.get(node, {}).items())
                outcome = lsm.verdict(said, 0 if said else 1, "")
                verdicts[key] = Verdict(
                    probe_id, probe_id, outcome.status, outcome.summary, facts=outcome.facts, nodes=(node,)
                )
            else:
                verdicts[key] = Verdict(probe_id, probe_id, Status.PASS, "passed", nodes=(node,))
        return verdicts

    _start_with(verdicts_of, load_baselines=False, nodes=listed)
