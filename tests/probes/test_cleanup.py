"""Cleanup on every path: it rides out server errors, deletes Retain volumes, names what it could not delete."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from dindcheck.plugin import _cleanup_shielded
from probes import workspace
from probes.workspace import Workspace


def _items(names: list[str]) -> Any:
    return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=n)) for n in names])


class FakeCore:
    """One run's pod, cache PVC (bound to pv-1 of a Retain class) and secret; deletes can be made to fail."""

    def __init__(self, *, pod_delete_errors: tuple[BaseException, ...] = (), pods_undeletable: bool = False) -> None:
        self.pods, self.pvcs, self.secrets = ["dc-run1-probe"], ["dc-run1-cache"], ["dc-run1-registry"]
        self.volumes = {"pv-1": "Retain"}
        self.pod_delete_errors = list(pod_delete_errors)
        self.pods_undeletable = pods_undeletable
        self.pod_deletes = 0
        self.volume_delete_error: ApiException | None = None
        self.namespace_deleted = False

    def list_namespaced_persistent_volume_claim(self, _ns: str, **_kwargs: Any) -> Any:
        """The run's claims, each bound to pv-1."""
        claims = [
            SimpleNamespace(metadata=SimpleNamespace(name=n), spec=SimpleNamespace(volume_name="pv-1"))
            for n in self.pvcs
        ]
        return SimpleNamespace(items=claims)

    def list_namespaced_pod(self, _ns: str, **_kwargs: Any) -> Any:
        """The run's pods still there."""
        return _items(self.pods)

    def list_namespaced_secret(self, _ns: str, **_kwargs: Any) -> Any:
        """The run's secrets still there."""
        return _items(self.secrets)

    def delete_collection_namespaced_pod(self, _ns: str, **_kwargs: Any) -> None:
        """Deletes the pods, unless a queued error (or a dead connection) comes first."""
        self.pod_deletes += 1
        if self.pods_undeletable:
            raise urllib3.exceptions.ProtocolError("Connection aborted.")
        if self.pod_delete_errors:
            raise self.pod_delete_errors.pop(0)
        self.pods = []

    def delete_collection_namespaced_persistent_volume_claim(self, _ns: str, **_kwargs: Any) -> None:
        """Deletes the claims (the Retain volume stays)."""
        self.pvcs = []

    def delete_collection_namespaced_secret(self, _ns: str, **_kwargs: Any) -> None:
        """Deletes the secrets."""
        self.secrets = []

    def delete_namespace(self, _ns: str, **_kwargs: Any) -> None:
        """Marks the namespace deleted."""
        self.namespace_deleted = True

    def read_persistent_volume(self, name: str, **_kwargs: Any) -> Any:
        """A volume with its reclaim policy, or 404."""
        if name not in self.volumes:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(spec=SimpleNamespace(persistent_volume_reclaim_policy=self.volumes[name]))

    def delete_persistent_volume(self, name: str, **_kwargs: Any) -> None:
        """Deletes the volume, unless the run may not."""
        if self.volume_delete_error is not None:
            raise self.volume_delete_error
        del self.volumes[name]


def _cleanup(core: FakeCore, *, wait_s: float = 5.0) -> tuple[list[str], list[str]]:
    said: list[str] = []
    connection: Any = SimpleNamespace(core=core)
    left = workspace.cleanup(
        connection, Workspace("dindcheck-run1", "run1", created=True), wait_s=wait_s, say=said.append
    )
    return left, said


def test_a_server_error_is_ridden_out_and_a_retained_volume_is_deleted() -> None:
    core = FakeCore(pod_delete_errors=(ApiException(status=503, reason="Unavailable"),))
    left, said = _cleanup(core)
    assert left == []
    assert core.pod_deletes == 2, "the 503 was given up on instead of retried"
    assert core.volumes == {}, "a Retain volume outlives its claim: cleanup must delete it"
    assert core.namespace_deleted
    assert any("probe objects deleted" in line for line in said), said


def test_a_retained_volume_the_run_may_not_delete_is_named() -> None:
    core = FakeCore()
    core.volume_delete_error = ApiException(status=403, reason="Forbidden")
    left, _said = _cleanup(core)
    assert left == ["persistentvolume/pv-1 (reclaimPolicy Retain; 403 Forbidden: delete it by hand)"]


def test_a_connection_that_keeps_dropping_is_passed_over_and_what_is_left_is_named() -> None:
    core = FakeCore(pods_undeletable=True)
    left, said = _cleanup(core, wait_s=1.0)
    assert left == ["pod/dc-run1-probe"], "the other kinds are deleted, the pod that could not be is named"
    assert core.volumes == {}
    assert any("cleaning up 1 object(s)" in line for line in said), said
    assert not any("probe objects deleted" in line for line in said), said


def test_ctrl_c_during_cleanup_says_so_and_does_not_abandon_it() -> None:
    said: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with _cleanup_shielded(said.append):
        os.kill(os.getpid(), signal.SIGINT)  # handled before the next bytecode: no KeyboardInterrupt escapes
        os.kill(os.getpid(), signal.SIGTERM)
    assert len(said) == 2, said
    assert all("still cleaning up" in line for line in said), said
    assert signal.getsignal(signal.SIGINT) is before, "the previous handler must be back after cleanup"
