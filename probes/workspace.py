"""The run's namespace: made (or borrowed) at the start, emptied at the end on every path.

A fresh namespace per run is the default so nothing of ours mixes with the user's objects; --namespace borrows an
existing one, and then only objects carrying this run's label are deleted and its Pod Security label, when the run
set one, is put back as it was. The Workspace value is known before anything is created, so an interrupt at any
point of setup still finds what to delete.
"""

from __future__ import annotations

import logging
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from probes.cluster import Connection
from probes.engine import MANAGED_BY, MANAGED_BY_LABEL, NOT_PROCESSED, RUN_LABEL, api_call
from probes.exceptions import UsageError

PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
PSA_LEVELS = ("privileged", "baseline", "restricted")
CLEANUP_WAIT_S = 30.0


def new_run_id() -> str:
    """Five random lowercase letters/digits: short enough for pod names, unique enough for a cluster."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(5))


@dataclass(frozen=True)
class Workspace:
    """Where this run's objects live, whether the run owns the namespace, and what to restore on a borrowed one."""

    namespace: str
    run_id: str
    created: bool
    labels: dict[str, str] = field(default_factory=dict)
    pod_security: str | None = None
    """The PSA level the run applies (--namespace-pod-security)."""
    previous_pod_security: str | None = None
    """A borrowed namespace's own PSA enforce label before the run changed it (None: it had none)."""

    @property
    def selector(self) -> str:
        """The label selector of every object of this run."""
        return f"{RUN_LABEL}={self.run_id}"


def plan(connection: Connection, namespace: str | None, run_id: str, pod_security: str | None) -> Workspace:
    """Decide where the run lives; reads only. An existing --namespace is borrowed, otherwise one is created."""
    labels = {MANAGED_BY_LABEL: MANAGED_BY, RUN_LABEL: run_id}
    if pod_security:
        labels[PSA_ENFORCE_LABEL] = pod_security
    if namespace:
        try:
            existing = api_call(connection.core.read_namespace, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
        else:
            current = dict(existing.metadata.labels or {})
            previous = current.get(PSA_ENFORCE_LABEL)
            if pod_security:
                current[PSA_ENFORCE_LABEL] = pod_security
            return Workspace(namespace, run_id, False, current, pod_security, previous)
    return Workspace(namespace or f"dindcheck-{run_id}", run_id, True, labels, pod_security)


def create(connection: Connection, workspace: Workspace) -> None:
    """Create the planned namespace, or apply the requested PSA label to the borrowed one."""
    core = connection.core
    if workspace.created:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": workspace.namespace, "labels": workspace.labels},
        }
        api_call(core.create_namespace, body, retried=NOT_PROCESSED)
    elif workspace.pod_security:
        _set_pod_security(connection, workspace.namespace, workspace.pod_security)


def _set_pod_security(connection: Connection, namespace: str, level: str | None) -> None:
    """Set (or, with None, remove) the namespace's PSA enforce label."""
    api_call(connection.core.patch_namespace, namespace, {"metadata": {"labels": {PSA_ENFORCE_LABEL: level}}})


def copy_registry_secret(connection: Connection, workspace: Workspace, spec: str | None) -> str | None:
    """Make the push credentials available in the run's namespace; copy them (labelled) when they live elsewhere."""
    if not spec:
        return None
    source_ns, _, name = spec.rpartition("/")
    source_ns = source_ns or workspace.namespace
    try:
        secret = api_call(connection.core.read_namespaced_secret, name, source_ns)
    except ApiException as exc:
        raise UsageError(f"--registry-secret {spec}: cannot read it ({exc.status} {exc.reason})") from None
    if secret.type != "kubernetes.io/dockerconfigjson":
        raise UsageError(f"--registry-secret {spec} is of type {secret.type}, not kubernetes.io/dockerconfigjson")
    if source_ns == workspace.namespace:
        return name
    copy_name = f"dc-{workspace.run_id}-registry"
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": copy_name, "labels": {RUN_LABEL: workspace.run_id, MANAGED_BY_LABEL: MANAGED_BY}},
        "data": secret.data,
    }
    api_call(connection.core.create_namespaced_secret, workspace.namespace, body, retried=NOT_PROCESSED)
    return copy_name


def cleanup(
    connection: Connection, workspace: Workspace, *, wait_s: float = CLEANUP_WAIT_S, say: Callable[[str], None] = print
) -> list[str]:
    """Delete everything this run made and wait until its objects are gone; returns what is still left (names).

    Every call rides out throttling, server errors and dropped connections until the deadline. The run's own
    namespace is deleted but not waited for: its pods, PVCs and secrets are already gone, and waiting for the
    namespace controller would double a run's wall time. Volumes of a Retain class are deleted (they outlive their
    claims) or named when the run may not delete them.
    """
    core = connection.core
    ns = workspace.namespace
    deadline = time.monotonic() + wait_s
    started = time.monotonic()
    volumes = _claimed_volumes(connection, workspace)
    deleters: tuple[tuple[Callable[..., Any], dict[str, Any]], ...] = (
        (core.delete_collection_namespaced_pod, {"grace_period_seconds": 0}),
        (core.delete_collection_namespaced_persistent_volume_claim, {}),
        (core.delete_collection_namespaced_secret, {}),
    )
    for delete, kwargs in deleters:
        _quietly(api_call, delete, ns, label_selector=workspace.selector, deadline_s=wait_s, **kwargs)
    if workspace.created:
        _quietly(api_call, core.delete_namespace, ns, grace_period_seconds=0, deadline_s=wait_s)
    elif workspace.pod_security:
        _quietly(_set_pod_security, connection, ns, workspace.previous_pod_security)
    left = _leftovers_until(connection, workspace, deadline, say)
    left += _delete_retained_volumes(connection, volumes, deadline)
    if not left:
        finishing = f"; namespace {ns} is terminating in the background" if workspace.created else ""
        restored = ""
        if not workspace.created and workspace.pod_security:
            restored = f"; its {PSA_ENFORCE_LABEL} label is back to {workspace.previous_pod_security or '(none)'}"
        say(f"dindcheck: probe objects deleted in {time.monotonic() - started:.1f}s{finishing}{restored}")
    return left


def _leftovers_until(
    connection: Connection, workspace: Workspace, deadline: float, say: Callable[[str], None]
) -> list[str]:
    left = _safe_leftovers(connection, workspace)
    said: list[str] = []
    while left and time.monotonic() < deadline:
        if left != said:
            say(f"dindcheck: cleaning up {len(left)} object(s) in {workspace.namespace}: {', '.join(left[:4])}")
            said = left
        time.sleep(0.5)
        left = _safe_leftovers(connection, workspace)
    return left


def _safe_leftovers(connection: Connection, workspace: Workspace) -> list[str]:
    try:
        return leftovers(connection, workspace, include_namespace=False)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        return [f"(cannot list: {exc})"]


def _claimed_volumes(connection: Connection, workspace: Workspace) -> list[str]:
    """Names of the PVs bound to this run's PVCs, read before the claims go."""
    try:
        claims = api_call(
            connection.core.list_namespaced_persistent_volume_claim,
            workspace.namespace,
            label_selector=workspace.selector,
        ).items
    except (ApiException, urllib3.exceptions.HTTPError, OSError):
        return []
    return [str(claim.spec.volume_name) for claim in claims if claim.spec.volume_name]


def _delete_retained_volumes(connection: Connection, names: list[str], deadline: float) -> list[str]:
    """Delete volumes that a Retain policy keeps after their claim is gone; name the ones the run may not delete."""
    left: list[str] = []
    for name in names:
        try:
            volume = api_call(connection.core.read_persistent_volume, name)
            if volume.spec.persistent_volume_reclaim_policy != "Retain":
                continue
            api_call(connection.core.delete_persistent_volume, name, deadline_s=max(1.0, deadline - time.monotonic()))
        except ApiException as exc:
            if exc.status == 404:
                continue
            left.append(f"persistentvolume/{name} (reclaimPolicy Retain; {exc.status} {exc.reason}: delete it by hand)")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            left.append(f"persistentvolume/{name} (reclaimPolicy Retain; {exc})")
    return left


def leftovers(connection: Connection, workspace: Workspace, *, include_namespace: bool = True) -> list[str]:
    """Objects of this run that still exist (the namespace too, when the run made it and it is asked for).

    A kind the run may not list (403) is one it could not have created either, so it is passed over.
    """
    core = connection.core
    ns = workspace.namespace
    listers: tuple[tuple[str, Callable[..., Any]], ...] = (
        ("pod", core.list_namespaced_pod),
        ("pvc", core.list_namespaced_persistent_volume_claim),
        ("secret", core.list_namespaced_secret),
    )
    names: list[str] = []
    for kind, lister in listers:
        try:
            items = api_call(lister, ns, label_selector=workspace.selector, deadline_s=5.0).items
        except ApiException as exc:
            if exc.status not in (403, 404):
                raise
            continue
        names += [f"{kind}/{item.metadata.name}" for item in items]
    if workspace.created and include_namespace:
        try:
            api_call(core.read_namespace, ns, deadline_s=5.0)
            names.append(f"namespace/{ns}")
        except ApiException as exc:
            if exc.status != 404:
                raise
    return names


def _quietly(call: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Run one cleanup call; what is already gone, or a kind the run may not touch (so never created), is fine.

    A dropped connection is passed over too: the leftover listing that follows names whatever is still there.
    """
    try:
        call(*args, **kwargs)
    except ApiException as exc:
        if exc.status not in (403, 404, 409):
            raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        logging.getLogger(__name__).debug("cleanup call failed: %s", exc)
