"""The stale-object sweep: delete what dead runs left behind, never what a live run is using.

A run's objects carry `dindcheck.io/run=<run id>`; its Lease `dc-<run id>` says whether it is alive
(probes/lease.py). The sweep lists every labelled object it may (cluster-wide when RBAC lets it, else the run's
namespace only), decides per run id (decide(), pure), and deletes the dead runs' objects: a namespace the dead run
created goes whole, in a borrowed one only its pods, claims, secrets and Lease go, selected by its run id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from probes.api import api_call
from probes.cluster import CONNECT_TIMEOUT_S, LEASE_GROUP, Connection, Permission
from probes.engine import MANAGED_BY, MANAGED_BY_LABEL, RUN_LABEL
from probes.lease import KEPT_ANNOTATION, clamped_duration, is_stale

LEASELESS_AFTER_S = 3600.0
"""Objects of a run without a Lease are a dead run's once the newest is this old. A run makes its Lease before
anything but its namespace, so a young lease-less object is a run starting (its namespace made, its Lease not yet)
or one ending (its Lease deleted last but its namespace still terminating); an hour is longer than any run lasts."""
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY},{RUN_LABEL}"
"""dindcheck's objects that belong to a run (the report history ConfigMap, for one, belongs to none)."""
KINDS = ("pod", "pvc", "secret")
"""The namespaced kinds a run makes besides its Lease."""


@dataclass(frozen=True)
class RunObject:
    """One labelled object of some run."""

    kind: str
    """namespace, pod, pvc, secret or lease."""
    namespace: str
    """Where it lives (a namespace object: its own name)."""
    name: str
    run_id: str
    created_at: dt.datetime
    terminating: bool = False
    renewed_at: dt.datetime | None = None
    """Leases only: the last renewal (creationTimestamp when never renewed)."""
    duration_s: int | None = None
    """Leases only: leaseDurationSeconds."""
    kept: bool = False
    """Leases only: the run was told --keep."""

    def describe(self) -> str:
        """kind/name, as kubectl would name it."""
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class RunDecision:
    """One run id seen by the sweep: whether it is dead, why, and its objects."""

    run_id: str
    dead: bool
    why: str
    objects: tuple[RunObject, ...]

    def own_namespaces(self) -> tuple[str, ...]:
        """Namespaces the run created (labelled with its run id): deleted whole."""
        return tuple(sorted({o.name for o in self.objects if o.kind == "namespace"}))

    def removals(self) -> tuple[tuple[str, tuple[RunObject, ...]], ...]:
        """Per borrowed namespace, the run's objects to delete there (namespaces deleted whole are left out)."""
        whole = set(self.own_namespaces())
        by_namespace: dict[str, list[RunObject]] = {}
        for obj in self.objects:
            if obj.kind != "namespace" and obj.namespace not in whole:
                by_namespace.setdefault(obj.namespace, []).append(obj)
        return tuple((ns, tuple(sorted(objs, key=_by_kind))) for ns, objs in sorted(by_namespace.items()))


def _by_kind(obj: RunObject) -> tuple[str, str, str]:
    return (obj.namespace, obj.kind, obj.name)


def decide(
    objects: Iterable[RunObject],
    now: dt.datetime,
    *,
    own_run_id: str,
    leaseless_after_s: float = LEASELESS_AFTER_S,
) -> tuple[RunDecision, ...]:
    """Per run id: whether it is dead, so its objects may go.

    Dead when its Lease is stale (none renewed within its duration) or, with no Lease at all, when its newest object
    is older than leaseless_after_s. A kept run (--keep) and this run itself are never dead. Objects already being
    deleted are not counted (they are going); a run with nothing else left is not listed.
    """
    by_run: dict[str, list[RunObject]] = {}
    for obj in objects:
        if not obj.terminating and obj.run_id and obj.run_id != own_run_id:
            by_run.setdefault(obj.run_id, []).append(obj)
    decisions = []
    for run_id, objs in sorted(by_run.items()):
        leases = [o for o in objs if o.kind == "lease"]
        dead, why = _judge(leases, objs, now, leaseless_after_s)
        decisions.append(RunDecision(run_id, dead, why, tuple(sorted(objs, key=_by_kind))))
    return tuple(decisions)


def _judge(
    leases: list[RunObject], objs: list[RunObject], now: dt.datetime, leaseless_after_s: float
) -> tuple[bool, str]:
    if any(lease.kept for lease in leases):
        return False, "kept (--keep)"
    if leases:
        live = [lease for lease in leases if not is_stale(lease.renewed_at or lease.created_at, lease.duration_s, now)]
        if live:
            return False, "alive (its lease is renewed)"
        lease = max(leases, key=lambda o: o.renewed_at or o.created_at)
        idle = (now - (lease.renewed_at or lease.created_at)).total_seconds()
        return True, (
            f"its lease {lease.name} in {lease.namespace} was not renewed for {idle:.0f}s "
            f"(it lasts {clamped_duration(lease.duration_s)}s)"
        )
    newest = max(o.created_at for o in objs)
    age = (now - newest).total_seconds()
    if age > leaseless_after_s:
        return True, f"no lease, and its newest object is {age / 3600:.1f}h old"
    return False, f"no lease yet, objects {age:.0f}s old (starting or ending)"


@dataclass(frozen=True)
class SweepResult:
    """What the sweep found and did: lines to print, notes for the report."""

    lines: tuple[str, ...]
    notes: tuple[str, ...]
    removed: tuple[str, ...] = ()
    """Run ids whose objects were deleted."""
    spared: tuple[str, ...] = ()
    """Run ids left alone, each with why (alive, kept, starting)."""


def sweep_permissions() -> tuple[Permission, ...]:
    """What the sweep needs in the run's namespace (cluster-wide listing is tried, and its absence said, not fatal)."""
    return (
        Permission("list", "leases", group=LEASE_GROUP),
        Permission("delete", "leases", group=LEASE_GROUP),
        Permission("list", "pods"),
        Permission("deletecollection", "pods"),
        Permission("list", "persistentvolumeclaims"),
        Permission("deletecollection", "persistentvolumeclaims"),
    )


def sweep(connection: Connection, *, namespace: str | None, own_run_id: str = "") -> SweepResult:
    """Find dead runs' objects (cluster-wide, else in namespace only) and delete them; say what was removed."""
    now = dt.datetime.now(dt.UTC)
    notes: list[str] = []
    try:
        objects = _list_cluster(connection)
    except ApiException as exc:
        if exc.status not in (401, 403):
            raise
        if namespace is None:
            note = (
                f"sweep: may not list namespaces ({exc.status}): the objects of dead runs were not looked for "
                "(only an identity that may list namespaces, pods, claims, secrets and leases cluster-wide, or a "
                "run with --namespace, sweeps)"
            )
            return SweepResult((f"dindcheck: {note}",), (note,), ())
        notes.append(f"sweep: may not list namespaces ({exc.status}): swept namespace {namespace} only")
        objects = _list_namespace(connection, namespace, notes)
    decisions = decide(objects, now, own_run_id=own_run_id)
    lines = [f"dindcheck: {note}" for note in notes]
    removed = []
    for decision in decisions:
        if not decision.dead:
            continue
        done, failed = _remove(connection, decision)
        if done:
            removed.append(decision.run_id)
            lines.append(f"dindcheck: sweep: removed dead run {decision.run_id} ({decision.why}): {', '.join(done)}")
        lines += [f"dindcheck: sweep: could not remove dead run {decision.run_id}'s {failure}" for failure in failed]
    spared = tuple(f"{d.run_id} ({d.why})" for d in decisions if not d.dead)
    return SweepResult(tuple(lines), tuple(notes), tuple(removed), spared)


def _list_cluster(connection: Connection) -> list[RunObject]:
    """Every labelled object in the cluster; 403 when RBAC allows no cluster-wide listing."""
    core = connection.core
    coordination = connection.coordination
    objects = [
        _namespace_object(item)
        for item in api_call(core.list_namespace, label_selector=SELECTOR, deadline_s=CONNECT_TIMEOUT_S).items
    ]
    listers: tuple[tuple[str, Callable[..., Any]], ...] = (
        ("lease", coordination.list_lease_for_all_namespaces),
        ("pod", core.list_pod_for_all_namespaces),
        ("pvc", core.list_persistent_volume_claim_for_all_namespaces),
        ("secret", core.list_secret_for_all_namespaces),
    )
    for kind, lister in listers:
        items = api_call(lister, label_selector=SELECTOR, deadline_s=CONNECT_TIMEOUT_S).items
        objects += [_object(kind, item) for item in items]
    return objects


def _list_namespace(connection: Connection, namespace: str, notes: list[str]) -> list[RunObject]:
    """The labelled objects of one namespace; a kind the run may not list is said and passed over."""
    core = connection.core
    coordination = connection.coordination
    listers: tuple[tuple[str, Callable[..., Any]], ...] = (
        ("lease", coordination.list_namespaced_lease),
        ("pod", core.list_namespaced_pod),
        ("pvc", core.list_namespaced_persistent_volume_claim),
        ("secret", core.list_namespaced_secret),
    )
    objects: list[RunObject] = []
    for kind, lister in listers:
        try:
            items = api_call(lister, namespace, label_selector=SELECTOR, deadline_s=CONNECT_TIMEOUT_S).items
        except ApiException as exc:
            if exc.status not in (403, 404):
                raise
            if exc.status == 403:
                notes.append(f"sweep: may not list {kind}s in {namespace} ({exc.status}): not swept")
            continue
        objects += [_object(kind, item) for item in items]
    return objects


def _namespace_object(item: Any) -> RunObject:
    meta = item.metadata
    return RunObject(
        "namespace",
        str(meta.name),
        str(meta.name),
        str((meta.labels or {}).get(RUN_LABEL, "")),
        meta.creation_timestamp,
        terminating=meta.deletion_timestamp is not None or getattr(item.status, "phase", "") == "Terminating",
    )


def _object(kind: str, item: Any) -> RunObject:
    meta = item.metadata
    spec = getattr(item, "spec", None) if kind == "lease" else None
    return RunObject(
        kind,
        str(meta.namespace),
        str(meta.name),
        str((meta.labels or {}).get(RUN_LABEL, "")),
        meta.creation_timestamp,
        terminating=meta.deletion_timestamp is not None,
        renewed_at=getattr(spec, "renew_time", None) if spec is not None else None,
        duration_s=getattr(spec, "lease_duration_seconds", None) if spec is not None else None,
        kept=kind == "lease" and KEPT_ANNOTATION in (meta.annotations or {}),
    )


def _remove(connection: Connection, decision: RunDecision) -> tuple[list[str], list[str]]:
    """Delete a dead run's objects: its own namespaces whole, its objects in borrowed ones by its run id."""
    core = connection.core
    coordination = connection.coordination
    selector = f"{RUN_LABEL}={decision.run_id}"
    done: list[str] = []
    failed: list[str] = []

    def attempt(what: str, call: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        try:
            api_call(call, *args, deadline_s=CONNECT_TIMEOUT_S, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                done.append(what)
                return
            failed.append(f"{what} ({exc.status} {exc.reason})")
            return
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            failed.append(f"{what} (lost the API server: {exc})")
            return
        done.append(what)

    for ns in decision.own_namespaces():
        attempt(f"namespace/{ns} (with everything in it)", core.delete_namespace, ns, grace_period_seconds=0)
    collections: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
        "pod": (core.delete_collection_namespaced_pod, {"grace_period_seconds": 0}),
        "pvc": (core.delete_collection_namespaced_persistent_volume_claim, {}),
        "secret": (core.delete_collection_namespaced_secret, {}),
    }
    for ns, objs in decision.removals():
        for kind in KINDS:
            names = [o.describe() for o in objs if o.kind == kind]
            if names:
                delete, kwargs = collections[kind]
                attempt(f"{', '.join(names)} in {ns}", delete, ns, label_selector=selector, **kwargs)
        for lease in (o for o in objs if o.kind == "lease"):
            attempt(f"lease/{lease.name} in {ns}", coordination.delete_namespaced_lease, lease.name, ns)
    return done, failed
