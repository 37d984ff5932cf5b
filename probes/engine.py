"""The probe engine: make pods, wait for them with a deadline, run commands in them, clean up.

It knows nothing of docker or BuildKit: a probe definition says what to deploy and what to run; the engine only
deploys, waits, executes and says why a pod is not running (events, pull failures, scheduling) instead of hanging.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import testinfra
import urllib3
from kubernetes.client.rest import ApiException

from probes import admission
from probes.cluster import Connection
from probes.exceptions import (
    AdmissionRejectedError,
    CancelledError,
    CommandError,
    PodNotRunningError,
    ProbeError,
)
from probes.model import Evidence, Status, Verdict

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "dindcheck"  # CONTRACT (design.md): every object created carries this label
PROBE_LABEL = "dindcheck.io/probe"
RUN_LABEL = "dindcheck.io/run"
POLL_S = 0.5
EVENT_POLL_S = 2.0
API_TIMEOUT_S = 15.0

# Waiting reasons that never fix themselves within a probe's deadline: fail fast with the reason.
TERMINAL_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
# Event reasons that mean the kubelet gave up on the pod's sandbox or volumes.
TERMINAL_EVENT_REASONS = frozenset({"FailedCreatePodSandBox", "FailedMount", "FailedAttachVolume"})


@dataclass(frozen=True)
class Images:
    """Every image a probe may use; all overridable for air-gapped clusters (--image-*)."""

    dind: str = "docker.io/library/docker:28-dind"
    buildkit: str = "docker.io/moby/buildkit:rootless"
    tools: str = "docker.io/library/debian:bookworm-slim"
    registry: str = "docker.io/library/registry:2"


@dataclass(frozen=True)
class RunSettings:
    """What probes may know of the run's options."""

    namespace: str
    run_id: str
    images: Images = field(default_factory=Images)
    storage_class: str | None = None
    registry: str | None = None
    registry_secret: str | None = None
    registry_insecure: bool = False
    image_pull_secret: str | None = None
    timeout_s: float = 120.0


@dataclass(frozen=True)
class CommandResult:
    """A command run in a probe container: what it printed and how it ended."""

    rc: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.rc == 0

    def tail(self, lines: int = 6) -> str:
        """The last lines of stderr (or stdout), for a one-line cause in a summary."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(text[-lines:])


@dataclass(frozen=True)
class Outcome:
    """What a probe concludes; the engine adds id, capability and duration to make the Verdict."""

    status: Status
    summary: str
    evidence: Evidence = field(default_factory=dict)
    remediation: str | None = None


@dataclass(frozen=True)
class ProbeDefinition:
    """One capability probe: what it proves, how (run), and what to do when it does not pass."""

    id: str
    capability: str
    title: str
    remediation: str
    run: Callable[[ProbeContext], Outcome]


class Progress:
    """The latest word from every probe, shared between probe threads and the terminal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, str] = {}

    def update(self, probe_id: str, message: str) -> None:
        """Record what a probe is doing now."""
        with self._lock:
            self._latest[probe_id] = message

    def snapshot(self) -> dict[str, str]:
        """A copy of every probe's latest message."""
        with self._lock:
            return dict(self._latest)


def compact(text: str, limit: int = 320) -> str:
    """A long runtime error, shortened for a one-line summary: its head and its tail (the root cause) kept.

    containerd and kubelet nest causes ("failed to X: failed to Y: ...: not found"); the evidence keeps it whole.
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head].rstrip()} … {text[-(limit - head - 3) :].lstrip()}"


def key_values(text: str) -> dict[str, str]:
    """Parse the KEY=VALUE lines that probe scripts print (later keys win; other lines are ignored)."""
    parsed: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and key.replace("_", "").replace(".", "").replace("-", "").isalnum():
            parsed[key.strip()] = value.strip()
    return parsed


class ProbeContext:
    """What a probe may do to the cluster: the engine's verbs, scoped to one probe and one run."""

    def __init__(
        self,
        definition: ProbeDefinition,
        connection: Connection,
        settings: RunSettings,
        progress: Progress,
        cancel: threading.Event,
    ) -> None:
        self.definition = definition
        self.connection = connection
        self.settings = settings
        self.core = connection.core
        self._progress = progress
        self._cancel = cancel

    # ----- naming and manifests -------------------------------------------------------------------------------
    @property
    def labels(self) -> dict[str, str]:
        """Labels on every object this probe makes (cleanup finds them by these)."""
        return {
            MANAGED_BY_LABEL: MANAGED_BY,
            PROBE_LABEL: self.definition.id,
            RUN_LABEL: self.settings.run_id,
        }

    def name(self, suffix: str) -> str:
        """A DNS-1123 object name unique to this run and probe."""
        return f"dc-{self.settings.run_id}-{self.definition.id}-{suffix}"[:63].rstrip("-")

    def pod_manifest(self, suffix: str, spec: dict[str, Any]) -> dict[str, Any]:
        """A Pod with this run's labels, pull secret and quick deletion; spec fields win over the defaults."""
        full_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
        }
        if self.settings.image_pull_secret:
            full_spec["imagePullSecrets"] = [{"name": self.settings.image_pull_secret}]
        full_spec.update(spec)
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name(suffix), "namespace": self.settings.namespace, "labels": self.labels},
            "spec": full_spec,
        }

    # ----- progress and cancellation --------------------------------------------------------------------------
    def say(self, message: str) -> None:
        """Tell the terminal what this probe is doing."""
        self._progress.update(self.definition.id, message)

    def check_cancelled(self) -> None:
        """Stop work when the run is being torn down."""
        if self._cancel.is_set():
            raise CancelledError("run cancelled")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once when the run is cancelled."""
        if self._cancel.wait(seconds):
            raise CancelledError("run cancelled")

    # ----- admission --------------------------------------------------------------------------------------------
    def dry_run(self, manifest: dict[str, Any]) -> admission.Admission:
        """Server-side dry-run create: the only way to see cluster-wide admission defaults and policies."""
        return self._create(manifest, dry_run=True)

    def create_pod(self, manifest: dict[str, Any]) -> admission.Admission:
        """Create a pod for real; AdmissionRejectedError carries the server's message and its source."""
        self.check_cancelled()
        result = self._create(manifest, dry_run=False)
        if not result.admitted:
            raise _refusal(result)
        return result

    def _create(self, manifest: dict[str, Any], *, dry_run: bool) -> admission.Admission:
        kwargs: dict[str, Any] = {"_request_timeout": API_TIMEOUT_S}
        if dry_run:
            kwargs["dry_run"] = "All"
        try:
            _, code, headers = self.core.create_namespaced_pod_with_http_info(
                self.settings.namespace, manifest, **kwargs
            )
        except ApiException as exc:
            return admission.rejection(int(exc.status or 0), exc.body)
        return admission.Admission(admitted=True, code=int(code), warnings=admission.warnings_from_headers(headers))

    # ----- waiting ---------------------------------------------------------------------------------------------
    def wait_running(self, pod_name: str, *, timeout_s: float | None = None) -> Any:
        """Wait until the pod runs; raise PodNotRunningError with the reason seen when it cannot or does not."""
        limit_s = timeout_s or self.settings.timeout_s
        deadline = time.monotonic() + limit_s
        next_events = 0.0
        while True:
            self.check_cancelled()
            pod = self.core.read_namespaced_pod(pod_name, self.settings.namespace, _request_timeout=API_TIMEOUT_S)
            phase = pod.status.phase or "Pending"
            if phase == "Running" and _all_started(pod):
                self.say(f"pod {pod_name} running")
                return pod
            terminal, reason = _pod_problem(pod)
            if not terminal and time.monotonic() >= next_events:
                next_events = time.monotonic() + EVENT_POLL_S
                event_terminal, event_reason = self._event_problem(pod_name)
                if event_reason:
                    terminal, reason = event_terminal, event_reason
            if terminal or phase in ("Succeeded", "Failed"):
                raise PodNotRunningError(
                    f"pod {pod_name} is not running: {compact(reason)}", reason=reason, phase=phase
                )
            self.say(f"pod {pod_name} {phase}: {reason}")
            if time.monotonic() >= deadline:
                raise PodNotRunningError(
                    f"pod {pod_name} not running after {limit_s:.0f}s ({phase}: {compact(reason)})",
                    reason=reason,
                    phase=phase,
                )
            self.sleep(POLL_S)

    def events(self, name: str) -> list[Any]:
        """Events about one object of this run, oldest first."""
        found = self.core.list_namespaced_event(
            self.settings.namespace, field_selector=f"involvedObject.name={name}", _request_timeout=API_TIMEOUT_S
        ).items
        return sorted(found, key=lambda e: str(e.last_timestamp or e.event_time or ""))

    def _event_problem(self, name: str) -> tuple[bool, str]:
        try:
            events = self.events(name)
        except ApiException:
            return False, ""
        warnings = [e for e in events if e.type == "Warning"]
        if not warnings:
            return False, ""
        last = warnings[-1]
        text = f"{last.reason}: {last.message}"
        return last.reason in TERMINAL_EVENT_REASONS, text

    def create_pvc(self, suffix: str, storage_class: str, size: str = "1Gi") -> str:
        """Create a ReadWriteOnce PVC of the class; returns its name."""
        self.check_cancelled()
        name = self.name(suffix)
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": self.settings.namespace, "labels": self.labels},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class,
                "resources": {"requests": {"storage": size}},
            },
        }
        try:
            self.core.create_namespaced_persistent_volume_claim(
                self.settings.namespace, body, _request_timeout=API_TIMEOUT_S
            )
        except ApiException as exc:
            raise _refusal(admission.rejection(int(exc.status or 0), exc.body)) from exc
        return name

    # ----- running commands ------------------------------------------------------------------------------------
    def exec(self, pod_name: str, container: str, script: str, *, timeout_s: float = 60.0) -> CommandResult:
        """Run a shell script in a container through testinfra's kubectl backend, bounded in time in the pod."""
        self.check_cancelled()
        url = (
            f"kubectl://{pod_name}?container={container}&namespace={self.settings.namespace}"
            f"&kubeconfig={self.connection.kubeconfig}"
        )
        if self.connection.context:
            url += f"&context={self.connection.context}"
        host = testinfra.get_host(url)
        wrapped = f"timeout {int(timeout_s)} /bin/sh -c {shlex.quote(script)}"
        started = time.monotonic()
        try:
            result = host.run(wrapped)
        except OSError as exc:
            raise CommandError(f"cannot run kubectl exec in {pod_name}/{container}: {exc}") from exc
        duration = time.monotonic() - started
        self.check_cancelled()
        if result.rc == 124:
            return CommandResult(124, result.stdout, result.stderr + f"\n(timed out after {timeout_s:.0f}s)", duration)
        return CommandResult(result.rc, result.stdout, result.stderr, duration)

    def logs(self, pod_name: str, container: str, *, tail: int = 40) -> str:
        """The last lines a container logged ('' when there are none yet)."""
        try:
            text = self.core.read_namespaced_pod_log(
                pod_name, self.settings.namespace, container=container, tail_lines=tail, _request_timeout=API_TIMEOUT_S
            )
        except ApiException:
            return ""
        return str(text)

    def delete_pod(self, pod_name: str) -> None:
        """Delete a pod now (no grace); a pod that is already gone is fine."""
        try:
            self.core.delete_namespaced_pod(
                pod_name, self.settings.namespace, grace_period_seconds=0, _request_timeout=API_TIMEOUT_S
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    @contextmanager
    def pod(self, manifest: dict[str, Any], *, timeout_s: float | None = None) -> Iterator[Any]:
        """Create a pod, wait until it runs, yield it, and delete it afterwards whatever happened."""
        name = manifest["metadata"]["name"]
        self.say(f"creating pod {name}")
        self.create_pod(manifest)
        try:
            yield self.wait_running(name, timeout_s=timeout_s)
        finally:
            self.delete_pod(name)


def _refusal(result: admission.Admission) -> AdmissionRejectedError:
    """The error a probe sees when the API server refused to create one of its objects."""
    return AdmissionRejectedError(result.message, source=result.source, code=result.code)


def _all_started(pod: Any) -> bool:
    statuses = list(pod.status.container_statuses or [])
    return bool(statuses) and all(s.started or s.ready or (s.state and s.state.running) for s in statuses)


def _pod_problem(pod: Any) -> tuple[bool, str]:
    """(terminal?, reason) for a pod that is not running yet, from its container statuses and conditions."""
    statuses = list(pod.status.init_container_statuses or []) + list(pod.status.container_statuses or [])
    for status in statuses:
        state = status.state
        if state and state.waiting and state.waiting.reason and state.waiting.reason != "ContainerCreating":
            text = f"container {status.name}: {state.waiting.reason}"
            if state.waiting.message:
                text += f": {state.waiting.message}"
            return state.waiting.reason in TERMINAL_WAITING_REASONS, text
        if state and state.terminated and (state.terminated.exit_code or 0) != 0:
            term = state.terminated
            text = f"container {status.name} exited {term.exit_code} ({term.reason or 'Error'})"
            if term.message:
                text += f": {term.message.strip()}"
            return True, text
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return False, f"{condition.reason}: {condition.message}"
    for status in statuses:
        if status.state and status.state.waiting:
            return False, f"container {status.name}: {status.state.waiting.reason or 'waiting'}"
    return False, "waiting for containers to start"


class ProbeRunner:
    """Runs every selected probe at once in threads, so a run takes little more than its slowest probe."""

    def __init__(self, connection: Connection, settings: RunSettings, progress: Progress) -> None:
        self._connection = connection
        self._settings = settings
        self._progress = progress
        self.cancel = threading.Event()
        self._futures: dict[str, Future[Verdict]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def start(self, definitions: list[ProbeDefinition]) -> None:
        """Start every probe now."""
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(definitions)), thread_name_prefix="probe")
        for definition in definitions:
            context = ProbeContext(definition, self._connection, self._settings, self._progress, self.cancel)
            self._futures[definition.id] = self._pool.submit(run_probe, definition, context)

    def started(self, probe_id: str) -> bool:
        """Whether that probe was started in this run."""
        return probe_id in self._futures

    def verdict(self, probe_id: str, on_wait: Callable[[], None], poll_s: float = 1.0) -> Verdict:
        """Block until a probe is done, calling on_wait while waiting (progress display)."""
        future = self._futures[probe_id]
        while not future.done():
            on_wait()
            try:
                return future.result(timeout=poll_s)
            except TimeoutError:
                continue
        return future.result()

    def stop(self, wait_s: float = 5.0) -> None:
        """Cancel every probe and give threads a moment to notice; threads stuck in I/O are abandoned."""
        self.cancel.set()
        if self._pool is None:
            return
        deadline = time.monotonic() + wait_s
        for future in self._futures.values():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(Exception):  # results are read elsewhere; here we only wait
                future.result(timeout=remaining)
        self._pool.shutdown(wait=False, cancel_futures=True)


def run_probe(definition: ProbeDefinition, context: ProbeContext) -> Verdict:
    """Run one probe and turn whatever happened into a Verdict: never a pass that was not proven."""
    started = time.monotonic()
    remediation = definition.remediation
    try:
        outcome = definition.run(context)
    except AdmissionRejectedError as exc:
        outcome = Outcome(
            Status.SKIPPED,
            f"not run: a pod it needs was {exc.describe()}",
            {"admission": exc.evidence()},
        )
    except PodNotRunningError as exc:
        outcome = Outcome(Status.INCONCLUSIVE, f"could not run: {exc}", {"pod": exc.evidence()})
    except CancelledError:
        outcome = Outcome(Status.INCONCLUSIVE, "cancelled before it finished (run interrupted)")
    except ProbeError as exc:
        outcome = Outcome(Status.INCONCLUSIVE, f"could not finish: {exc}")
    except ApiException as exc:
        message = admission.message_from_body(exc.body) or str(exc.reason)
        outcome = Outcome(Status.INCONCLUSIVE, f"API error {exc.status}: {message}", {"api_status": exc.status})
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        outcome = Outcome(Status.INCONCLUSIVE, f"API connection failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug must surface as an error in pytest, never as a pass
        outcome = Outcome(
            Status.INCONCLUSIVE,
            f"dindcheck internal error: {exc!r}",
            {"internal_error": traceback.format_exc()},
        )
    context.say("done")
    return Verdict(
        id=definition.id,
        capability=definition.capability,
        status=outcome.status,
        summary=outcome.summary,
        evidence=outcome.evidence,
        remediation=outcome.remediation if outcome.remediation is not None else remediation,
        duration_s=time.monotonic() - started,
    )
