"""Why a pod is not running, read from its status the way the engine does (pull failures fail fast)."""

from __future__ import annotations

from kubernetes import client

from probes.engine import _all_started, compact, pod_problem


def pod(
    *statuses: client.V1ContainerStatus, conditions: list[client.V1PodCondition] | None = None, phase: str = "Pending"
) -> client.V1Pod:
    return client.V1Pod(
        status=client.V1PodStatus(phase=phase, container_statuses=list(statuses), conditions=conditions or [])
    )


def waiting(reason: str, message: str = "") -> client.V1ContainerStatus:
    state = client.V1ContainerState(waiting=client.V1ContainerStateWaiting(reason=reason, message=message))
    return client.V1ContainerStatus(name="c", image="i", image_id="", ready=False, restart_count=0, state=state)


def test_image_pull_backoff_is_terminal_with_the_message() -> None:
    terminal, reason = pod_problem(pod(waiting("ImagePullBackOff", 'Back-off pulling image "x"')))
    assert terminal
    assert reason == 'container c: ImagePullBackOff: Back-off pulling image "x"'


def test_container_creating_is_not_a_problem() -> None:
    terminal, reason = pod_problem(pod(waiting("ContainerCreating")))
    assert not terminal
    assert "ContainerCreating" in reason


def test_unschedulable_waits_with_the_schedulers_message() -> None:
    condition = client.V1PodCondition(
        type="PodScheduled",
        status="False",
        reason="Unschedulable",
        message="0/3 nodes are available: 3 Insufficient cpu.",
    )
    terminal, reason = pod_problem(pod(conditions=[condition]))
    assert not terminal
    assert reason == "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."


def test_exited_container_is_terminal_with_exit_code() -> None:
    state = client.V1ContainerState(
        terminated=client.V1ContainerStateTerminated(exit_code=1, reason="Error", message="boom\n")
    )
    status = client.V1ContainerStatus(
        name="buildkitd", image="i", image_id="", ready=False, restart_count=0, state=state
    )
    terminal, reason = pod_problem(pod(status))
    assert terminal
    assert reason == "container buildkitd exited 1 (Error): boom"


def test_all_started_needs_every_container() -> None:
    running = client.V1ContainerStatus(
        name="a",
        image="i",
        image_id="",
        ready=True,
        restart_count=0,
        started=True,
        state=client.V1ContainerState(running=client.V1ContainerStateRunning()),
    )
    assert _all_started(pod(running, phase="Running"))
    assert not _all_started(pod(running, waiting("ContainerCreating"), phase="Running"))
    assert not _all_started(pod(phase="Running"))


def test_compact_keeps_head_and_root_cause() -> None:
    nested = "failed to get sandbox image: " + "failed to pull: " * 40 + "10.88.0.1:5000/x: not found"
    short = compact(nested, limit=120)
    assert len(short) <= 122
    assert short.startswith("failed to get sandbox image")
    assert short.endswith("not found")
    assert compact("short text") == "short text"


def test_a_pod_past_its_active_deadline_is_terminal() -> None:
    """A pod past its activeDeadlineSeconds never runs: a wait on it must not go on until its own timeout."""
    stopped = pod(phase="Failed")
    stopped.status.reason = "DeadlineExceeded"
    stopped.status.message = "Pod was active on the node longer than the specified deadline"
    terminal, reason = pod_problem(stopped)
    assert terminal
    assert reason == "DeadlineExceeded: Pod was active on the node longer than the specified deadline"


def test_a_stuck_init_container_is_named() -> None:
    """The native sidecar is an init container: its pull failure is the pod's problem."""
    stuck = pod()
    stuck.status.init_container_statuses = [waiting("ErrImagePull", "not found")]
    assert pod_problem(stuck) == (True, "container c: ErrImagePull: not found")
