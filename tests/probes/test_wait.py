"""Waiting for a pod: retried kubelet events do not end the wait early; a probe's known-final event does."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from probes.engine import ProbeContext, Progress, RunScope, Task
from probes.exceptions import PodNotRunningError


class FakeCore:
    """A Pending pod whose only news is a FailedMount warning event, as the kubelet reports it while retrying."""

    def __init__(self, event_reason: str, event_message: str) -> None:
        self.event = SimpleNamespace(type="Warning", reason=event_reason, message=event_message, last_timestamp="1")
        self.reads = 0
        self.statuses: list[Any] = []

    def read_namespaced_pod(self, _name: str, _namespace: str, **_kwargs: Any) -> Any:
        """Still Pending, every time."""
        self.reads += 1
        status = SimpleNamespace(
            phase="Pending",
            reason=None,
            message=None,
            container_statuses=self.statuses,
            init_container_statuses=[],
            conditions=[],
        )
        return SimpleNamespace(spec=SimpleNamespace(node_name="node-a"), status=status)

    def list_namespaced_event(self, _namespace: str, **_kwargs: Any) -> Any:
        """The one warning the kubelet keeps repeating (none when it has no reason)."""
        return SimpleNamespace(items=[self.event] if self.event.reason else [])


def context(core: FakeCore, *, timeout_s: float = 1.2) -> ProbeContext:
    connection: Any = SimpleNamespace(core=core, api_client=None)
    task = Task("p", "p", "", lambda _ctx: None)  # type: ignore[arg-type,return-value]
    return ProbeContext(task, connection, RunScope("ns", "run1", timeout_s=timeout_s), Progress(), threading.Event())


@pytest.mark.parametrize(
    ("event_reason", "event_message"),
    [
        ("FailedMount", 'MountVolume.SetUp failed for volume "cache" : rpc error: transient'),
        ("FailedCreatePodSandBox", "failed to setup network for sandbox: plugin type=bridge timed out"),
        ("FailedAttachVolume", "AttachVolume.Attach failed for volume pvc-1 : timed out"),
    ],
)
def test_a_retried_kubelet_event_waits_until_the_deadline(event_reason: str, event_message: str) -> None:
    """The kubelet retries these; the old wait ended at the first one and called the pod broken."""
    core = FakeCore(event_reason, event_message)
    started = time.monotonic()
    with pytest.raises(PodNotRunningError) as raised:
        context(core).wait_running("pod-a")
    assert time.monotonic() - started >= 1.2
    assert "not running after 1s" in str(raised.value)
    assert (raised.value.event_reason, raised.value.event_message) == (event_reason, event_message)
    assert event_message in raised.value.reason, "the deadline's cause must name the last warning"
    assert core.reads >= 2, "the wait ended at the first event instead of at its deadline"


def test_a_final_event_ends_the_wait_at_once_with_its_words() -> None:
    core = FakeCore("FailedMount", "hostPath type check failed: /var/run/docker.sock is not a socket file")
    ctx = context(core, timeout_s=30)
    with pytest.raises(PodNotRunningError) as raised:
        ctx.wait_running("pod-a", final_event=lambda reason, _msg: reason == "FailedMount")
    assert "is not running" in str(raised.value)
    assert "hostPath type check failed" in raised.value.event_message
    assert core.reads == 1
    assert ctx.nodes == {"node-a"}, "a pod that never ran was still tried on its node: the evidence must say which"


def test_a_pull_failure_ends_the_wait_without_any_event() -> None:
    core = FakeCore("", "")
    waiting = SimpleNamespace(reason="ErrImagePull", message='pull access denied for "nope"')
    status = SimpleNamespace(name="job", state=SimpleNamespace(waiting=waiting, terminated=None))
    core.statuses = [status]
    with pytest.raises(PodNotRunningError) as raised:
        context(core, timeout_s=30).wait_running("pod-a")
    assert raised.value.reason == 'container job: ErrImagePull: pull access denied for "nope"'
    assert core.reads == 1
