"""The run's namespace: made (or borrowed) at the start, emptied at the end on every path.

A fresh namespace per run is the default so nothing of ours mixes with the user's objects; --namespace borrows an
existing one, and then only objects carrying this run's label are deleted.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.rest import ApiException

from probes.cluster import Connection
from probes.engine import API_TIMEOUT_S, MANAGED_BY, MANAGED_BY_LABEL, RUN_LABEL

PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
PSA_LEVELS = ("privileged", "baseline", "restricted")


def new_run_id() -> str:
    """Five random lowercase letters/digits: short enough for pod names, unique enough for a cluster."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(5))


@dataclass(frozen=True)
class Workspace:
    """Where this run's objects live and whether the run owns the namespace itself."""

    namespace: str
    run_id: str
    created: bool
    labels: dict[str, str] = field(default_factory=dict)


def prepare(connection: Connection, namespace: str | None, run_id: str, pod_security: str | None) -> Workspace:
    """Create the run's namespace (or check the given one) and apply a PSA level only when the user asked."""
    core = connection.core
    labels = {MANAGED_BY_LABEL: MANAGED_BY, RUN_LABEL: run_id}
    if pod_security:
        labels[PSA_ENFORCE_LABEL] = pod_security
    if namespace:
        try:
            existing = core.read_namespace(namespace, _request_timeout=API_TIMEOUT_S)
        except ApiException as exc:
            if exc.status != 404:
                raise
        else:
            if pod_security:
                core.patch_namespace(
                    namespace,
                    {"metadata": {"labels": {PSA_ENFORCE_LABEL: pod_security}}},
                    _request_timeout=API_TIMEOUT_S,
                )
            current = dict(existing.metadata.labels or {})
            if pod_security:
                current[PSA_ENFORCE_LABEL] = pod_security
            return Workspace(namespace, run_id, created=False, labels=current)
    name = namespace or f"dindcheck-{run_id}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    core.create_namespace(body, _request_timeout=API_TIMEOUT_S)
    return Workspace(name, run_id, created=True, labels=labels)


def cleanup(
    connection: Connection, workspace: Workspace, *, wait_s: float = 30.0, say: Callable[[str], None] = print
) -> list[str]:
    """Delete everything this run made and wait until its objects are gone; returns what is still left (names).

    The run's own namespace is deleted too but not waited for: its pods, PVCs and secrets are already gone, and
    the namespace controller finishes the rest in a few seconds; waiting would double a run's wall time.
    """
    core = connection.core
    selector = f"{RUN_LABEL}={workspace.run_id}"
    ns = workspace.namespace
    _delete_quietly(
        lambda: core.delete_collection_namespaced_pod(
            ns, label_selector=selector, grace_period_seconds=0, _request_timeout=API_TIMEOUT_S
        )
    )
    _delete_quietly(
        lambda: core.delete_collection_namespaced_persistent_volume_claim(
            ns, label_selector=selector, _request_timeout=API_TIMEOUT_S
        )
    )
    _delete_quietly(
        lambda: core.delete_collection_namespaced_secret(ns, label_selector=selector, _request_timeout=API_TIMEOUT_S)
    )
    if workspace.created:
        _delete_quietly(lambda: core.delete_namespace(ns, grace_period_seconds=0, _request_timeout=API_TIMEOUT_S))
    deadline = time.monotonic() + wait_s
    started = time.monotonic()
    left = leftovers(connection, workspace, include_namespace=False)
    said: list[str] = []
    while left and time.monotonic() < deadline:
        if left != said:
            say(f"dindcheck: cleaning up {len(left)} object(s) in {ns}: {', '.join(left[:4])}")
            said = left
        time.sleep(0.5)
        left = leftovers(connection, workspace, include_namespace=False)
    if not left:
        finishing = f"; namespace {ns} is terminating in the background" if workspace.created else ""
        say(f"dindcheck: probe objects deleted in {time.monotonic() - started:.1f}s{finishing}")
    return left


def leftovers(connection: Connection, workspace: Workspace, *, include_namespace: bool = True) -> list[str]:
    """Objects of this run that still exist (the namespace too, when the run made it and it is asked for).

    A kind the run may not list (403) is one it could not have created either, so it is passed over.
    """
    core = connection.core
    selector = f"{RUN_LABEL}={workspace.run_id}"
    ns = workspace.namespace
    listers: tuple[tuple[str, Callable[..., Any]], ...] = (
        ("pod", core.list_namespaced_pod),
        ("pvc", core.list_namespaced_persistent_volume_claim),
        ("secret", core.list_namespaced_secret),
    )
    names: list[str] = []
    for kind, lister in listers:
        try:
            items = lister(ns, label_selector=selector, _request_timeout=API_TIMEOUT_S).items
        except ApiException as exc:
            if exc.status not in (403, 404):
                raise
            continue
        names += [f"{kind}/{item.metadata.name}" for item in items]
    if workspace.created and include_namespace:
        try:
            core.read_namespace(ns, _request_timeout=API_TIMEOUT_S)
            names.append(f"namespace/{ns}")
        except ApiException as exc:
            if exc.status != 404:
                raise
    return names


def _delete_quietly(delete: Callable[[], object]) -> None:
    try:
        delete()
    except ApiException as exc:
        if exc.status not in (403, 404, 409):  # forbidden kinds were never created by this run
            raise
