"""The run's namespace: made (or borrowed) at the start, emptied at the end on every path.

A fresh namespace per run is the default so nothing of ours mixes with the user's objects; --namespace borrows an
existing one, and then only objects carrying this run's label are deleted and its Pod Security label, when the run
set one, is put back as it was. The Workspace value is known before anything is created, so an interrupt at any
point of setup still finds what to delete.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from probes import admission
from probes.api import NOT_PROCESSED, api_call
from probes.cluster import Connection
from probes.engine import MANAGED_BY, MANAGED_BY_LABEL, RUN_LABEL, InFlight
from probes.exceptions import UsageError

PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
PSA_LEVELS = ("privileged", "baseline", "restricted")
CLEANUP_WAIT_S = 30.0
SETTLE_WAIT_S = 15.0
"""How long admission may take to see a new namespace's ServiceAccount or a borrowed namespace's new PSA label."""
SERVICE_ACCOUNT_MISSING = "error looking up service account"
"""The ServiceAccount admission plugin's refusal while a namespace's default ServiceAccount does not exist yet."""
PSA_LEVEL_CITED = re.compile(r'violates PodSecurity "(\w+):')


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


def settle(
    connection: Connection, workspace: Workspace, *, wait_s: float = SETTLE_WAIT_S, poll_s: float = 0.5
) -> str | None:
    """Wait until admission sees the namespace as the run made it; a note for the report when it never did.

    The API server's admission reads namespaces and ServiceAccounts from its caches: right after a relabel, Pod
    Security may still enforce the namespace's old level, and a new namespace may not have its default ServiceAccount
    yet (pods are then refused). Probes started at once would measure that, not the cluster. A server-side dry run
    of a pod (privileged when the run set a level, so the level decides) tells when the caches caught up.
    """
    deadline = time.monotonic() + wait_s
    pending = _admission_pending(connection, workspace)
    while pending and time.monotonic() + poll_s < deadline:
        time.sleep(poll_s)
        pending = _admission_pending(connection, workspace)
    if not pending:
        return None
    return f"namespace {workspace.namespace}: after {wait_s:.0f}s {pending}; the checks may have measured that"


def _admission_pending(connection: Connection, workspace: Workspace) -> str:
    """What admission still sees differently from the run's namespace ('' when nothing, or when it cannot tell)."""
    container: dict[str, Any] = {"name": "check", "image": "dindcheck.invalid/namespace-check"}
    if workspace.pod_security is not None:
        container["securityContext"] = {"privileged": True}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"dc-{workspace.run_id}-namespace-check", "labels": {RUN_LABEL: workspace.run_id}},
        "spec": {"automountServiceAccountToken": False, "containers": [container]},
    }
    try:
        api_call(
            connection.core.create_namespaced_pod,
            workspace.namespace,
            pod,
            dry_run="All",
            retried=NOT_PROCESSED,
            deadline_s=5.0,
        )
    except ApiException as exc:
        message = admission.message_from_body(exc.body)
        if SERVICE_ACCOUNT_MISSING in message:
            return "its default ServiceAccount is still missing (pods are refused)"
        enforced = PSA_LEVEL_CITED.search(message)
        if enforced and enforced.group(1) != workspace.pod_security:
            return f"Pod Security still enforces {enforced.group(1)}, not {workspace.pod_security}"
        return ""
    except (urllib3.exceptions.HTTPError, OSError):
        return ""
    if workspace.pod_security in ("baseline", "restricted"):
        return f"Pod Security still admits a privileged pod, not {workspace.pod_security}"
    return ""


def _set_pod_security(connection: Connection, namespace: str, level: str) -> None:
    """Set the namespace's PSA enforce label."""
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
    connection: Connection,
    workspace: Workspace,
    *,
    wait_s: float = CLEANUP_WAIT_S,
    say: Callable[[str], None] = print,
    in_flight: InFlight | None = None,
) -> list[str]:
    """Delete everything this run made and wait until its objects are gone; returns what is left behind.

    Every call rides out throttling, server errors and dropped connections until the deadline. The run's own
    namespace is deleted but not waited for: its pods, PVCs and secrets are already gone, and waiting for the
    namespace controller would double a run's wall time. A create still under way when the run was cancelled
    (in_flight) may land after the first delete: cleanup waits for it and deletes again. A volume of a Retain class
    is left and named (deleting the object would orphan its disk), and so is a borrowed namespace's Pod Security
    label that could not be put back: what is left behind includes both.
    """
    ns = workspace.namespace
    deadline = time.monotonic() + wait_s
    started = time.monotonic()
    volumes = _claimed_volumes(connection, workspace)
    creating = in_flight is not None and in_flight.busy
    _delete_run_objects(connection, workspace, wait_s)
    if in_flight is not None and creating:
        in_flight.wait_idle(deadline - time.monotonic())
        _delete_run_objects(connection, workspace, max(1.0, deadline - time.monotonic()))
    if workspace.created:
        _quietly(api_call, connection.core.delete_namespace, ns, grace_period_seconds=0, deadline_s=wait_s)
    label_left = _restore_pod_security(connection, workspace, deadline, say)
    left = _leftovers_until(connection, workspace, deadline, say)
    left += label_left + _retained_volumes(connection, volumes, say)
    if not left:
        finishing = f"; namespace {ns} is terminating in the background" if workspace.created else ""
        restored = ""
        if _relabelled(workspace):
            restored = f"; its {PSA_ENFORCE_LABEL} label is back to {workspace.previous_pod_security or '(none)'}"
        say(f"dindcheck: probe objects deleted in {time.monotonic() - started:.1f}s{finishing}{restored}")
    return left


def kept_label_notice(workspace: Workspace) -> str | None:
    """What --keep leaves changed on a borrowed namespace besides the run's objects: its Pod Security label."""
    if not _relabelled(workspace):
        return None
    return (
        f"dindcheck: --keep: namespace {workspace.namespace} keeps the run's label {PSA_ENFORCE_LABEL}="
        f"{workspace.pod_security} (it was {workspace.previous_pod_security or 'unset'}); "
        f"restore it with: {restore_label_command(workspace)}"
    )


def restore_label_command(workspace: Workspace) -> str:
    """The kubectl command that puts a borrowed namespace's own Pod Security label back."""
    if workspace.previous_pod_security is None:
        return f"kubectl label namespace {workspace.namespace} {PSA_ENFORCE_LABEL}-"
    return (
        f"kubectl label namespace {workspace.namespace} "
        f"{PSA_ENFORCE_LABEL}={workspace.previous_pod_security} --overwrite"
    )


def _relabelled(workspace: Workspace) -> bool:
    """Whether the run changed a borrowed namespace's Pod Security label (so it has one to put back)."""
    return (
        not workspace.created
        and workspace.pod_security is not None
        and workspace.pod_security != workspace.previous_pod_security
    )


def _delete_run_objects(connection: Connection, workspace: Workspace, wait_s: float) -> None:
    """Delete this run's pods, claims and secrets by label (whatever of them exists now)."""
    core = connection.core
    deleters: tuple[tuple[Callable[..., Any], dict[str, Any]], ...] = (
        (core.delete_collection_namespaced_pod, {"grace_period_seconds": 0}),
        (core.delete_collection_namespaced_persistent_volume_claim, {}),
        (core.delete_collection_namespaced_secret, {}),
    )
    for delete, kwargs in deleters:
        _quietly(api_call, delete, workspace.namespace, label_selector=workspace.selector, deadline_s=wait_s, **kwargs)


def _restore_pod_security(
    connection: Connection, workspace: Workspace, deadline: float, say: Callable[[str], None]
) -> list[str]:
    """Put a borrowed namespace's own PSA label back; a restore that failed is said, with the API's words, and left.

    A namespace that is gone (404) has nothing to restore.
    """
    if not _relabelled(workspace):
        return []
    try:
        api_call(
            connection.core.patch_namespace,
            workspace.namespace,
            {"metadata": {"labels": {PSA_ENFORCE_LABEL: workspace.previous_pod_security}}},
            deadline_s=max(1.0, deadline - time.monotonic()),
        )
    except ApiException as exc:
        if exc.status == 404:
            return []
        message = admission.message_from_body(exc.body)
        why = f"{exc.status} {exc.reason}" + (f": {message}" if message else "")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        why = f"lost the API server: {exc}"
    else:
        return []
    say(
        f"dindcheck: could not restore namespace {workspace.namespace}'s label {PSA_ENFORCE_LABEL} "
        f"(still {workspace.pod_security}, was {workspace.previous_pod_security or 'unset'}): {why}; "
        f"restore it with: {restore_label_command(workspace)}"
    )
    return [f"namespace/{workspace.namespace} label {PSA_ENFORCE_LABEL}={workspace.pod_security}"]


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


DISKS: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("csi", lambda source: f"{source.driver} volume {source.volume_handle}"),
    ("aws_elastic_block_store", lambda source: f"EBS volume {source.volume_id}"),
    ("gce_persistent_disk", lambda source: f"GCE persistent disk {source.pd_name}"),
    ("azure_disk", lambda source: f"Azure disk {source.disk_uri or source.disk_name}"),
    ("nfs", lambda source: f"NFS export {source.server}:{source.path}"),
    ("host_path", lambda source: f"directory {source.path} on the node"),
    ("local", lambda source: f"directory {source.path} on the node"),
)
"""How each volume source names the storage behind a PV, for the user who must delete it."""


def disk_of(spec: Any) -> str:
    """The storage behind a PV, as its volume source names it."""
    for attribute, describe in DISKS:
        source = getattr(spec, attribute, None)
        if source is not None:
            return describe(source)
    return "its backing storage"


def _retained_volumes(connection: Connection, names: list[str], say: Callable[[str], None]) -> list[str]:
    """The run's volumes that a Retain policy keeps after their claim: left, not deleted, and named with their disk.

    Deleting the PV object of a Retain class would orphan its disk (nothing would name it any more); leaving it keeps
    a visible handle to the disk, so the user deletes both. A volume the run may not read is said, not counted.
    """
    left: list[str] = []
    for name in names:
        try:
            volume = api_call(connection.core.read_persistent_volume, name, deadline_s=5.0)
        except ApiException as exc:
            if exc.status != 404:
                _unreadable_volume(name, f"{exc.status} {exc.reason}", say)
            continue
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            _unreadable_volume(name, str(exc), say)
            continue
        if volume.spec.persistent_volume_reclaim_policy != "Retain":
            continue
        storage_class = volume.spec.storage_class_name or "(none)"
        disk = disk_of(volume.spec)
        say(
            f"dindcheck: volume {name} of class {storage_class} (reclaimPolicy Retain) keeps its disk: delete the PV "
            f"and the disk ({disk}) yourself: kubectl delete persistentvolume {name}, then the disk"
        )
        left.append(f"persistentvolume/{name} (reclaimPolicy Retain, {disk})")
    return left


def _unreadable_volume(name: str, why: str, say: Callable[[str], None]) -> None:
    """A volume whose reclaim policy is unknown: said, since a Retain one would outlive the run with its disk."""
    say(f"dindcheck: cannot read volume {name} ({why}): if its class keeps volumes (Retain), it and its disk are left")


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
