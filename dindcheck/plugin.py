"""The pytest plugin: turns `pytest suites` into a capability run against a cluster.

Wiring only: options -> preflight (probes.cluster) -> workspace (probes.workspace) -> all selected probes start at
once (probes.engine) -> each test waits for its probe's verdict and maps it to a pytest outcome -> reports (fed by
the runner, so probes that finished are reported even when the run stops early) -> exit-code policy -> cleanup on
every path. The probes know nothing of the report and the report knows only the result model.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import urllib3
from _pytest.config import create_terminal_writer
from kubernetes.client.rest import ApiException

import reports
from dindcheck.options import Options, add_options, read_options
from probes import cluster, lease, sweep, targets, workspace
from probes.api import API_BOUND_ENV, ApiHealth, api_bound_s, ledger_of, own_ledger
from probes.definitions import catalog
from probes.engine import ProbeRunner, Progress, RunScope
from probes.exceptions import DindcheckError, UsageError
from probes.model import (
    ClusterInfo,
    ClusterRun,
    FleetRun,
    ImageUse,
    Mode,
    PoolResult,
    RunResult,
    Status,
    UnprobedCluster,
    UnprobedPool,
    Verdict,
    summarize_unprobed,
)
from probes.settings import ProbeSettings
from reports import paste

PROBE_MARKER = "probe"
POOL_PARAMETER = "dindcheck_pool"
CLUSTER_PARAMETER = "dindcheck_cluster"
PROGRESS_EVERY_S = 3.0


@dataclass
class RunState:
    """Mutable state of one pytest session's run (kept in config.stash)."""

    options: Options | None = None
    connection: cluster.Connection | None = None
    space: workspace.Workspace | None = None
    lease: lease.LeaseKeeper | None = None
    """The run's Lease, renewed while it lives (so no other run's sweep takes its objects)."""
    runner: ProbeRunner | None = None
    progress: Progress = field(default_factory=Progress)
    cluster_info: ClusterInfo | None = None
    selected: tuple[str, ...] = ()
    """Task keys of the selected tests: probe ids, or pool/probe id with --each-pool."""
    targets: tuple[targets.Target, ...] = ()
    """Where the probes run: one target, or one per pool with --each-pool (known before tests are collected)."""
    unprobed: tuple[UnprobedPool, ...] = ()
    """--each-pool: pools that exist by label but no probe can reach (the report and the gate name them)."""
    listed_nodes: cluster.NodeListing | None = None
    """The Node objects targeting read (None when it read none): the report's node facts come from the same list."""
    started_at: float = 0.0
    generated_at: str = ""
    shown: dict[str, str] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    last_shown: float = 0.0
    report: reports.Report | reports.FleetReport | None = None
    baseline: dict[str, Any] | None = None
    pinned: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    collected: bool = False
    config_elsewhere: str = ""
    """Where the run put the config to paste (stdout, --config-dir), said by the terminal report instead of it."""
    context: str = ""
    """The kubeconfig context of one cluster of a fleet run ('' in a single-cluster run)."""
    failure: str = ""
    """Why this cluster of a fleet run could not be probed ('' while it can): the others still run."""
    members: list[RunState] = field(default_factory=list)
    """A fleet run's clusters, each with a RunState of its own, in the order given (empty: a single-cluster run)."""

    def health(self) -> ApiHealth:
        """The API ledger of this state's cluster (each cluster of a fleet has its own)."""
        return ledger_of(getattr(self.connection, "api_client", None))

    def member(self, context: str) -> RunState:
        """The state of one cluster: the fleet member for the context, or this state in a single-cluster run."""
        return next((member for member in self.members if member.context == context), self)


STATE = pytest.StashKey[RunState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register dindcheck's options."""
    add_options(parser)


@pytest.hookimpl(trylast=True)  # after the terminal reporter exists: --show-config moves it to stderr
def pytest_configure(config: pytest.Config) -> None:
    """Validate options early (usage errors within seconds) and make SIGTERM behave like Ctrl-C."""
    config.addinivalue_line("markers", f"{PROBE_MARKER}(id): the capability probe whose verdict this test reports")
    for definition in catalog():
        config.addinivalue_line("markers", f"{_marker_name(definition.id)}: {definition.title}")
    state = RunState()
    config.stash[STATE] = state
    try:
        state.options = read_options(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    if hasattr(signal, "SIGTERM") and _in_main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    if state.options.show_config:
        _report_to_stderr(config)


def _report_to_stderr(config: pytest.Config) -> None:
    """--show-config: stdout carries only the YAML, so pytest's whole terminal output (ours too) goes to stderr."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    reporter._tw = create_terminal_writer(config, sys.stderr)  # noqa: SLF001 (the writer every report line goes to)
    reporter._screen_width = reporter._tw.fullwidth  # noqa: SLF001
    reporter.hasmarkup = reporter._tw.hasmarkup  # noqa: SLF001


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _marker_name(probe_id: str) -> str:
    return probe_id.replace("-", "_")


def _probe_id(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker(PROBE_MARKER)
    return str(marker.args[0]) if marker and marker.args else None


def pytest_collection(session: pytest.Session) -> None:
    """Before collection: a fleet run's clusters, and with --each-pool each cluster's pools (one test per pool)."""
    state = session.config.stash[STATE]
    options = state.options
    if options is not None and options.fleet:
        state.members = _fleet_members(options)
    if options is None or not options.each_pool:
        return
    if not state.members:
        try:
            _plan_pools(state, options)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        return
    _each_member(state, lambda member, _lines: _plan_pools(member, options))


def _plan_pools(state: RunState, options: Options) -> None:
    """--each-pool: read the cluster's nodes and pick one node per pool (UsageError when the pools cannot be found)."""
    state.connection = state.connection or cluster.connect(options.kubeconfig, state.context or options.context)
    state.listed_nodes = cluster.node_listing(state.connection)
    plan = targets.pool_targets(state.listed_nodes.views, options.each_pool or "", options.placement)
    state.targets, state.unprobed = plan.targets, plan.unprobed
    state.notes += plan.notes


SETUP_ERRORS = (UsageError, ApiException, urllib3.exceptions.HTTPError, OSError)
"""What a cluster's setup may raise: in a fleet run, that cluster is not probed and the others go on."""


def _setup_failure(exc: BaseException) -> str:
    """A setup error in the words a single-cluster run exits 4 with."""
    if isinstance(exc, ApiException):
        return f"cluster refused the run's setup: {exc.status} {exc.reason}: {exc.body}"
    if isinstance(exc, UsageError):
        return str(exc)
    return f"lost the API server during setup: {exc}"


def _each_member(state: RunState, work: Callable[[RunState, _Lines], None]) -> list[_Lines]:
    """Run work(member, lines) for every fleet cluster not yet failed, at once; a setup error marks that one failed."""

    def guarded(member: RunState, lines: _Lines) -> None:
        if member.failure:
            return
        try:
            work(member, lines)
        except SETUP_ERRORS as exc:
            member.failure = _setup_failure(exc)

    return _at_once(state.members, guarded)


def _at_once(members: list[RunState], work: Callable[[RunState, _Lines], None]) -> list[_Lines]:
    """work(member, lines) for every member in threads of its own; each one's lines, in member order.

    Each cluster's lines are kept until all are done, so the terminal never interleaves clusters.
    """

    def one(member: RunState) -> _Lines:
        lines = _Lines()
        work(member, lines)
        return lines

    with ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
        return list(pool.map(one, members))


class _Lines:
    """A terminal stand-in that keeps one cluster's lines until they can be printed together."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        """Keep a line."""
        self.lines.append(line)


def _tagged(context: str, line: str) -> str:
    """A fleet cluster's line: 'dindcheck: [prod-eu] ...' says which cluster it is about."""
    prefix = "dindcheck: "
    return f"{prefix}[{context}] {line.removeprefix(prefix)}" if context else line


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """--sweep: the whole run is the sweep, before any session (no collection, no probe, no interruption banner)."""
    if not config.getoption("sweep", False) or config.option.help or config.option.collectonly:
        return None
    try:
        options = read_options(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    state = RunState(options=options, members=_fleet_members(options))
    _sweep_only(state, options)
    _say("dindcheck: --sweep done, no probe ran")
    return int(pytest.ExitCode.OK)


def _fleet_members(options: Options) -> list[RunState]:
    """A fleet run's clusters (--contexts, else every context of the kubeconfig); [] for a single-cluster run."""
    if not options.fleet:
        return []
    try:
        contexts = options.contexts or cluster.context_names(options.kubeconfig)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    return [RunState(options=options, context=context) for context in contexts]


def _say(line: str) -> None:
    """A line of --sweep's output: before any session, there is no terminal reporter to write it."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def _sweep_only(state: RunState, options: Options) -> None:
    """--sweep: delete dead runs' objects and say what was removed and what was spared."""
    for member in state.members or [state]:
        try:
            connection = cluster.connect(options.kubeconfig, member.context or options.context)
            member.connection = connection
            result = _checked_sweep(connection, _namespace_of(member, connection, options))
        except UsageError as exc:
            raise pytest.UsageError(_tagged(member.context, str(exc))) from None
        except ApiException as exc:
            raise pytest.UsageError(
                _tagged(member.context, f"--sweep: the cluster refused: {exc.status} {exc.reason}")
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise pytest.UsageError(_tagged(member.context, f"--sweep: lost the API server: {exc}")) from None
        for line in result.lines:
            _say(_tagged(member.context, line))
        if not result.removed:
            _say(_tagged(member.context, "dindcheck: sweep: no dead run's objects found"))
        if result.spared:
            _say(_tagged(member.context, f"dindcheck: sweep: left alone: {', '.join(result.spared)}"))


def _namespace_of(member: RunState, connection: cluster.Connection, options: Options) -> str | None:
    """Where a cluster's probes go: --namespace, else a fleet cluster's context's own namespace, else a fresh one.

    A context's namespace is where kubectl would work in it (a deploy/rbac.yaml ServiceAccount's, say); a
    single-cluster run keeps its fresh namespace whatever the context names.
    """
    if options.namespace or not member.context:
        return options.namespace
    return connection.context_namespace or None


def _checked_sweep(connection: cluster.Connection, namespace: str | None) -> sweep.SweepResult:
    """The sweep, after its permissions are checked (exit 4 naming what is missing, as for a run)."""
    missing = cluster.missing_permissions(connection, namespace or "default", sweep.sweep_permissions())
    if missing:
        raise UsageError(f"RBAC: the sweep may not {', '.join(missing)} (deploy/rbac.yaml has the Role it needs)")
    return sweep.sweep(connection, namespace=namespace)


def _sweep_at_start(state: RunState, options: Options, run_id: str, reporter: Any) -> None:
    """Every run's preflight sweep (unless --no-sweep): a failed sweep is said, never stops the run."""
    if not options.sweep or state.connection is None:
        return
    try:
        result = sweep.sweep(state.connection, namespace=options.namespace, own_run_id=run_id)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        why = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else str(exc)
        result = sweep.SweepResult((f"dindcheck: sweep: failed ({why}): nothing removed",), (f"sweep: failed ({why})",))
    state.notes += result.notes
    if reporter is not None:
        for line in result.lines:
            reporter.write_line(line)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per pool with --each-pool, per cluster in a fleet run: -k 'pool_ci', -k 'cluster_prod' and JUnit."""
    state = metafunc.config.stash[STATE]
    options = state.options
    if options is None:
        return
    if state.members and CLUSTER_PARAMETER in metafunc.fixturenames:
        pairs = [
            (member.context, pool)
            for member in state.members
            for pool in ([target.pool for target in member.targets] if options.each_pool and member.targets else [""])
        ]
        ids = [f"cluster={context}" + (f",pool={pool}" if pool else "") for context, pool in pairs]
        metafunc.parametrize([CLUSTER_PARAMETER, POOL_PARAMETER], pairs, ids=ids)
    elif POOL_PARAMETER in metafunc.fixturenames and options.each_pool and not state.members:
        pools = [target.pool for target in state.targets]
        metafunc.parametrize(POOL_PARAMETER, pools, ids=[f"pool={pool}" for pool in pools])


def _param(item: pytest.Item, name: str) -> str:
    callspec = getattr(item, "callspec", None)
    return str(callspec.params.get(name, "")) if callspec is not None else ""


def _task_key(item: pytest.Item) -> str | None:
    """The Task.key of a probe test within its cluster: its probe id, prefixed by its pool with --each-pool."""
    probe_id = _probe_id(item)
    if probe_id is None:
        return None
    pool = _param(item, POOL_PARAMETER)
    return f"{pool}/{probe_id}" if pool else probe_id


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each probe test a marker named after its capability, so `-m docker_run` selects it."""
    known = {d.id for d in catalog()}
    for item in items:
        probe_id = _probe_id(item)
        if probe_id is None:
            continue
        if probe_id not in known:
            raise pytest.UsageError(f"{item.nodeid}: unknown probe {probe_id!r} (known: {', '.join(sorted(known))})")
        item.add_marker(_marker_name(probe_id))
        # '-k' cannot parse 'pool=ci': 'pool_ci' selects a pool's tests (node ids keep [pool=ci] exactly)
        for name, word in ((POOL_PARAMETER, "pool"), (CLUSTER_PARAMETER, "cluster")):
            if value := _param(item, name):
                item.extra_keyword_matches.add(f"{word}_{value}")
    config.stash[STATE].collected = True


def pytest_collection_finish(session: pytest.Session) -> None:
    """After selection: connect, check everything the run needs, then start every selected probe at once."""
    config = session.config
    state = config.stash[STATE]
    if not state.collected:  # pytest calls this hook in a `finally`: collection failed, say nothing more
        return
    selected = tuple(sorted({key for item in session.items if (key := _task_key(item))}))
    options = state.options
    if not selected or config.option.collectonly or options is None:
        return
    state.selected = selected
    for member in state.members:
        mine = (_task_key(item) for item in session.items if _param(item, CLUSTER_PARAMETER) == member.context)
        member.selected = tuple(sorted({key for key in mine if key}))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    try:
        if state.members:
            _start_fleet(state, options, reporter)
        else:
            _start_run(state, options, reporter)
    except SETUP_ERRORS as exc:
        _teardown(state, reporter)
        raise pytest.UsageError(_setup_failure(exc)) from None


def _start_fleet(state: RunState, options: Options, reporter: Any) -> None:
    """Every cluster's preflight, workspace and probes at once; one that cannot run is named and the others go on.

    Every cluster is connected first: the baselines are checked against the servers before any cluster's objects
    exist, as a single-cluster run checks its baseline.
    """
    state.started_at = time.monotonic()
    state.generated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    connected = _each_member(state, lambda member, _lines: _connect_member(member, options))
    _load_fleet_baselines(state, options)
    started = _each_member(state, lambda member, lines: _start_member(member, options, lines))
    for member, before, lines in zip(state.members, connected, started, strict=True):
        if member.failure:
            _teardown(member, lines)
            lines.write_line(f"dindcheck: NOT PROBED: {member.failure}")
        for line in (before.lines + lines.lines) if reporter is not None else ():
            reporter.write_line(_tagged(member.context, line))
    if all(member.failure for member in state.members):
        why = "; ".join(f"{member.context}: {member.failure}" for member in state.members)
        raise UsageError(f"no cluster could be probed: {why}")


def _connect_member(member: RunState, options: Options) -> None:
    """One fleet cluster's connection (reused when --each-pool made it), with an API ledger of its own."""
    member.connection = member.connection or cluster.connect(options.kubeconfig, member.context)
    own_ledger(member.connection.api_client)


def _start_member(member: RunState, options: Options, reporter: Any) -> None:
    """One fleet cluster's run, as a single-cluster run of its context: its own namespace, ledger and cleanup."""
    connection = member.connection
    if connection is None:  # never: _each_member skips a cluster whose connecting failed
        return
    member.options = replace(
        options,
        context=member.context,
        contexts=(),
        all_contexts=False,
        namespace=_namespace_of(member, connection, options),
        baseline=None,  # a fleet's baselines are compared cluster by cluster when the fleet report is built
        pinned_baseline=None,
    )
    _start_run(member, member.options, reporter)


def _load_fleet_baselines(state: RunState, options: Options) -> None:
    """A fleet run's --baseline and --pinned-baseline: fleet reports, compared cluster by cluster (by context)."""
    servers = {
        member.context: member.connection.server
        for member in state.members
        if member.connection is not None and not member.failure
    }
    if options.baseline:
        state.baseline = reports.load_fleet_baseline(Path(options.baseline), servers=servers)
    if options.pinned_baseline:
        state.pinned = reports.load_fleet_baseline(
            Path(options.pinned_baseline), servers=servers, option="--pinned-baseline"
        )


def _load_baselines(state: RunState, options: Options, server: str) -> None:
    """--baseline and --pinned-baseline, read and checked (same cluster, schema v1) before any probe pod exists."""
    if options.baseline:
        state.baseline = reports.load_baseline(Path(options.baseline), server=server)
    if options.pinned_baseline:
        state.pinned = reports.load_baseline(Path(options.pinned_baseline), server=server, option="--pinned-baseline")


def _start_run(state: RunState, options: Options, reporter: Any) -> None:
    """Preflight, workspace, probes. state.space is set before anything is created, so any exit can clean up."""
    state.started_at = time.monotonic()
    state.generated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if options.kubectl and reporter is not None:
        reporter.write_line("dindcheck: --kubectl is no longer used: probes exec through the API server")
    state.health().reset()  # before connecting: an API away while connecting is the run's to report
    connection = state.connection or cluster.connect(options.kubeconfig, options.context)
    state.connection = connection
    if not options.each_pool:
        targeted = bool(options.placement.node_selector or options.placement.node)
        state.listed_nodes = cluster.node_listing(connection) if targeted else None
        nodes = state.listed_nodes.views if state.listed_nodes else ()
        state.targets = (targets.single_target(nodes, options.placement),)
    _load_baselines(state, options, connection.server)
    permissions = cluster.required_permissions(
        borrowed_namespace=options.namespace is not None,
        label_namespace=options.namespace_pod_security is not None,
        copy_registry_secret=bool(options.registry_secret and "/" in options.registry_secret),
        throwaway_registry=options.registry is None,
        list_nodes=bool(options.each_pool or options.placement.node_selector or options.placement.node),
        sweep=options.sweep,
    )
    storage_class, notes = cluster.preflight(
        connection, namespace=options.namespace, storage_class=options.storage_class, permissions=permissions
    )
    state.notes += notes
    run_id = workspace.new_run_id()
    _sweep_at_start(state, options, run_id, reporter)
    space = workspace.plan(connection, options.namespace, run_id, options.namespace_pod_security)
    state.space = space
    workspace.create(connection, space)
    # the Lease comes before any other object of the run in its namespace: a sweep never sees them without it
    spec = lease.LeaseSpec(space.namespace, run_id, options.lease_s, lease.holder_identity(run_id))
    state.lease = lease.LeaseKeeper(connection, spec)
    state.lease.start()
    if (unsettled := workspace.settle(connection, space)) is not None:
        state.notes.append(unsettled)
    if options.namespace_pod_security:
        state.notes.append(
            f"the run labelled namespace {space.namespace} {workspace.PSA_ENFORCE_LABEL}="
            f"{options.namespace_pod_security} (--namespace-pod-security): admission was measured under that level"
        )
    registry_secret = workspace.copy_registry_secret(connection, space, options.registry_secret)
    scope = RunScope(
        namespace=space.namespace,
        run_id=run_id,
        timeout_s=options.timeout_s,
        image_pull_secret=options.image_pull_secret,
        keep=options.keep,
        selinux_type=options.selinux_type,
    )
    settings = ProbeSettings(
        images=options.images,
        resources=options.resources,
        storage_class=storage_class,
        registry=options.registry,
        registry_secret=registry_secret,
        registry_secret_source=options.registry_secret,
        registry_insecure=options.registry_insecure,
        job_uid=options.job_uid,
        dind_env=options.dind_env,
    )
    tasks = [
        task
        for target in state.targets
        for definition in catalog()
        if (
            task := replace(
                definition.task(settings),
                placement=target.placement,
                target=target.pool,
                paste_placement=target.paste,
            )
        ).key
        in state.selected
    ]
    state.runner = ProbeRunner(connection, scope, state.progress)
    state.runner.start(tasks)
    # the cluster's description is for the report only: read it while the probes work, not before
    listed = state.listed_nodes.objects if state.listed_nodes else None
    state.cluster_info = cluster.describe_cluster(connection, space.namespace, space.labels, listed)
    if reporter is not None:
        reporter.write_line(
            f"dindcheck: {state.cluster_info.server} ({state.cluster_info.version}), namespace "
            f"{scope.namespace}; probing {len(tasks)} capabilities at once: {', '.join(state.selected)}"
        )
        for line in _where_lines(state, options):
            reporter.write_line(line)


def _where_lines(state: RunState, options: Options) -> list[str]:
    """Where the probes run, said before they start: a verdict is only about those nodes (and not the others)."""
    if options.each_pool:
        return [
            f"dindcheck: pool {target.pool}: on node {target.node} ({target.chosen_because})"
            for target in state.targets
        ] + _unprobed_lines(state.unprobed, "dindcheck: pool {name}: NOT PROBED: {reason}", "dindcheck: {summary}")
    target = state.targets[0] if state.targets else None
    if target is None or not target.placement.targeted:
        return []
    if not target.node:  # tolerations only: the scheduler still picks each pod's node
        return ["dindcheck: probing where the scheduler places each pod (tolerations only: no one node is chosen)"]
    return [f"dindcheck: probing on node {target.node} ({target.chosen_because})"]


@pytest.fixture
def dindcheck_pool() -> str:
    """The pool a test reports on ('' unless --each-pool parametrizes it)."""
    return ""


@pytest.fixture
def dindcheck_cluster() -> str:
    """The cluster (kubeconfig context) a test reports on ('' unless a fleet run parametrizes it)."""
    return ""


@pytest.fixture
def probe_verdict(
    request: pytest.FixtureRequest, record_property: Any, dindcheck_pool: str, dindcheck_cluster: str
) -> Verdict:
    """The verdict of the probe named by this test's `probe` marker (waits for it, showing progress)."""
    state = request.config.stash[STATE]
    task_key = _task_key(request.node)
    if task_key is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses probe_verdict without @pytest.mark.probe(ID)")
    member = state.member(dindcheck_cluster)
    if member.failure:
        pytest.skip(f"not run: cluster {dindcheck_cluster} was not probed: {member.failure}")
    runner = member.runner
    if runner is None or not runner.started(task_key):
        pytest.skip("not run: no cluster run was started (collect-only or setup failed)")
    verdict = runner.verdict(task_key, lambda: _show_progress(state, request.config))
    member.reported.add(task_key)
    properties = [("dindcheck.cluster", dindcheck_cluster)] if dindcheck_cluster else []
    properties += [("dindcheck.pool", dindcheck_pool)] if dindcheck_pool else []
    for key, value in (
        *properties,
        ("dindcheck.check", verdict.id),
        ("dindcheck.capability", verdict.capability),
        ("dindcheck.status", verdict.status.value),
        ("dindcheck.summary", verdict.summary),
        ("dindcheck.duration_s", f"{verdict.duration_s:.1f}"),
        ("dindcheck.remediation", verdict.remediation),
    ):
        record_property(key, value)
    return verdict


def _show_progress(state: RunState, config: pytest.Config) -> None:
    """Print what changed since last time, at most every few seconds, so a wait never looks like a hang.

    Tests wait inside fixture setup, where pytest captures output: capture is suspended for these lines.
    """
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or time.monotonic() - state.last_shown < PROGRESS_EVERY_S:
        return
    state.last_shown = time.monotonic()
    elapsed = time.monotonic() - state.started_at
    lines = []
    for member in state.members or [state]:
        tag = f"{member.context}/" if member.context else ""
        for probe_id, message in sorted(member.progress.snapshot().items()):
            if member.shown.get(probe_id) != message and probe_id not in member.reported and message != "done":
                member.shown[probe_id] = message
                lines.append(f"  [{elapsed:5.1f}s] {tag}{probe_id}: {message}")
    if not lines:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    suspended = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    with suspended:
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


def expect_pass(verdict: Verdict) -> None:
    """Map a verdict to a pytest outcome: fail fails, inconclusive and skipped skip with the cause, bugs error."""
    __tracebackhide__ = True
    if "internal_error" in verdict.evidence:
        raise DindcheckError(f"{verdict.summary}\n{verdict.evidence['internal_error']}")
    if verdict.status in (Status.INCONCLUSIVE, Status.SKIPPED):
        pytest.skip(f"{verdict.id} {verdict.status.value}: {verdict.summary}")
    if verdict.status is Status.FAIL:
        detail = f"{verdict.id} failed: {verdict.summary}"
        if verdict.remediation:
            detail += f"\nremediation: {verdict.remediation}"
        pytest.fail(detail, pytrace=False)
    if verdict.status is not Status.PASS:
        raise DindcheckError(f"{verdict.id}: unknown status {verdict.status!r}")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop probes, write the reports, apply the exit-code policy, and clean up, also after Ctrl-C or a failure."""
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    try:
        runners = [member.runner for member in state.members or [state] if member.runner is not None]
        if runners:
            if reporter is not None:
                reporter.write_line("")  # pytest's progress line may still be open (-q ends it with [100%])
            for runner in runners:
                runner.cancel.set()  # every cluster's probes stop at once, then each is waited for
            for runner in runners:
                runner.stop(wait_s=1.0 if exitstatus == pytest.ExitCode.INTERRUPTED else 5.0)
            _write_reports(state, reporter)
            _apply_exit_policy(session, state, exitstatus, reporter)
        else:
            _gate_that_ran_nothing(session, state, exitstatus, reporter)
    finally:
        _teardown(state, reporter)
        _past_the_bound(session, reporter, state)


def _past_the_bound(session: pytest.Session, reporter: Any, state: RunState | None = None) -> None:
    """A run that waited for the API server longer than DINDCHECK_API_BOUND_S proved less than it set out to: exit 4.

    Its checks that lost evidence are inconclusive, which alone would exit 0; a gate must not read that as done. In a
    fleet run, any cluster's API server that stayed away past the bound does it, and the line names the cluster.
    """
    members = (state.members or [state]) if state is not None else [RunState()]
    passed = [(member.context, what) for member in members if (what := member.health().passed_bound)]
    if not passed or session.exitstatus == pytest.ExitCode.INTERRUPTED:
        return
    for context, what in passed:
        line = (
            f"dindcheck: the API server was unavailable for longer than {api_bound_s():.0f}s ({API_BOUND_ENV}; last: "
            f"{what}): exit {int(pytest.ExitCode.USAGE_ERROR)}"
        )
        if reporter is not None:
            reporter.write_line(_tagged(context, line))
    session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _write_reports(state: RunState, reporter: Any) -> None:
    options = state.options
    if options is None:
        return
    if state.members:
        state.report = reports.build_fleet_report(_fleet_run(state, options), state.baseline, pinned=state.pinned)
    else:
        run = _run_result(state, options)
        if run is None:
            return
        state.report = reports.build_report(run, state.baseline, pinned=state.pinned)
    if options.report_json:
        reports.write_json(state.report, Path(options.report_json))
    if options.report_md:
        reports.write_markdown(state.report, Path(options.report_md))
    if options.report_prom:
        reports.write_prometheus(state.report, Path(options.report_prom))
    for what, path in (
        ("JSON", options.report_json),
        ("Markdown", options.report_md),
        ("Prometheus", options.report_prom),
    ):
        if reporter is not None and path:
            reporter.write_line(f"dindcheck: {what} report written to {path}")
    _put_config(state, options, state.report, reporter)


def _fleet_run(state: RunState, options: Options) -> FleetRun:
    """Every cluster's own run, and the clusters nothing was proven on (with why)."""
    probed, unprobed = [], []
    for member in state.members:
        run = None if member.failure else _run_result(member, member.options or options)
        if run is not None:
            probed.append(ClusterRun(member.context, run))
            continue
        server = member.connection.server if member.connection is not None else ""
        unprobed.append(UnprobedCluster(member.context, server, member.failure or "its run did not start"))
    return FleetRun(
        clusters=tuple(probed),
        unprobed=tuple(unprobed),
        generated_at=state.generated_at,
        total_s=time.monotonic() - state.started_at,
        required_mode=options.require_mode,
        capabilities=tuple(d.id for d in catalog()),
    )


def _run_result(state: RunState, options: Options) -> RunResult | None:
    """One cluster's verdicts and facts as the report model has them (None when its run never started)."""
    if state.cluster_info is None or state.runner is None:
        return None
    images = {role: ImageUse(ref, state.runner.images.digest(ref)) for role, ref in options.images.by_role().items()}
    away = state.health().note()
    notes = tuple(dict.fromkeys(state.cluster_info.notes + tuple(state.notes) + ((away,) if away else ())))
    finished = state.runner.finished()
    probed = sorted({node for verdict in finished.values() for node in verdict.nodes})
    single = state.targets[0].placement if state.targets and not options.each_pool else options.placement
    cluster_info = replace(
        state.cluster_info, notes=notes, images=images, probed_nodes=tuple(probed), placement=single
    ).with_security_of(finished.values())
    return RunResult(
        cluster=cluster_info,
        verdicts=() if options.each_pool else _in_catalog_order(finished, ""),
        generated_at=state.generated_at,
        total_s=time.monotonic() - state.started_at,
        required_mode=options.require_mode,
        capabilities=tuple(d.id for d in catalog()),
        pool_label=options.each_pool or "",
        pools=tuple(
            PoolResult(
                name=target.pool,
                node=target.node,
                chosen_because=target.chosen_because,
                nodes=target.nodes,
                placement=target.placement,
                verdicts=_in_catalog_order(finished, target.pool),
            )
            for target in (state.targets if options.each_pool else ())
        ),
        unprobed_pools=state.unprobed if options.each_pool else (),
        throttled=state.health().throttling(),
    )


def _put_config(state: RunState, options: Options, report: reports.Report | reports.FleetReport, reporter: Any) -> None:
    """--config-dir writes the config to paste as files, --show-config prints its YAML on stdout (and only that)."""
    say = reporter.write_line if reporter is not None else print
    places = []
    if options.config_dir:
        written, removed = paste.write_config_dir(report, Path(options.config_dir))
        places.append(f"written to {options.config_dir} ({', '.join(written)})")
        say(f"dindcheck: config to paste written to {options.config_dir}: {', '.join(written)}")
        if removed:
            say(f"dindcheck: --config-dir: removed {', '.join(removed)} of an earlier run (not proven by this one)")
    if options.show_config:
        shown = paste.show(report, options.show_config)
        if shown.yaml:
            sys.stdout.write(shown.yaml)
            sys.stdout.flush()
        if shown.note:
            say(f"dindcheck: --show-config {options.show_config}: {shown.note}")
        if options.show_config == paste.RECOMMENDED and shown.yaml:
            places.insert(0, "printed on stdout (--show-config recommended)")
    state.config_elsewhere = "; ".join(places)


def _in_catalog_order(finished: dict[str, Verdict], pool: str) -> tuple[Verdict, ...]:
    """One target's verdicts (pool '' = the single-target run), sorted by check id as reports list them."""
    prefix = f"{pool}/" if pool else ""
    mine = [v for key, v in finished.items() if key == f"{prefix}{v.id}"]
    return tuple(sorted(mine, key=lambda v: v.id))


def _apply_exit_policy(session: pytest.Session, state: RunState, exitstatus: int, reporter: Any) -> None:
    """--require-mode answers only 'is MODE proven usable?'; --fail-on-inconclusive turns 'proved nothing' into 1."""
    options = state.options
    report = state.report
    if options is None or report is None or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    failed = exitstatus == pytest.ExitCode.TESTS_FAILED
    if options.require_mode is not None:
        failed = not report.is_usable(options.require_mode)
        if reporter is not None:
            lines = (
                _gate_lines(options.require_mode, report, each_pool=bool(options.each_pool))
                if isinstance(report, reports.Report)
                else _fleet_gate_lines(options.require_mode, report)
            )
            for line in lines:
                reporter.write_line(line)
    inconclusive = [
        f"{member.context}/{key}" if member.context else key
        for member in state.members or [state]
        for key, v in sorted(member.runner.finished().items() if member.runner is not None else ())
        if v.status is Status.INCONCLUSIVE and key in member.selected
    ]
    if options.fail_on_inconclusive and inconclusive:
        failed = True
        if reporter is not None:
            reporter.write_line(f"dindcheck: --fail-on-inconclusive: {', '.join(inconclusive)} proved nothing")
    regressions = report.regressions
    if options.fail_on_regression and regressions:
        failed = True
        if reporter is not None:
            reporter.write_line(f"dindcheck: --fail-on-regression: no longer usable: {', '.join(regressions)}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED if failed else pytest.ExitCode.OK


def _gate_lines(mode: Mode, report: reports.Report, *, each_pool: bool) -> list[str]:
    """The gate's answer, and with --each-pool the pools where MODE is not proven: unprobed ones with why."""
    prefix = f"dindcheck: --require-mode {mode.value}:"
    if report.is_usable(mode):
        return [f"{prefix} usable" + (" on every pool" if each_pool else "")]
    if not each_pool:
        return [f"{prefix} NOT usable"]
    lines = [f"{prefix} NOT usable on pool(s) {', '.join(report.unusable_pools_in_words(mode))}"]
    each, summed_up = prefix + " pool {name} was not probed: {reason}", prefix + " {summary}"
    return lines + _unprobed_lines(report.run.unprobed_pools, each, summed_up)


def _fleet_gate_lines(mode: Mode, report: reports.FleetReport) -> list[str]:
    """The gate's answer for a fleet: usable on every cluster (and pool), or the clusters where it is not, with why."""
    prefix = f"dindcheck: --require-mode {mode.value}:"
    if report.is_usable(mode):
        return [f"{prefix} usable on every cluster"]
    lines = [f"{prefix} NOT usable on cluster(s) {', '.join(report.unusable_clusters(mode))}"]
    return lines + [
        f"{prefix} cluster {cluster.context} was not probed: {cluster.reason}" for cluster in report.fleet.unprobed
    ]


def _unprobed_lines(unprobed: tuple[UnprobedPool, ...], each: str, summed_up: str) -> list[str]:
    """Each unprobed pool in the each format, or one line in the summed_up format when there are many."""
    summary = summarize_unprobed(unprobed)
    if summary:
        return [summed_up.format(summary=summary)]
    return [each.format(name=pool.name, reason=pool.reason) for pool in unprobed]


def _gate_that_ran_nothing(session: pytest.Session, state: RunState, exitstatus: int, reporter: Any) -> None:
    """A gate that ran no check (--collect-only, -k matching none) proved nothing: it fails, never passes.

    --require-mode proves a mode by running its checks; exit 0 with nothing run would read as "proven".
    """
    options = state.options
    gate_states = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED)
    if options is None or options.require_mode is None or exitstatus not in gate_states:
        return
    why = "--collect-only" if session.config.option.collectonly else "no check was selected"
    if reporter is not None:
        reporter.write_line(
            f"dindcheck: --require-mode {options.require_mode.value}: NOT usable: no check ran ({why}), "
            "so nothing was proven"
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _teardown(state: RunState, reporter: Any) -> None:
    """Delete what the run made (every cluster's, at once, in a fleet run), unless --keep; never raise."""
    if not state.members:
        _teardown_cluster(state, reporter)
        return
    say = reporter.write_line if reporter is not None else print
    with _cleanup_shielded(say):
        said = _at_once(state.members, _teardown_cluster)
    for member, lines in zip(state.members, said, strict=True):
        for line in lines.lines:
            say(_tagged(member.context, line))


def _teardown_cluster(state: RunState, reporter: Any) -> None:
    """Delete what the run made, unless --keep; never raise over the real outcome, never stop half-way on Ctrl-C."""
    if state.connection is None or state.space is None:
        return
    space, state.space = state.space, None
    keeper, state.lease = state.lease, None
    if state.runner is not None:
        state.runner.cancel.set()
    options = state.options
    say = reporter.write_line if reporter is not None else print
    if options is not None and options.keep:
        say(f"dindcheck: --keep: objects left in namespace {space.namespace} (label {space.selector})")
        if (notice := workspace.kept_label_notice(space)) is not None:
            say(notice)
        _release(keeper, say, kept=True)
        return
    in_flight = state.runner.in_flight if state.runner is not None else None
    with _cleanup_shielded(say):
        if not cluster.wait_until_answering(state.connection, api_bound_s()):
            say(
                f"dindcheck: cleanup: the API server {state.connection.server} did not answer within "
                f"{api_bound_s():.0f}s ({API_BOUND_ENV}): nothing of this run was deleted; once it is back, delete "
                f"what the run made (label {space.selector}): {workspace_delete_command(space)}"
            )
            return
        try:
            # after an outage the cluster's controllers catch up too (a claim's finalizer): give them the bound more
            wait_s = workspace.CLEANUP_WAIT_S + (api_bound_s() if state.health().outages() else 0.0)
            left = workspace.cleanup(state.connection, space, wait_s=wait_s, say=say, in_flight=in_flight)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            say(f"dindcheck: cleanup failed: {exc}; delete objects labelled {space.selector} by hand")
            _release(keeper, say, kept=False, objects_left=True)
            return
        _release(keeper, say, kept=False, objects_left=any(item.split("/")[0] in sweep.KINDS for item in left))
    if left:
        say(f"dindcheck: cleanup incomplete, left behind: {', '.join(left)}")
        if state.health().away_now:
            say(f"dindcheck: once the API server answers, delete the rest: {workspace_delete_command(space)}")


def workspace_delete_command(space: workspace.Workspace) -> str:
    """The kubectl command(s) that delete what a run made, by its label (and its own namespace)."""
    command = (
        f"kubectl delete pods,persistentvolumeclaims,secrets -n {space.namespace} -l {space.selector} "
        "--force --grace-period=0 --wait=false"
    )
    if space.created:
        command += f" && kubectl delete namespace {space.namespace} --wait=false"
    return command


def _release(keeper: lease.LeaseKeeper | None, say: Any, *, kept: bool, objects_left: bool = False) -> None:
    """The run's Lease at the end: deleted last; kept and marked with --keep; left to lapse when objects remain.

    A Lease that lapses tells the next run's sweep that what remains is a dead run's, so it is deleted then.
    """
    if keeper is None:
        return
    try:
        if kept:
            keeper.keep()
        elif objects_left:
            keeper.stop()
            say(
                f"dindcheck: lease {keeper.spec.name} is no longer renewed: the next run's sweep deletes what is "
                f"left once it lapses ({keeper.spec.duration_s}s)"
            )
        else:
            keeper.delete()
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        keeper.stop()
        say(f"dindcheck: lease {keeper.spec.name} in {keeper.spec.namespace}: {exc}")


@contextlib.contextmanager
def _cleanup_shielded(say: Any) -> Iterator[None]:
    """While cleaning up, Ctrl-C and SIGTERM say what is happening instead of abandoning the cleanup silently."""
    if not _in_main_thread():
        yield
        return

    def _notice(signum: int, _frame: FrameType | None) -> None:
        say(f"dindcheck: still cleaning up (signal {signum} ignored); it ends within {workspace.CLEANUP_WAIT_S:.0f}s")

    previous = {sig: signal.signal(sig, _notice) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The compatibility table and the recommendation, after pytest's own summary."""
    state = config.stash.get(STATE, None)
    if state is None or state.report is None:
        return
    terminalreporter.section("dindcheck compatibility report")
    for line in reports.render_terminal(state.report, state.config_elsewhere):
        terminalreporter.write_line(line)
