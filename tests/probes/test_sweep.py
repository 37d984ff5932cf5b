"""The stale-object sweep: which runs are dead, and that only their objects are deleted.

A live run's objects must never go (its Lease is renewed), nor a kept run's, nor a run's that is just starting
(its namespace exists, its Lease not yet); a killed run's go, by its run id, even in a namespace it shared.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

from kubernetes.client.rest import ApiException

from probes import sweep
from probes.lease import KEPT_ANNOTATION
from probes.sweep import RunObject, decide

NOW = dt.datetime(2026, 12, 5, 8, 0, 0, tzinfo=dt.UTC)


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def lease(run_id: str, namespace: str, renewed_s_ago: float, *, duration: int = 60, kept: bool = False) -> RunObject:
    return RunObject(
        "lease",
        namespace,
        f"dc-{run_id}",
        run_id,
        ago(600),
        renewed_at=ago(renewed_s_ago),
        duration_s=duration,
        kept=kept,
    )


def obj(kind: str, run_id: str, namespace: str, age_s: float = 120, *, terminating: bool = False) -> RunObject:
    name = namespace if kind == "namespace" else f"dc-{run_id}-{kind}"
    return RunObject(kind, namespace, name, run_id, ago(age_s), terminating=terminating)


def by_id(decisions: tuple[sweep.RunDecision, ...]) -> dict[str, sweep.RunDecision]:
    return {d.run_id: d for d in decisions}


def test_a_run_whose_lease_lapsed_is_dead_and_a_renewed_one_alive() -> None:
    decisions = by_id(
        decide(
            [
                lease("dead1", "team", 75),
                obj("pod", "dead1", "team"),
                lease("live1", "team", 5),
                obj("pod", "live1", "team"),
            ],
            NOW,
            own_run_id="me",
        )
    )
    assert decisions["dead1"].dead
    assert "dc-dead1 in team was not renewed for 75s (it lasts 60s)" in decisions["dead1"].why
    assert not decisions["live1"].dead


def test_a_short_test_lease_lapses_sooner() -> None:
    (decision,) = decide([lease("k", "team", 12, duration=10), obj("pod", "k", "team")], NOW, own_run_id="me")
    assert decision.dead


def test_a_kept_run_is_never_dead() -> None:
    (decision,) = decide([lease("k", "team", 9999, kept=True), obj("pod", "k", "team")], NOW, own_run_id="me")
    assert not decision.dead
    assert decision.why == "kept (--keep)"


def test_a_run_starting_without_its_lease_yet_is_spared_and_an_old_leaseless_one_is_not() -> None:
    decisions = by_id(
        decide(
            [obj("namespace", "new", "dindcheck-new", age_s=2), obj("pod", "old", "team", age_s=7200)],
            NOW,
            own_run_id="me",
        )
    )
    assert not decisions["new"].dead
    assert decisions["old"].dead
    assert "no lease" in decisions["old"].why


def test_the_sweeping_run_and_objects_already_going_are_not_counted() -> None:
    decisions = decide([lease("me", "team", 999), obj("pod", "gone", "team", terminating=True)], NOW, own_run_id="me")
    assert decisions == ()


def test_a_dead_runs_own_namespace_goes_whole_and_borrowed_ones_by_object() -> None:
    (decision,) = decide(
        [
            obj("namespace", "k", "dindcheck-k"),
            lease("k", "dindcheck-k", 90),
            obj("pod", "k", "dindcheck-k"),
            obj("pvc", "k", "shared"),
        ],
        NOW,
        own_run_id="me",
    )
    assert decision.own_namespaces() == ("dindcheck-k",)
    assert [(ns, [o.describe() for o in objs]) for ns, objs in decision.removals()] == [("shared", ["pvc/dc-k-pvc"])]


def _item(kind: str, o: RunObject) -> Any:
    metadata = SimpleNamespace(
        name=o.name,
        namespace=o.namespace,
        labels={"app.kubernetes.io/managed-by": "dindcheck", "dindcheck.io/run": o.run_id},
        annotations={KEPT_ANNOTATION: "x"} if o.kept else {},
        creation_timestamp=o.created_at,
        deletion_timestamp=None,
    )
    spec = SimpleNamespace(renew_time=o.renewed_at, lease_duration_seconds=o.duration_s) if kind == "lease" else None
    return SimpleNamespace(metadata=metadata, spec=spec, status=SimpleNamespace(phase="Active"))


class FakeCluster:
    """Labelled objects in a cluster; cluster-wide listing may be forbidden; deletes by run label are recorded."""

    def __init__(self, objects: list[RunObject], *, cluster_wide: bool = True) -> None:
        self.objects = list(objects)
        self.cluster_wide = cluster_wide
        self.deleted: list[str] = []

    def _all(self, kind: str) -> Any:
        if not self.cluster_wide:
            raise ApiException(status=403, reason="Forbidden")
        return SimpleNamespace(items=[_item(kind, o) for o in self.objects if o.kind == kind])

    def _in(self, kind: str, namespace: str) -> Any:
        return SimpleNamespace(
            items=[_item(kind, o) for o in self.objects if o.kind == kind and o.namespace == namespace]
        )

    def _delete(self, kind: str, namespace: str, selector: str) -> None:
        run_id = selector.split("=", 1)[1]
        mine = [o for o in self.objects if o.kind == kind and o.namespace == namespace and o.run_id == run_id]
        self.deleted += [f"{namespace}/{o.describe()}" for o in mine]
        self.objects = [o for o in self.objects if o not in mine]

    # core
    def list_namespace(self, **_kwargs: Any) -> Any:
        """The fake's list namespace."""
        return self._all("namespace")

    def list_pod_for_all_namespaces(self, **_kwargs: Any) -> Any:
        """The fake's list pod for all namespaces."""
        return self._all("pod")

    def list_persistent_volume_claim_for_all_namespaces(self, **_kwargs: Any) -> Any:
        """The fake's list persistent volume claim for all namespaces."""
        return self._all("pvc")

    def list_secret_for_all_namespaces(self, **_kwargs: Any) -> Any:
        """The fake's list secret for all namespaces."""
        return self._all("secret")

    def list_namespaced_pod(self, namespace: str, **_kwargs: Any) -> Any:
        """The fake's list namespaced pod."""
        return self._in("pod", namespace)

    def list_namespaced_persistent_volume_claim(self, namespace: str, **_kwargs: Any) -> Any:
        """The fake's list namespaced persistent volume claim."""
        return self._in("pvc", namespace)

    def list_namespaced_secret(self, namespace: str, **_kwargs: Any) -> Any:
        """The fake's list namespaced secret."""
        return self._in("secret", namespace)

    def delete_namespace(self, name: str, **_kwargs: Any) -> None:
        """The fake's delete namespace."""
        self.deleted.append(f"namespace/{name}")
        self.objects = [o for o in self.objects if o.namespace != name]

    def delete_collection_namespaced_pod(self, namespace: str, *, label_selector: str, **_kwargs: Any) -> None:
        """The fake's delete collection namespaced pod."""
        self._delete("pod", namespace, label_selector)

    def delete_collection_namespaced_persistent_volume_claim(
        self, namespace: str, *, label_selector: str, **_kwargs: Any
    ) -> None:
        """The fake's delete collection namespaced persistent volume claim."""
        self._delete("pvc", namespace, label_selector)

    def delete_collection_namespaced_secret(self, namespace: str, *, label_selector: str, **_kwargs: Any) -> None:
        """The fake's delete collection namespaced secret."""
        self._delete("secret", namespace, label_selector)

    # coordination
    def list_lease_for_all_namespaces(self, **_kwargs: Any) -> Any:
        """The fake's list lease for all namespaces."""
        return self._all("lease")

    def list_namespaced_lease(self, namespace: str, **_kwargs: Any) -> Any:
        """The fake's list namespaced lease."""
        return self._in("lease", namespace)

    def delete_namespaced_lease(self, name: str, namespace: str, **_kwargs: Any) -> None:
        """The fake's delete namespaced lease."""
        self.deleted.append(f"{namespace}/lease/{name}")
        self.objects = [o for o in self.objects if not (o.kind == "lease" and o.name == name)]


def _now_relative(objects: list[RunObject]) -> list[RunObject]:
    """The fixtures' times moved so that NOW is the real now (the sweep reads the clock)."""
    shift = dt.datetime.now(dt.UTC) - NOW
    return [
        RunObject(
            o.kind,
            o.namespace,
            o.name,
            o.run_id,
            o.created_at + shift,
            o.terminating,
            o.renewed_at + shift if o.renewed_at else None,
            o.duration_s,
            o.kept,
        )
        for o in objects
    ]


SHARED = [
    lease("dead1", "shared", 90),
    obj("pod", "dead1", "shared"),
    obj("pvc", "dead1", "shared"),
    lease("live1", "shared", 3),
    obj("pod", "live1", "shared"),
    obj("pvc", "live1", "shared"),
    obj("namespace", "dead2", "dindcheck-dead2"),
    lease("dead2", "dindcheck-dead2", 120),
    obj("pod", "dead2", "dindcheck-dead2"),
]


def test_the_sweep_deletes_only_dead_runs_objects_even_in_a_shared_namespace() -> None:
    fake = FakeCluster(_now_relative(SHARED))
    connection: Any = SimpleNamespace(core=fake, coordination=fake)
    result = sweep.sweep(connection, namespace=None, own_run_id="me")
    assert sorted(result.removed) == ["dead1", "dead2"]
    assert sorted(fake.deleted) == [
        "namespace/dindcheck-dead2",
        "shared/lease/dc-dead1",
        "shared/pod/dc-dead1-pod",
        "shared/pvc/dc-dead1-pvc",
    ]
    assert {o.run_id for o in fake.objects} == {"live1"}, "a live run's object was deleted"
    assert any("removed dead run dead2" in line and "namespace/dindcheck-dead2" in line for line in result.lines)
    assert result.spared == ("live1 (alive (its lease is renewed))",)
    assert result.notes == ()


def test_without_cluster_wide_listing_the_runs_namespace_alone_is_swept_and_said() -> None:
    fake = FakeCluster(_now_relative(SHARED), cluster_wide=False)
    connection: Any = SimpleNamespace(core=fake, coordination=fake)
    result = sweep.sweep(connection, namespace="shared", own_run_id="me")
    assert result.removed == ("dead1",)
    assert "namespace/dindcheck-dead2" not in fake.deleted
    assert result.notes == ("sweep: may not list namespaces (403): swept namespace shared only",)
    assert "dindcheck: sweep: may not list namespaces (403): swept namespace shared only" in result.lines


def test_without_cluster_wide_listing_nor_a_namespace_nothing_is_swept_and_it_is_said() -> None:
    fake = FakeCluster(_now_relative(SHARED), cluster_wide=False)
    connection: Any = SimpleNamespace(core=fake, coordination=fake)
    result = sweep.sweep(connection, namespace=None, own_run_id="me")
    assert fake.deleted == []
    assert result.notes[0].startswith("sweep: may not list namespaces (403)")


def test_a_delete_the_run_may_not_make_is_said_not_hidden() -> None:
    fake = FakeCluster(_now_relative(SHARED))

    def refuse(name: str, **_kwargs: Any) -> None:
        raise ApiException(status=403, reason="Forbidden")

    fake.delete_namespace = refuse  # type: ignore[method-assign]
    connection: Any = SimpleNamespace(core=fake, coordination=fake)
    result = sweep.sweep(connection, namespace=None, own_run_id="me")
    assert (
        "dindcheck: sweep: could not remove dead run dead2's namespace/dindcheck-dead2 (with everything in it) "
        "(403 Forbidden)" in result.lines
    )
