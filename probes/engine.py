"""The probe engine: make pods, wait for them with a deadline, run commands in them, clean up.

It knows nothing of docker, BuildKit, images or registries: a task says what to deploy and what to run; the engine
deploys, waits, executes through the API server's exec channel and says why a pod is not running (events, pull
failures, scheduling) instead of hanging. Failures of the engine's own channels are never facts about the cluster.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import shlex
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream
from websocket import WebSocketException

from probes import admission
from probes.api import API_TIMEOUT_S, NOT_PROCESSED, ApiHealth, api_bound_s, api_call, ledger_of
from probes.cluster import Connection
from probes.exceptions import (
    AdmissionRejectedError,
    CancelledError,
    ExecChannelError,
    PodNotRunningError,
    ProbeError,
)
from probes.model import (
    BASELINE_SELINUX_TYPES,
    NO_FACTS,
    NO_PLACEMENT,
    Admission,
    Evidence,
    Facts,
    Placement,
    Status,
    TestedSpec,
    Verdict,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "dindcheck"  # CONTRACT (docs/contracts.md): every object created carries this label
PROBE_LABEL = "dindcheck.io/probe"
RUN_LABEL = "dindcheck.io/run"
TARGET_LABEL = "dindcheck.io/target"
POLL_S = 0.5
EVENT_POLL_S = 2.0
EXEC_GRACE_S = 15.0
"""How long past a command's own in-pod timeout the exec channel may stay silent before it counts as broken."""
EXEC_BUDGET_S = 600
"""Time a probe pod may spend on commands once running; with --timeout it bounds activeDeadlineSeconds."""

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


DEFAULT_TIMEOUT_S = 120.0
"""--timeout's default: how long a probe pod may take to start on a node of usual speed."""


@dataclass(frozen=True)
class RunScope:
    """Where and how long this run's pods live: the engine's settings, none of them about what a probe tests."""

    namespace: str
    run_id: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    image_pull_secret: str | None = None
    keep: bool = False
    selinux_type: str = ""
    """The SELinux type every probe pod runs as (pod securityContext.seLinuxOptions.type; '' lets the runtime pick,
    container_t on SELinux nodes): what a pod needs where the node's policy refuses container_t, so it is carried."""

    @property
    def slowness(self) -> float:
        """How much slower than usual the nodes are said to be: --timeout over its default, never below 1.

        One flag for a slow node (an emulated one, a starved pool): every command's time limit in a probe pod grows
        with the pod start timeout, so a slow node's commands are not cut short and reported inconclusive.
        """
        return max(1.0, self.timeout_s / DEFAULT_TIMEOUT_S)

    @property
    def active_deadline_s(self) -> int:
        """The activeDeadlineSeconds of every pod: a pod of a killed run (SIGKILL, lost laptop) ends by itself."""
        return int(self.timeout_s) + EXEC_BUDGET_S

    def pod_fields(self) -> dict[str, Any]:
        """The pod-level fields of every probe pod: no restarts, a quick stop, a deadline, no token, the pull secret."""
        fields: dict[str, Any] = {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "activeDeadlineSeconds": self.active_deadline_s,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
        }
        if self.image_pull_secret:
            fields["imagePullSecrets"] = [{"name": self.image_pull_secret}]
        if self.selinux_type:
            fields["securityContext"] = {"seLinuxOptions": {"type": self.selinux_type}}
        return fields

    def left_out_note(self) -> str:
        """Why the config to paste has neither of the probe pod's PROBE_ONLY_POD_FIELDS."""
        return (
            f"Left out of the probe pod: activeDeadlineSeconds {self.active_deadline_s} and "
            "terminationGracePeriodSeconds 1 (the run's own safety net and quick cleanup, which would cut a CI job "
            "short) and its dindcheck labels."
        )

    def selinux_note(self) -> tuple[str, ...]:
        """Why the config to paste sets an SELinux type: every probe pod ran with it, so the verdicts need it."""
        if not self.selinux_type:
            return ()
        said = (
            f"Its pod securityContext.seLinuxOptions.type {self.selinux_type} is --selinux-type {self.selinux_type}'s: "
            "every probe pod ran as that type, so what passed here passed with it (not as the runtime's default "
            f"container_t). Pod Security baseline admits only {', '.join(BASELINE_SELINUX_TYPES)}; spc_t leaves "
            "the containers unconfined by SELinux."
        )
        return (said,)


PROBE_ONLY_POD_FIELDS = frozenset({"activeDeadlineSeconds", "terminationGracePeriodSeconds"})
"""Pod fields that only bound the probe itself: the config to paste leaves them out (and says so). Every other pod
field of the probe pod (no restarts, no token, no service links, the pull secret) shaped what ran: it carries them."""


@dataclass(frozen=True)
class CommandResult:
    """A command run in a probe container: what it printed and how it ended (its own exit code)."""

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
    facts: Facts = NO_FACTS


@dataclass(frozen=True)
class Task:
    """One probe bound to this run's settings: what the engine runs in a thread."""

    id: str
    capability: str
    remediation: str
    work: Callable[[ProbeContext], Outcome]
    placement: Placement = NO_PLACEMENT
    """Where its pods go (pod-level scheduling fields only)."""
    target: str = ""
    """Tells runs of the same probe on different targets apart (object names, labels, the runner's key)."""
    paste_placement: Placement = NO_PLACEMENT
    """The placement the tested specs carry into the config to paste (the pool's selector, the taints met)."""

    @property
    def key(self) -> str:
        """The runner's key: unique per probe and target."""
        return f"{self.target}/{self.id}" if self.target else self.id


class ImageLedger:
    """Image ref -> the imageID a node resolved it to, as seen in running probe pods (shared by probe threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, str] = {}

    def record(self, pod: Any) -> None:
        """Note every container's resolved image of a running pod."""
        statuses = list(pod.status.init_container_statuses or []) + list(pod.status.container_statuses or [])
        specs = {c.name: c.image for c in list(pod.spec.init_containers or []) + list(pod.spec.containers or [])}
        with self._lock:
            for status in statuses:
                if status.image_id and status.name in specs:
                    self._seen.setdefault(specs[status.name], str(status.image_id))

    def digest(self, ref: str) -> str:
        """The resolved imageID of ref ('' when no running pod used it)."""
        with self._lock:
            return self._seen.get(ref, "")


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


Needle = str | tuple[str, ...]
"""A text to look for, or several that must all be present."""


def named_cause(text: str, causes: tuple[tuple[tuple[Needle, ...], str], ...]) -> str:
    """The first cause one of whose needles the text contains (case-insensitive), or '' when none matches."""
    lowered = text.lower()
    for needles, cause in causes:
        for needle in needles:
            parts = (needle,) if isinstance(needle, str) else needle
            if all(part.lower() in lowered for part in parts):
                return cause
    return ""


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


def exec_open_failure(exc: ApiException) -> str:
    """Why an exec channel could not be opened, when the command surely never started and a retry is safe.

    "429" (throttled at the upgrade), "connection refused" or "503 ..." (the API server away); '' for anything else.
    """
    text = str(exc.reason or "")
    lowered = text.lower()
    if exc.status == 429 or "handshake status 429" in lowered:
        return "429"
    if exc.status == 503 or "handshake status 503" in lowered:
        return "503 Service Unavailable (at the exec upgrade)"
    if "connection refused" in lowered:
        return "connection refused"
    return ""


def exit_code(status_text: str) -> int:
    """The command's exit code from the exec status channel; ExecChannelError when the channel says no such thing.

    The API server ends every exec with a Status: Success (0), Failure/NonZeroExitCode with the code as a cause,
    or Failure with another reason (the exec itself failed: container gone, runtime error).
    """
    if not status_text.strip():
        raise ExecChannelError("the exec channel closed without an exit status")
    try:
        status = json.loads(status_text)
    except ValueError as exc:
        raise ExecChannelError(f"the exec channel sent an unreadable status: {status_text[:200]}") from exc
    if not isinstance(status, dict):
        raise ExecChannelError(f"the exec channel sent an unreadable status: {status_text[:200]}")
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
                return int(cause["message"])
    raise ExecChannelError(f"exec failed: {status.get('message') or status_text[:200]}")


class InFlight:
    """The creates under way: cleanup waits for them, so an object a create makes as the run is cancelled is deleted.

    A create starts only while the run is not cancelled, checked under the same lock that counts it: once cancel is
    set and the count is zero, no create of this run can reach the API server any more.
    """

    def __init__(self, cancel: threading.Event) -> None:
        self._cancel = cancel
        self._idle = threading.Condition()
        self._count = 0

    @contextmanager
    def create(self) -> Iterator[None]:
        """Count one create while it runs; CancelledError instead when the run is already cancelled."""
        with self._idle:
            if self._cancel.is_set():
                raise CancelledError("run cancelled")
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    @property
    def busy(self) -> bool:
        """Whether a create is under way now."""
        with self._idle:
            return self._count > 0

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no create is under way (at most timeout_s); whether that happened."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout=max(0.0, timeout_s))


class ProbeContext:
    """What a probe may do to the cluster: the engine's verbs, scoped to one probe and one run."""

    def __init__(
        self,
        task: Task,
        connection: Connection,
        scope: RunScope,
        progress: Progress,
        cancel: threading.Event,
        images: ImageLedger | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.task = task
        self.connection = connection
        self.scope = scope
        self.core = connection.core
        self._progress = progress
        self._cancel = cancel
        self._images = images or ImageLedger()
        self._in_flight = in_flight or InFlight(cancel)
        self.nodes: set[str] = set()
        """The nodes this probe's pods ran on (the verdict names them)."""
        self.disturbances: list[str] = []
        """What the node did to this probe's pods (evicted, preempted, a container killed): no verdict survives it."""
        self._live_pods: set[str] = set()
        """Pods this probe created and has not deleted: one that vanishes before the probe deletes it was taken."""
        self.channels_lost: list[str] = []
        """Exec channels that broke or closed without a status: evidence lost if the API server was away meanwhile."""

    @property
    def health(self) -> ApiHealth:
        """The API ledger of the probe's cluster: what the API server did to its calls (each cluster its own)."""
        return ledger_of(self.connection.api_client)

    # ----- naming and manifests -------------------------------------------------------------------------------
    @property
    def labels(self) -> dict[str, str]:
        """Labels on every object this probe makes (cleanup finds them by these)."""
        labels = {
            MANAGED_BY_LABEL: MANAGED_BY,
            PROBE_LABEL: self.task.id,
            RUN_LABEL: self.scope.run_id,
        }
        if self.task.target:
            labels[TARGET_LABEL] = self.task.target
        return labels

    def name(self, suffix: str) -> str:
        """A DNS-1123 object name unique to this run, target and probe."""
        target = f"{short_name(self.task.target)}-" if self.task.target else ""
        return f"dc-{self.scope.run_id}-{target}{self.task.id}-{suffix}"[:63].rstrip("-")

    def pod_manifest(
        self, suffix: str, spec: Mapping[str, Any], *, annotations: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """A Pod of this run: the probe's spec, untouched, plus what only the harness needs.

        The harness part (labels, no restarts, a quick stop, a deadline, no service account token, the pull secret)
        is added around the spec, never inside a container, so the spec stays the one users are told to paste.
        """
        full_spec = self.scope.pod_fields()
        for key, value in copy.deepcopy(dict(spec)).items():
            full_spec[key] = merged_pod_field(full_spec.get(key), value)
        place(full_spec, self.task.placement)
        metadata: dict[str, Any] = {"name": self.name(suffix), "namespace": self.scope.namespace, "labels": self.labels}
        if annotations:
            metadata["annotations"] = dict(annotations)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": full_spec}

    # ----- progress and cancellation --------------------------------------------------------------------------
    def say(self, message: str) -> None:
        """Tell the terminal what this probe is doing."""
        self._progress.update(self.task.key, message)

    def check_cancelled(self) -> None:
        """Stop work when the run is being torn down."""
        if self._cancel.is_set():
            raise CancelledError("run cancelled")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once when the run is cancelled."""
        if self._cancel.wait(seconds):
            raise CancelledError("run cancelled")

    # ----- admission --------------------------------------------------------------------------------------------
    def dry_run(self, manifest: dict[str, Any]) -> Admission:
        """Server-side dry-run create: the only way to see cluster-wide admission defaults and policies."""
        return self._create(manifest, dry_run=True)

    def create_pod(self, manifest: dict[str, Any]) -> Admission:
        """Create a pod for real; AdmissionRejectedError carries the server's message and its source."""
        with self._in_flight.create():
            result = self._create(manifest, dry_run=False)
        if not result.admitted:
            raise refusal(result)
        self._live_pods.add(str(manifest["metadata"]["name"]))
        return result

    def _create(self, manifest: dict[str, Any], *, dry_run: bool) -> Admission:
        kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        try:
            _, code, headers = api_call(
                self.core.create_namespaced_pod_with_http_info,
                self.scope.namespace,
                manifest,
                retried=NOT_PROCESSED,
                **kwargs,
            )
        except ApiException as exc:
            return admission.rejection(int(exc.status or 0), exc.body)
        return Admission(admitted=True, code=int(code), warnings=admission.warnings_from_headers(headers))

    # ----- waiting ---------------------------------------------------------------------------------------------
    def read_pod(self, pod_name: str) -> Any:
        """The pod as the API server has it now."""
        return api_call(self.core.read_namespaced_pod, pod_name, self.scope.namespace)

    def wait_running(
        self,
        pod_name: str,
        *,
        timeout_s: float | None = None,
        final_event: Callable[[str, str], bool] | None = None,
    ) -> Any:
        """Wait until the pod runs; raise PodNotRunningError with the reason seen when it cannot or does not.

        Events the kubelet retries (sandbox, mount, attach) are shown but only end the wait at the deadline,
        unless the probe knows one of them is final (final_event(reason, message)).
        """
        limit_s = timeout_s or self.scope.timeout_s
        deadline = time.monotonic() + limit_s
        next_events = 0.0
        last_event = ("", "")
        while True:
            self.check_cancelled()
            pod = self.read_pod(pod_name)
            phase = pod.status.phase or "Pending"
            self._note_node(pod)  # once scheduled: a pod that never runs was still tried on that node
            if phase == "Running" and _all_started(pod):
                self.say(f"pod {pod_name} running")
                self._images.record(pod)
                return pod
            terminal, reason = pod_problem(pod)
            if not terminal and time.monotonic() >= next_events:
                next_events = time.monotonic() + EVENT_POLL_S
                event = self._last_warning(pod_name)
                if event[0]:
                    last_event = event
                    reason = f"{event[0]}: {event[1]}"
                    terminal = final_event is not None and final_event(*event)
            if terminal or phase in ("Succeeded", "Failed"):
                raise PodNotRunningError(
                    f"pod {pod_name} is not running: {compact(reason)}",
                    reason=reason,
                    phase=phase,
                    event_reason=last_event[0],
                    event_message=last_event[1],
                )
            self.say(f"pod {pod_name} {phase}: {compact(reason, 120)}")
            if time.monotonic() >= deadline:
                if last_event[0] and last_event[0] not in reason:
                    reason = f"{reason}; last warning {last_event[0]}: {last_event[1]}"
                raise PodNotRunningError(
                    f"pod {pod_name} not running after {limit_s:.0f}s ({phase}: {compact(reason)})",
                    reason=reason,
                    phase=phase,
                    event_reason=last_event[0],
                    event_message=last_event[1],
                )
            self.sleep(POLL_S)

    def wait_terminated(self, pod_name: str, container: str, *, timeout_s: float | None = None) -> Any:
        """Wait until a container of a run-to-completion pod has terminated, or the pod ended without running it.

        The caller reads the outcome from the returned pod's statuses (exit codes, termination messages).
        PodNotRunningError: the pod could not start (image, admission at the kubelet) or the deadline passed.
        """
        limit_s = timeout_s or self.scope.timeout_s
        deadline = time.monotonic() + limit_s
        while True:
            self.check_cancelled()
            pod = self.read_pod(pod_name)
            phase = pod.status.phase or "Pending"
            statuses = list(pod.status.init_container_statuses or []) + list(pod.status.container_statuses or [])
            self._images.record(pod)
            self._note_node(pod)
            done = next((s for s in statuses if s.name == container and s.state and s.state.terminated), None)
            if done is not None or phase in ("Succeeded", "Failed"):
                return pod
            terminal, reason = pod_problem(pod)
            if terminal and "exited" not in reason:
                raise PodNotRunningError(f"pod {pod_name}: {compact(reason)}", reason=reason, phase=phase)
            if time.monotonic() >= deadline:
                raise PodNotRunningError(
                    f"container {container} of pod {pod_name} not done after {limit_s:.0f}s ({phase}: "
                    f"{compact(reason)})",
                    reason=reason,
                    phase=phase,
                )
            self.say(f"pod {pod_name} {phase}: {compact(reason, 120)}")
            self.sleep(POLL_S)

    def _note_node(self, pod: Any) -> None:
        if pod.spec.node_name:
            self.nodes.add(str(pod.spec.node_name))
        found = node_disturbance(pod)
        if found and found not in self.disturbances:
            self.disturbances.append(found)

    def note_disturbance(self, pod_name: str) -> None:
        """Read a pod of this probe once more before it goes, for what the node did to it (nothing when unreadable)."""
        try:
            self._note_node(self.read_pod(pod_name))
        except ApiException as exc:
            if exc.status == 404 and pod_name in self._live_pods and not self._cancel.is_set():
                event = self._last_warning(pod_name)
                said = f" (last warning {event[0]}: {event[1]})" if event[0] in STOPPING_EVENTS else ""
                self.disturbances.append(
                    f"pod {pod_name} was deleted while the probe used it (evicted, preempted or removed){said}"
                )
        except (urllib3.exceptions.HTTPError, OSError):
            return

    def unready_nodes(self) -> list[str]:
        """The probe's nodes that are not Ready now, each with the condition's words (a stopped kubelet, a lost node).

        Needs `get nodes`; without it (least-privilege RBAC) nothing is said.
        """
        found = []
        for name in sorted(self.nodes):
            try:
                node = api_call(self.core.read_node, name, deadline_s=5.0)
            except (ApiException, urllib3.exceptions.HTTPError, OSError):
                continue
            ready = next((c for c in node.status.conditions or [] if c.type == "Ready"), None)
            if ready is not None and ready.status != "True":
                found.append(f"node {name} is NotReady ({ready.status}: {ready.reason}: {ready.message})")
        return found

    def events(self, name: str) -> list[Any]:
        """Events about one object of this run, oldest first."""
        found = api_call(
            self.core.list_namespaced_event, self.scope.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return sorted(found, key=lambda e: str(e.last_timestamp or e.event_time or ""))

    def _last_warning(self, name: str) -> tuple[str, str]:
        try:
            events = self.events(name)
        except (ApiException, urllib3.exceptions.HTTPError, OSError):
            return "", ""
        warnings = [e for e in events if e.type == "Warning"]
        if not warnings:
            return "", ""
        return str(warnings[-1].reason or ""), str(warnings[-1].message or "")

    def create_pvc(self, suffix: str, storage_class: str, size: str = "1Gi") -> str:
        """Create a ReadWriteOnce PVC of the class; returns its name."""
        name = self.name(suffix)
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": self.scope.namespace, "labels": self.labels},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class,
                "resources": {"requests": {"storage": size}},
            },
        }
        try:
            with self._in_flight.create():
                api_call(
                    self.core.create_namespaced_persistent_volume_claim,
                    self.scope.namespace,
                    body,
                    retried=NOT_PROCESSED,
                )
        except ApiException as exc:
            raise refusal(admission.rejection(int(exc.status or 0), exc.body)) from exc
        return name

    # ----- running commands ------------------------------------------------------------------------------------
    def exec(self, pod_name: str, container: str, script: str, *, timeout_s: float = 60.0) -> CommandResult:
        """Run a shell script in a container through the API server's exec channel, bounded in time.

        The script runs under `timeout` in the pod; the channel gets EXEC_GRACE_S more. The returned exit code is
        the command's own, read from the status channel: a channel that fails, or closes without a status, raises
        ExecChannelError instead of passing for the command's answer.
        """
        self.check_cancelled()
        timeout_s *= self.scope.slowness
        command = ["/bin/sh", "-c", f"timeout {int(timeout_s)} /bin/sh -c {shlex.quote(script)}"]
        where = f"{pod_name}/{container}"
        started = time.monotonic()
        deadline = started + timeout_s + EXEC_GRACE_S
        channel = self._open_exec(pod_name, container, command)
        try:
            while channel.is_open():
                if self._cancel.is_set():
                    raise CancelledError("run cancelled")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ExecChannelError(
                        f"exec into {where}: no exit status within {timeout_s + EXEC_GRACE_S:.0f}s "
                        "(the command's own timeout should have ended it)"
                    )
                channel.update(timeout=min(remaining, 1.0))
            stdout = str(channel.read_channel(1))
            stderr = str(channel.read_channel(2))
            status_text = str(channel.read_channel(3))
        except (WebSocketException, OSError) as exc:
            self.channels_lost.append(f"exec into {where}: channel broke: {exc}")
            raise ExecChannelError(f"exec into {where}: channel broke: {exc}") from exc
        finally:
            channel.close()
        try:
            rc = exit_code(status_text)
        except ExecChannelError as exc:
            self.channels_lost.append(f"exec into {where}: {exc}")
            raise
        duration = time.monotonic() - started
        if rc == 124:
            stderr += f"\n(timed out after {timeout_s:.0f}s)"
        return CommandResult(rc, stdout, stderr, duration)

    def _open_exec(self, pod_name: str, container: str, command: list[str]) -> Any:
        """The exec channel, once the API server accepts it.

        A refused connection or a 429/503 at the upgrade (the command never started) is tried again while the API is
        away, for at most DINDCHECK_API_BOUND_S.
        """
        where = f"{pod_name}/{container}"
        deadline = time.monotonic() + api_bound_s()
        delay = 0.5
        while True:
            # stream() swaps the API client's transport while it connects: a client of its own keeps threads safe
            core = client.CoreV1Api(client.ApiClient(self.connection.api_client.configuration))
            try:
                channel = stream(
                    core.connect_get_namespaced_pod_exec,
                    pod_name,
                    self.scope.namespace,
                    container=container,
                    command=command,
                    stderr=True,
                    stdin=False,
                    stdout=True,
                    tty=False,
                    _preload_content=False,
                    _request_timeout=API_TIMEOUT_S,
                )
            except ApiException as exc:
                # the client wraps every failure to connect as status 0 with the websocket's own words
                failure = exec_open_failure(exc)
                if not failure or time.monotonic() + delay > deadline:
                    self.channels_lost.append(f"exec into {where} failed: {exc.reason}")
                    raise ExecChannelError(f"exec into {where} failed: {compact(str(exc.reason or exc), 400)}") from exc
                if failure == "429":
                    self.health.throttled(delay)
                else:
                    self.health.away(failure)
            except (WebSocketException, OSError) as exc:
                self.channels_lost.append(f"exec into {where} failed: {exc}")
                raise ExecChannelError(f"exec into {where} failed: {exc}") from exc
            else:
                self.health.answered()
                return channel
            self.sleep(delay)
            delay = min(delay * 2, 5.0)

    def logs(self, pod_name: str, container: str, *, tail: int = 40) -> str:
        """The last lines a container logged ('' when there are none yet or they cannot be read)."""
        try:
            text = api_call(
                self.core.read_namespaced_pod_log,
                pod_name,
                self.scope.namespace,
                container=container,
                tail_lines=tail,
                deadline_s=5.0,
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError):
            return ""
        return str(text)

    def delete_pod(self, pod_name: str) -> None:
        """Delete a pod now (no grace), unless the run keeps its objects (--keep); a pod already gone is fine.

        The pod is read first: an eviction or a container the node killed shows only in its status.
        """
        self.note_disturbance(pod_name)
        self._live_pods.discard(pod_name)
        if self.scope.keep:
            return
        try:
            api_call(self.core.delete_namespaced_pod, pod_name, self.scope.namespace, grace_period_seconds=0)
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


def short_name(text: str, limit: int = 10) -> str:
    """A short DNS-1123 label for a name that may be long or hold other characters: the name itself when it fits."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    if slug and len(slug) <= limit and slug == text:
        return slug
    digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:4]
    return f"{slug[: limit - 5].strip('-')}-{digest}".lstrip("-")


def place(spec: dict[str, Any], placement: Placement) -> None:
    """Add the run's placement to a pod spec: merged with what the probe's own spec asks (a runtime's nodeSelector).

    A node is pinned by a nodeAffinity on metadata.name, not by nodeName: nodeName bypasses the scheduler, so taints
    would not be checked and a WaitForFirstConsumer volume would never bind.
    """
    if placement.node_selector:
        spec["nodeSelector"] = {**dict(placement.node_selector), **spec.get("nodeSelector", {})}
    if placement.tolerations:
        spec["tolerations"] = [*spec.get("tolerations", []), *(dict(t) for t in placement.tolerations)]
    if placement.node:
        term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [placement.node]}]}
        affinity = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
        required = affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": []})
        terms = required["nodeSelectorTerms"] or [{}]
        # terms are ORed: the node's field requirement goes into each, so every alternative is on that node
        required["nodeSelectorTerms"] = [
            {**t, "matchFields": [*t.get("matchFields", []), *term["matchFields"]]} for t in terms
        ]


def placed(spec: Mapping[str, Any], placement: Placement) -> dict[str, Any]:
    """A copy of a pod spec with the placement added."""
    copied = copy.deepcopy(dict(spec))
    place(copied, placement)
    return copied


def merged_pod_field(run: Any, own: Any) -> Any:
    """A pod field as the run's fields and the probe's spec give it: the spec's own value wins.

    A mapping (a pod securityContext with --selinux-type's seLinuxOptions) is merged key by key, losing nothing.
    """
    if own is None:
        return run
    if isinstance(run, Mapping) and isinstance(own, Mapping):
        return {**run, **own}
    return own


def pasted(tested: TestedSpec, scope: RunScope, task: Task) -> TestedSpec:
    """A probe's tested spec as users paste it: the pod the probe submitted, minus only what bounds the run itself.

    The spec's own fields come first, then the pod fields the probe pod had (pod_manifest puts the same ones around
    the same spec) except PROBE_ONLY_POD_FIELDS, then the placement the config to paste carries (the pool's selector,
    the taints met: not the probe's pin to one node). The run's labels stay out; the check is named.
    """
    spec = copy.deepcopy(dict(tested.spec))
    for key, value in scope.pod_fields().items():
        if key not in PROBE_ONLY_POD_FIELDS:
            spec[key] = merged_pod_field(value, spec.get(key))
    place(spec, task.paste_placement)
    notes = (*tested.notes, scope.left_out_note(), *scope.selinux_note())
    return replace(tested, spec=spec, notes=notes, check=task.id)


def refusal(result: Admission) -> AdmissionRejectedError:
    """The error a probe sees when the API server refused to create one of its objects."""
    return AdmissionRejectedError(result.message, source=result.source, code=result.code, decided=result.admitted)


def _all_started(pod: Any) -> bool:
    statuses = list(pod.status.container_statuses or [])
    return bool(statuses) and all(s.started or s.ready or (s.state and s.state.running) for s in statuses)


def pod_problem(pod: Any) -> tuple[bool, str]:
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
    if pod.status.reason == "DeadlineExceeded":
        return True, f"DeadlineExceeded: {pod.status.message or 'activeDeadlineSeconds passed'}"
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return False, f"{condition.reason}: {condition.message}"
    for status in statuses:
        if status.state and status.state.waiting:
            return False, f"container {status.name}: {status.state.waiting.reason or 'waiting'}"
    return False, "waiting for containers to start"


DISRUPTION_REASONS = frozenset({"Evicted", "Preempting", "NodeShutdown", "Terminated", "NodeLost", "Shutdown"})
"""Pod status reasons the node (kubelet or node controller) sets when it stops a pod for its own reasons."""
KILLED_REASONS = frozenset({"OOMKilled", "ContainerStatusUnknown", "Unknown"})
KILLED_EXIT_CODES = frozenset({137, 143})
"""A main container ended by SIGKILL or SIGTERM that the probe did not send: the runtime or kubelet stopped it."""


STOPPING_EVENTS = frozenset({"Evicted", "Preempted", "Preempting", "Killing", "TaintManagerEviction", "NodeNotReady"})
"""Warning events that say why a pod was stopped (others, a DNS fallback say, are no cause of its going)."""
KUBELET_PORT = ":10250"
BROKEN_CONNECTION = ("connection refused", "connection reset", "i/o timeout", "no route to host", "EOF")
RUNTIME_UNAVAILABLE = ("rpc error: code = Unavailable", "container runtime is down", "runtime is not ready")
"""The kubelet's words when the node's container runtime (its CRI socket) does not answer, as while it restarts."""


def kubelet_unreachable(text: str) -> bool:
    """The API server's words when it cannot reach a node's kubelet (port 10250) for an exec, or lost it midway."""
    return "error dialing backend" in text or (
        KUBELET_PORT in text and any(words in text for words in BROKEN_CONNECTION)
    )


def node_disturbance(pod: Any) -> str | None:
    """What the node did to a probe pod, in its own words, or None.

    An evicted or preempted pod (status reason, or the DisruptionTarget condition Kubernetes sets before it stops a
    pod), or a main container killed by a signal or lost by the runtime (a containerd restart, the OOM killer). The
    pod's own deadline (DeadlineExceeded) is the run's doing, and a container exiting with its own code is a fact about
    the capability: neither counts. Sidecars and init containers are stopped by the kubelet as a matter of course.
    """
    status = pod.status
    if status is None or status.reason == "DeadlineExceeded":
        return None
    name = getattr(getattr(pod, "metadata", None), "name", "")
    for condition in status.conditions or []:
        if condition.type == "DisruptionTarget" and condition.status == "True":
            return f"pod {name} was stopped by the cluster ({condition.reason}: {condition.message})"
    if status.reason in DISRUPTION_REASONS:
        return f"pod {name} was {status.reason}: {status.message or 'no message'}"
    for container in status.container_statuses or []:
        for state in (container.state, getattr(container, "last_state", None)):
            ended = state.terminated if state else None
            if ended is None:
                continue
            code, reason = int(ended.exit_code or 0), str(ended.reason or "")
            if code in KILLED_EXIT_CODES or reason in KILLED_REASONS:
                said = f": {ended.message.strip()}" if ended.message else ""
                where = f"the container {container.name} of pod {name}"
                return f"{where} was killed by the node (exit {code}, {reason}){said}"
    return None


def disturbed(outcome: Outcome, context: ProbeContext) -> Outcome:
    """A probe whose pods the node disturbed proved nothing but the disturbance: inconclusive, naming it.

    A pass stands (it was proven before); a failure or an exec error under a disturbance is the node's doing, not the
    capability's. A broken exec channel also looks at the probe's nodes: a stopped kubelet is named.
    """
    if outcome.status in (Status.PASS, Status.SKIPPED):
        return outcome
    causes = list(context.disturbances)
    nodes = ", ".join(sorted(context.nodes)) or "of the probe pod"
    if outcome.status is Status.INCONCLUSIVE and kubelet_unreachable(outcome.summary):
        causes.append(f"the kubelet of node {nodes} did not answer (stopped, restarting or unreachable)")
    if outcome.status is Status.INCONCLUSIVE and any(marker in outcome.summary for marker in RUNTIME_UNAVAILABLE):
        causes.append(f"the container runtime of node {nodes} did not answer (restarting or down)")
    if outcome.status is Status.INCONCLUSIVE or causes:
        causes += context.unready_nodes()
    if not causes:
        return outcome
    return Outcome(
        Status.INCONCLUSIVE,
        f"the node disturbed the probe, nothing concluded: {'; '.join(causes)} (the probe said: {outcome.summary})",
        {**outcome.evidence, "node_disturbance": causes, "status_before": outcome.status.value},
    )


class ProbeRunner:
    """Runs every selected probe at once in threads, so a run takes little more than its slowest probe."""

    def __init__(self, connection: Connection, scope: RunScope, progress: Progress) -> None:
        self._connection = connection
        self._scope = scope
        self._progress = progress
        self.cancel = threading.Event()
        self.in_flight = InFlight(self.cancel)
        """The creates under way: cleanup waits for them before its last delete."""
        self.images = ImageLedger()
        self._futures: dict[str, Future[Verdict]] = {}
        """Keyed by Task.key (probe id, or target/probe id)."""
        self._pool: ThreadPoolExecutor | None = None

    def start(self, tasks: list[Task]) -> None:
        """Start every probe now."""
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(tasks)), thread_name_prefix="probe")
        for task in tasks:
            context = ProbeContext(
                task, self._connection, self._scope, self._progress, self.cancel, self.images, self.in_flight
            )
            self._futures[task.key] = self._pool.submit(run_probe, task, context)

    def started(self, key: str) -> bool:
        """Whether that probe (Task.key) was started in this run."""
        return key in self._futures

    def verdict(self, key: str, on_wait: Callable[[], None], poll_s: float = 1.0) -> Verdict:
        """Block until a probe (Task.key) is done, calling on_wait while waiting (progress display)."""
        future = self._futures[key]
        while not future.done():
            on_wait()
            try:
                return future.result(timeout=poll_s)
            except TimeoutError:
                continue
        return future.result()

    def finished(self) -> dict[str, Verdict]:
        """Task.key -> verdict of every probe that has finished, whether or not a test asked for it (-x, Ctrl-C)."""
        return {
            key: future.result() for key, future in self._futures.items() if future.done() and not future.cancelled()
        }

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


def run_probe(task: Task, context: ProbeContext) -> Verdict:
    """Run one probe and turn whatever happened into a Verdict: never a pass that was not proven."""
    started = time.monotonic()
    try:
        outcome = task.work(context)
    except AdmissionRejectedError as exc:
        status = Status.SKIPPED if exc.decided is False else Status.INCONCLUSIVE
        outcome = Outcome(status, f"not run: a pod it needs was {exc.describe()}", {"admission": exc.evidence()})
    except PodNotRunningError as exc:
        outcome = Outcome(Status.INCONCLUSIVE, f"could not run: {exc}", {"pod": exc.evidence()})
    except CancelledError:
        outcome = Outcome(Status.INCONCLUSIVE, "cancelled before it finished (run interrupted)")
    except ExecChannelError as exc:
        outcome = Outcome(Status.INCONCLUSIVE, f"exec channel failed, nothing concluded: {exc}", {"exec": str(exc)})
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
    outcome = unless_evidence_lost(disturbed(outcome, context), context, started)
    context.say("done")
    evidence = outcome.evidence
    if context.nodes:
        evidence = {**evidence, "node": ", ".join(sorted(context.nodes))}
    facts = outcome.facts
    if facts.specs:
        facts = replace(facts, specs=tuple(pasted(tested, context.scope, task) for tested in facts.specs))
    return Verdict(
        id=task.id,
        capability=task.capability,
        status=outcome.status,
        summary=outcome.summary,
        evidence=evidence,
        remediation=outcome.remediation if outcome.remediation is not None else task.remediation,
        duration_s=time.monotonic() - started,
        facts=facts,
        nodes=tuple(sorted(context.nodes)),
    )


def unless_evidence_lost(outcome: Outcome, context: ProbeContext, started: float) -> Outcome:
    """The outcome, or inconclusive when the API server was away while the probe ran and took evidence with it.

    A failure or an inconclusive seen while the API was away says nothing about the cluster's builds (a read that
    gave up, an exec channel the restart cut), and a pass is only kept when none of its exec channels broke: a pass
    on half the evidence would be a false pass. Skipped (a policy's answer) stands.
    """
    if outcome.status is Status.SKIPPED:
        return outcome
    if outcome.status is Status.PASS and not context.channels_lost:
        return outcome
    health = context.health
    outage = health.outage_within(started, time.monotonic())
    if outage is None:
        return outcome
    lost = health.unavailable_summary(outage)
    return Outcome(
        Status.INCONCLUSIVE,
        f"nothing concluded: {lost}; what it saw: {compact(outcome.summary, 240)}",
        {
            **outcome.evidence,
            "api_unavailable": {
                "reason": outage.reason,
                "lasted_s": round(outage.lasted_s(time.monotonic()), 1),
                "ended": outage.end is not None,
                "channels_lost": list(context.channels_lost),
                "status_before": outcome.status.value,
            },
        },
        remediation="run again once the API server is available (nothing was learnt about the cluster's builds)",
        facts=outcome.facts,
    )
