"""The pytest plugin: turns `pytest suites` into a capability run against a cluster.

Glue only: options -> preflight -> all selected probes start at once -> each test waits for its probe's verdict and
maps it to a pytest outcome -> reports -> cleanup on every path. The probes know nothing of the report and the
report knows only the result model; this module is the one place that knows both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

import reports
from dindcheck.options import Options, add_options, read_options
from probes import cluster, workspace
from probes.definitions import catalog
from probes.engine import MANAGED_BY, MANAGED_BY_LABEL, RUN_LABEL, ProbeDefinition, ProbeRunner, Progress, RunSettings
from probes.exceptions import DindcheckError, UsageError
from probes.model import ClusterInfo, RunResult, Status, Verdict

PROBE_MARKER = "probe"
PROGRESS_EVERY_S = 3.0


@dataclass
class RunState:
    """Mutable state of one pytest session's run (kept in config.stash)."""

    options: Options | None = None
    connection: cluster.Connection | None = None
    space: workspace.Workspace | None = None
    runner: ProbeRunner | None = None
    progress: Progress = field(default_factory=Progress)
    cluster_info: ClusterInfo | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    started_at: float = 0.0
    generated_at: str = ""
    shown: dict[str, str] = field(default_factory=dict)
    last_shown: float = 0.0
    report: reports.Report | None = None
    notes: list[str] = field(default_factory=list)
    collected: bool = False


STATE = pytest.StashKey[RunState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register dindcheck's options."""
    add_options(parser)


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


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _marker_name(probe_id: str) -> str:
    return probe_id.replace("-", "_")


def _probe_id(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker(PROBE_MARKER)
    return str(marker.args[0]) if marker and marker.args else None


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
    config.stash[STATE].collected = True


def pytest_collection_finish(session: pytest.Session) -> None:
    """After selection: connect, check everything the run needs, then start every selected probe at once."""
    config = session.config
    state = config.stash[STATE]
    if not state.collected:  # pytest calls this hook in a `finally`: collection failed, say nothing more
        return
    selected = sorted({pid for item in session.items if (pid := _probe_id(item))})
    if not selected or config.option.collectonly:
        return
    options = state.options
    if options is None:  # pytest_configure raised a usage error already
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    try:
        _start_run(state, options, selected, reporter)
    except UsageError as exc:
        _teardown(state, reporter)
        raise pytest.UsageError(str(exc)) from None
    except ApiException as exc:
        _teardown(state, reporter)
        raise pytest.UsageError(f"cluster refused the run's setup: {exc.status} {exc.reason}: {exc.body}") from None


def _start_run(state: RunState, options: Options, selected: list[str], reporter: Any) -> None:
    if options.kubectl:
        os.environ["PATH"] = str(Path(options.kubectl).resolve().parent) + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("kubectl") is None:
        raise UsageError("kubectl not found on PATH: probes run commands in pods through it (or pass --kubectl PATH)")
    state.started_at = time.monotonic()
    state.generated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    connection = cluster.connect(options.kubeconfig, options.context)
    state.connection = connection
    storage_class = options.storage_class
    if storage_class and not cluster.storage_class_exists(connection, storage_class):
        raise UsageError(f"StorageClass {storage_class!r} not found (kubectl get storageclass lists them)")
    if storage_class is None:
        storage_class = cluster.default_storage_class(connection)
        if storage_class is None:
            state.notes.append("no --storage-class and no default StorageClass: overlay tested on emptyDir only")
    permissions = cluster.REQUIRED_PERMISSIONS
    if options.namespace is None:
        permissions += cluster.NAMESPACE_PERMISSIONS
    missing = cluster.missing_permissions(connection, options.namespace or "default", permissions)
    if missing:
        raise UsageError(f"RBAC: the run may not {', '.join(missing)} (README: 'RBAC' has the minimal Role)")
    run_id = workspace.new_run_id()
    state.space = workspace.prepare(connection, options.namespace, run_id, options.namespace_pod_security)
    if options.namespace_pod_security:
        state.notes.append(
            f"the run labelled namespace {state.space.namespace} pod-security.kubernetes.io/enforce="
            f"{options.namespace_pod_security} (--namespace-pod-security): admission was measured under that level"
        )
    registry_secret = _prepare_registry_secret(connection, state.space, options.registry_secret)
    state.cluster_info = cluster.describe_cluster(connection, state.space.namespace, state.space.labels)
    settings = RunSettings(
        namespace=state.space.namespace,
        run_id=run_id,
        images=options.images,
        storage_class=storage_class,
        registry=options.registry,
        registry_secret=registry_secret,
        registry_insecure=options.registry_insecure,
        image_pull_secret=options.image_pull_secret,
        timeout_s=options.timeout_s,
    )
    definitions: list[ProbeDefinition] = [d for d in catalog() if d.id in selected]
    state.runner = ProbeRunner(connection, settings, state.progress)
    state.runner.start(definitions)
    if reporter is not None:
        reporter.write_line(
            f"dindcheck: {state.cluster_info.server} ({state.cluster_info.version}), namespace "
            f"{settings.namespace}; probing {len(definitions)} capabilities at once: {', '.join(selected)}"
        )


def _prepare_registry_secret(
    connection: cluster.Connection, space: workspace.Workspace, spec: str | None
) -> str | None:
    """Make the push credentials available in the run's namespace; copy them when they live elsewhere."""
    if not spec:
        return None
    source_ns, _, name = spec.rpartition("/")
    source_ns = source_ns or space.namespace
    try:
        secret = connection.core.read_namespaced_secret(name, source_ns)
    except ApiException as exc:
        raise UsageError(f"--registry-secret {spec}: cannot read it ({exc.status} {exc.reason})") from None
    if secret.type != "kubernetes.io/dockerconfigjson":
        raise UsageError(f"--registry-secret {spec} is of type {secret.type}, not kubernetes.io/dockerconfigjson")
    if source_ns == space.namespace:
        return name
    copy_name = f"dc-{space.run_id}-registry"
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": copy_name,
            "labels": {RUN_LABEL: space.run_id, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "data": secret.data,
    }
    connection.core.create_namespaced_secret(space.namespace, body)
    return copy_name


@pytest.fixture
def probe_verdict(request: pytest.FixtureRequest, record_property: Any) -> Verdict:
    """The verdict of the probe named by this test's `probe` marker (waits for it, showing progress)."""
    state = request.config.stash[STATE]
    probe_id = _probe_id(request.node)
    if probe_id is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses probe_verdict without @pytest.mark.probe(ID)")
    runner = state.runner
    if runner is None or not runner.started(probe_id):
        pytest.skip("not run: no cluster run was started (collect-only or setup failed)")
    verdict = runner.verdict(probe_id, lambda: _show_progress(state, request.config))
    state.verdicts[probe_id] = verdict
    for key, value in (
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
    for probe_id, message in sorted(state.progress.snapshot().items()):
        if state.shown.get(probe_id) != message and probe_id not in state.verdicts and message != "done":
            state.shown[probe_id] = message
            lines.append(f"  [{elapsed:5.1f}s] {probe_id}: {message}")
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
    """Stop probes, write the reports, apply --require-mode, and clean up, also after Ctrl-C or a failure."""
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None or state.runner is None:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")  # pytest's progress line may still be open (-q ends it with [100%])
    try:
        state.runner.stop(wait_s=1.0 if exitstatus == pytest.ExitCode.INTERRUPTED else 5.0)
        _write_reports(state, reporter)
        _apply_required_mode(session, state, exitstatus, reporter)
    finally:
        _teardown(state, reporter)


def _write_reports(state: RunState, reporter: Any) -> None:
    options = state.options
    if options is None or state.cluster_info is None:
        return
    cluster_info = state.cluster_info
    if state.notes:
        cluster_info = ClusterInfo(
            server=cluster_info.server,
            version=cluster_info.version,
            nodes=cluster_info.nodes,
            namespace=cluster_info.namespace,
            namespace_labels=cluster_info.namespace_labels,
            notes=cluster_info.notes + tuple(state.notes),
        )
    run = RunResult(
        cluster=cluster_info,
        verdicts=tuple(state.verdicts[k] for k in sorted(state.verdicts)),
        generated_at=state.generated_at,
        total_s=time.monotonic() - state.started_at,
        required_mode=options.require_mode,
    )
    images = {"dind": options.images.dind, "buildkit": options.images.buildkit, "tools": options.images.tools}
    state.report = reports.build_report(run, images)
    if options.report_json:
        reports.write_json(state.report, Path(options.report_json))
    if options.report_md:
        reports.write_markdown(state.report, Path(options.report_md))
    if reporter is not None and options.report_json:
        reporter.write_line(f"dindcheck: JSON report written to {options.report_json}")
    if reporter is not None and options.report_md:
        reporter.write_line(f"dindcheck: Markdown report written to {options.report_md}")


def _apply_required_mode(session: pytest.Session, state: RunState, exitstatus: int, reporter: Any) -> None:
    """--require-mode: the exit code answers only 'is MODE usable here?' (0 yes, 1 no)."""
    options = state.options
    if options is None or options.require_mode is None or state.report is None:
        return
    if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    usable = state.report.is_usable(options.require_mode)
    session.exitstatus = pytest.ExitCode.OK if usable else pytest.ExitCode.TESTS_FAILED
    if reporter is not None:
        word = "usable" if usable else "NOT usable"
        mode = options.require_mode.value
        reporter.write_line(f"dindcheck: --require-mode {mode}: {word} (exit {int(session.exitstatus)})")


def _teardown(state: RunState, reporter: Any) -> None:
    """Delete what the run made, unless --keep; never raise over the real outcome."""
    if state.connection is None or state.space is None:
        return
    space, state.space = state.space, None
    if state.runner is not None:
        state.runner.cancel.set()
    options = state.options
    if options is not None and options.keep:
        if reporter is not None:
            reporter.write_line(
                f"dindcheck: --keep: objects left in namespace {space.namespace} "
                f"(label dindcheck.io/run={space.run_id})"
            )
        return
    say = reporter.write_line if reporter is not None else print
    try:
        left = workspace.cleanup(state.connection, space, say=say)
    except (ApiException, OSError) as exc:
        say(f"dindcheck: cleanup failed: {exc}; delete objects labelled dindcheck.io/run={space.run_id} by hand")
        return
    if left:
        say(f"dindcheck: cleanup incomplete after 30s, still present: {', '.join(left)}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The compatibility table and the recommendation, after pytest's own summary."""
    state = config.stash.get(STATE, None)
    if state is None or state.report is None:
        return
    terminalreporter.section("dindcheck compatibility report")
    for line in reports.render_terminal(state.report):
        terminalreporter.write_line(line)
