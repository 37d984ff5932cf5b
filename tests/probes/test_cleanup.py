"""Cleanup on every path: it rides out server errors and names what it leaves.

What it leaves: a Retain volume (with its disk), a Pod Security label it could not restore. What a create still under
way when the run was cancelled made is deleted too.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3
from kubernetes.client.rest import ApiException

from dindcheck.plugin import RunState, _cleanup_shielded, _teardown
from probes import workspace
from probes.engine import Outcome, ProbeContext, ProbeRunner, Progress, RunScope, Task
from probes.exceptions import CancelledError
from probes.model import Status
from probes.workspace import Workspace


def _items(names: list[str]) -> Any:
    return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=n)) for n in names])


EBS = SimpleNamespace(driver="ebs.csi.aws.com", volume_handle="vol-0abc")


class FakeCore:
    """One run's pod, cache PVC (bound to pv-1 of a Retain class, an EBS disk) and secret; calls can be made to fail."""

    def __init__(self, *, pod_delete_errors: tuple[BaseException, ...] = (), pods_undeletable: bool = False) -> None:
        self.pods, self.pvcs, self.secrets = ["dc-run1-probe"], ["dc-run1-cache"], ["dc-run1-registry"]
        self.volumes = {"pv-1": "Retain"}
        self.pod_delete_errors = list(pod_delete_errors)
        self.pods_undeletable = pods_undeletable
        self.pod_deletes = 0
        self.volume_read_error: ApiException | None = None
        self.namespace_deleted = False
        self.labels = {workspace.PSA_ENFORCE_LABEL: "privileged"}
        self.label_patch_errors: list[BaseException] = []
        self.api_unavailable: list[BaseException] = []

    def get_api_resources(self, **_kwargs: Any) -> Any:
        """The API answers (cleanup waits for that first)."""
        self.api_unavailable, unavailable = self.api_unavailable[1:], self.api_unavailable[:1]
        if unavailable:
            raise unavailable[0]
        return SimpleNamespace(resources=[])

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
        """Deletes the claims (a Retain volume stays, a Delete one goes)."""
        self.pvcs = []
        self.volumes = {name: policy for name, policy in self.volumes.items() if policy == "Retain"}

    def delete_collection_namespaced_secret(self, _ns: str, **_kwargs: Any) -> None:
        """Deletes the secrets."""
        self.secrets = []

    def delete_namespace(self, _ns: str, **_kwargs: Any) -> None:
        """Marks the namespace deleted."""
        self.namespace_deleted = True

    def patch_namespace(self, _ns: str, body: dict[str, Any], **_kwargs: Any) -> None:
        """Sets (None: removes) labels, unless a queued error comes first."""
        if self.label_patch_errors:
            raise self.label_patch_errors.pop(0)
        for key, value in body["metadata"]["labels"].items():
            if value is None:
                self.labels.pop(key, None)
            else:
                self.labels[key] = value

    def read_persistent_volume(self, name: str, **_kwargs: Any) -> Any:
        """A volume of class cache-retain with its reclaim policy and EBS disk, or 404."""
        if self.volume_read_error is not None:
            raise self.volume_read_error
        if name not in self.volumes:
            raise ApiException(status=404, reason="Not Found")
        spec = SimpleNamespace(
            persistent_volume_reclaim_policy=self.volumes[name], storage_class_name="cache-retain", csi=EBS
        )
        return SimpleNamespace(spec=spec)

    def delete_persistent_volume(self, name: str, **_kwargs: Any) -> None:
        """Deleting a Retain volume's object orphans its disk: cleanup must never call this."""
        raise AssertionError(f"deleted persistentvolume {name}: its disk would be orphaned")


OWN = Workspace("dindcheck-run1", "run1", created=True)
BORROWED = Workspace("team-ci", "run1", created=False, pod_security="privileged", previous_pod_security="baseline")


def _cleanup(core: FakeCore, *, wait_s: float = 5.0, space: Workspace = OWN) -> tuple[list[str], list[str]]:
    said: list[str] = []
    connection: Any = SimpleNamespace(core=core)
    left = workspace.cleanup(connection, space, wait_s=wait_s, say=said.append)
    return left, said


def test_a_server_error_is_ridden_out() -> None:
    core = FakeCore(pod_delete_errors=(ApiException(status=503, reason="Unavailable"),))
    core.volumes = {"pv-1": "Delete"}
    left, said = _cleanup(core)
    assert left == []
    assert core.pod_deletes == 2, "the 503 was given up on instead of retried"
    assert core.namespace_deleted
    assert any("probe objects deleted" in line for line in said), said


def test_a_retained_volume_is_left_and_named_with_its_disk_never_deleted() -> None:
    """Deleting the PV of a Retain class would orphan its disk: the PV stays as the handle, and the user is told."""
    core = FakeCore()
    left, said = _cleanup(core)
    assert core.volumes == {"pv-1": "Retain"}
    assert left == ["persistentvolume/pv-1 (reclaimPolicy Retain, ebs.csi.aws.com volume vol-0abc)"]
    (line,) = [line for line in said if "pv-1" in line]
    assert "volume pv-1 of class cache-retain (reclaimPolicy Retain) keeps its disk" in line
    assert "delete the PV and the disk (ebs.csi.aws.com volume vol-0abc) yourself" in line
    assert "kubectl delete persistentvolume pv-1" in line
    assert not any("probe objects deleted" in line for line in said), "a run that left a volume is not clean"


def test_a_volume_the_run_may_not_read_is_said_but_not_counted_as_left() -> None:
    core = FakeCore()
    core.volume_read_error = ApiException(status=403, reason="Forbidden")
    left, said = _cleanup(core)
    assert left == []
    assert any("cannot read volume pv-1 (403 Forbidden)" in line for line in said), said


def test_a_connection_that_keeps_dropping_is_passed_over_and_what_is_left_is_named() -> None:
    core = FakeCore(pods_undeletable=True)
    core.volumes = {"pv-1": "Delete"}
    left, said = _cleanup(core, wait_s=1.0)
    assert left == ["pod/dc-run1-probe"], "the other kinds are deleted, the pod that could not be is named"
    assert any("cleaning up 1 object(s)" in line for line in said), said
    assert not any("probe objects deleted" in line for line in said), said


def test_a_borrowed_namespace_gets_its_own_label_back() -> None:
    core = FakeCore()
    core.volumes = {}
    left, said = _cleanup(core, space=BORROWED)
    assert left == []
    assert core.labels[workspace.PSA_ENFORCE_LABEL] == "baseline"
    assert not core.namespace_deleted, "a borrowed namespace is never deleted"
    assert any("label is back to baseline" in line for line in said), said


def test_a_label_restore_the_api_refuses_is_said_in_its_words_and_left() -> None:
    core = FakeCore()
    core.volumes = {}
    body = '{"kind":"Status","message":"namespaces \\"team-ci\\" is forbidden: User cannot patch resource"}'
    refusal = ApiException(status=403, reason="Forbidden")
    refusal.body = body
    core.label_patch_errors = [refusal]
    left, said = _cleanup(core, space=BORROWED)
    assert core.labels[workspace.PSA_ENFORCE_LABEL] == "privileged"
    assert left == ["namespace/team-ci label pod-security.kubernetes.io/enforce=privileged"]
    (line,) = [line for line in said if "could not restore" in line]
    assert '403 Forbidden: namespaces "team-ci" is forbidden: User cannot patch resource' in line
    assert "restore it with: kubectl label namespace team-ci pod-security.kubernetes.io/enforce=baseline" in line
    assert not any("label is back" in line for line in said), said


def test_a_label_restore_that_loses_the_api_server_is_retried_then_said() -> None:
    core = FakeCore()
    core.volumes = {}
    core.label_patch_errors = [urllib3.exceptions.ProtocolError("Connection aborted.")] * 50
    left, said = _cleanup(core, space=BORROWED, wait_s=1.0)
    assert left == ["namespace/team-ci label pod-security.kubernetes.io/enforce=privileged"]
    assert any("could not restore" in line and "Connection aborted" in line for line in said), said
    core.label_patch_errors = [urllib3.exceptions.ProtocolError("Connection aborted.")]
    left, said = _cleanup(core, space=BORROWED)
    assert left == [], "one dropped connection is ridden out"
    assert core.labels[workspace.PSA_ENFORCE_LABEL] == "baseline"


def test_a_namespace_that_had_no_label_is_told_to_drop_it() -> None:
    space = replace(BORROWED, previous_pod_security=None)
    assert workspace.restore_label_command(space) == (
        "kubectl label namespace team-ci pod-security.kubernetes.io/enforce-"
    )


def _state(core: Any, space: Workspace, *, keep: bool = False, runner: ProbeRunner | None = None) -> Any:
    return RunState(
        options=SimpleNamespace(keep=keep),  # type: ignore[arg-type]
        connection=SimpleNamespace(core=core),  # type: ignore[arg-type]
        space=space,
        runner=runner,
    )


class Terminal:
    """What the run tells the terminal."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        """Remember one line."""
        self.lines.append(line)


def test_keep_on_a_borrowed_namespace_says_it_keeps_the_runs_label_and_how_to_restore_it() -> None:
    core = FakeCore()
    terminal = Terminal()
    _teardown(_state(core, BORROWED, keep=True), terminal)
    assert core.labels[workspace.PSA_ENFORCE_LABEL] == "privileged", "--keep changes nothing"
    assert core.pods == ["dc-run1-probe"]
    (line,) = [line for line in terminal.lines if "keeps the run's label" in line]
    assert "namespace team-ci keeps the run's label pod-security.kubernetes.io/enforce=privileged" in line
    assert "(it was baseline)" in line
    assert line.endswith(
        "restore it with: kubectl label namespace team-ci pod-security.kubernetes.io/enforce=baseline --overwrite"
    )
    quiet = Terminal()
    _teardown(_state(FakeCore(), OWN, keep=True), quiet)
    assert not any("label" in line and "restore" in line for line in quiet.lines), quiet.lines


class LateCreate(FakeCore):
    """A pod create that the API server answers only after cleanup's first delete by label: it lands after it."""

    def __init__(self) -> None:
        super().__init__()
        self.pods = []
        self.volumes = {}
        self.create_started = threading.Event()
        self.first_delete = threading.Event()

    def create_namespaced_pod_with_http_info(self, _ns: str, manifest: dict[str, Any], **_kwargs: Any) -> Any:
        """Blocks until the first delete, then creates the pod."""
        self.create_started.set()
        assert self.first_delete.wait(10), "cleanup never deleted"
        self.pods = [*self.pods, manifest["metadata"]["name"]]
        return None, 201, {}

    def delete_collection_namespaced_pod(self, _ns: str, **_kwargs: Any) -> None:
        """Deletes the pods there now."""
        super().delete_collection_namespaced_pod(_ns)
        self.first_delete.set()


def test_a_pod_created_while_the_run_is_cancelled_is_deleted_after_its_create_returns() -> None:
    core = LateCreate()

    def create_a_pod(ctx: ProbeContext) -> Outcome:
        ctx.create_pod(ctx.pod_manifest("late", {"containers": []}))
        return Outcome(Status.PASS, "created")

    connection: Any = SimpleNamespace(core=core)
    runner = ProbeRunner(connection, RunScope(OWN.namespace, OWN.run_id), Progress())
    runner.start([Task("probe-x", "probe-x", "", create_a_pod)])
    assert core.create_started.wait(5)
    terminal = Terminal()
    _teardown(_state(core, OWN, runner=runner), terminal)
    runner.stop(wait_s=10.0)
    assert runner.finished()["probe-x"].status is Status.PASS, "the create did not return"
    assert core.pods == [], f"the pod that landed after the first delete was left: {terminal.lines}"
    assert any("probe objects deleted" in line for line in terminal.lines), terminal.lines


def test_no_create_starts_once_the_run_is_cancelled() -> None:
    core = LateCreate()
    connection: Any = SimpleNamespace(core=core)
    cancel = threading.Event()
    ctx = ProbeContext(Task("probe-x", "probe-x", "", _never), connection, RunScope("ns", "r"), Progress(), cancel)
    cancel.set()
    with pytest.raises(CancelledError):
        ctx.create_pod(ctx.pod_manifest("late", {"containers": []}))
    assert not core.create_started.is_set()


def _never(_ctx: ProbeContext) -> Outcome:
    raise AssertionError("not run")


def test_ctrl_c_during_cleanup_says_so_and_does_not_abandon_it() -> None:
    said: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with _cleanup_shielded(said.append):
        os.kill(os.getpid(), signal.SIGINT)  # handled before the next bytecode: no KeyboardInterrupt escapes
        os.kill(os.getpid(), signal.SIGTERM)
    assert len(said) == 2, said
    assert all("still cleaning up" in line for line in said), said
    assert signal.getsignal(signal.SIGINT) is before, "the previous handler must be back after cleanup"
