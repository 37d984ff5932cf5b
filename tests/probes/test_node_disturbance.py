"""What the node does to a probe pod (eviction, preemption, a killed container, a stopped kubelet).

It is never a verdict about the capability: the check is inconclusive and names what happened.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from probes.engine import Outcome, ProbeContext, Progress, RunScope, Task, node_disturbance, run_probe
from probes.model import Status
from tests.probes.test_run_probe import QuietContext


def terminated(exit_code: int, reason: str, message: str = "") -> Any:
    return SimpleNamespace(terminated=SimpleNamespace(exit_code=exit_code, reason=reason, message=message))


def pod(
    *,
    reason: str | None = None,
    message: str | None = None,
    conditions: list[Any] | None = None,
    containers: list[Any] | None = None,
    init: list[Any] | None = None,
) -> Any:
    status = SimpleNamespace(
        phase="Failed" if reason else "Running",
        reason=reason,
        message=message,
        conditions=conditions or [],
        container_statuses=containers or [],
        init_container_statuses=init or [],
    )
    return SimpleNamespace(metadata=SimpleNamespace(name="dc-r1-docker-run-dind"), status=status)


def container(name: str, state: Any, last_state: Any = None) -> Any:
    return SimpleNamespace(name=name, state=state, last_state=last_state)


@pytest.mark.parametrize(
    ("found", "said"),
    [
        (
            pod(reason="Evicted", message="The node was low on resource: ephemeral-storage."),
            "pod dc-r1-docker-run-dind was Evicted: The node was low on resource: ephemeral-storage.",
        ),
        (
            pod(
                conditions=[
                    SimpleNamespace(
                        type="DisruptionTarget",
                        status="True",
                        reason="PreemptionByScheduler",
                        message="default-scheduler: preempting to accommodate a higher priority pod",
                    )
                ]
            ),
            (
                "pod dc-r1-docker-run-dind was stopped by the cluster (PreemptionByScheduler: default-scheduler: "
                "preempting to accommodate a higher priority pod)"
            ),
        ),
        (
            pod(containers=[container("dind", terminated(137, "Error"))]),
            "the container dind of pod dc-r1-docker-run-dind was killed by the node (exit 137, Error)",
        ),
        (
            pod(containers=[container("job", SimpleNamespace(terminated=None), terminated(255, "Unknown"))]),
            "the container job of pod dc-r1-docker-run-dind was killed by the node (exit 255, Unknown)",
        ),
        (
            pod(containers=[container("build", terminated(137, "OOMKilled"))]),
            "the container build of pod dc-r1-docker-run-dind was killed by the node (exit 137, OOMKilled)",
        ),
    ],
)
def test_what_the_node_did_is_said_in_its_words(found: Any, said: str) -> None:
    assert node_disturbance(found) == said


@pytest.mark.parametrize(
    "untouched",
    [
        pod(containers=[container("dind", terminated(1, "Error", "invalid DOCKER_MIN_API_VERSION"))]),
        pod(reason="DeadlineExceeded", containers=[container("job", terminated(137, "Error"))]),
        pod(init=[container("registry", terminated(143, "Error"))]),  # a sidecar stopped at the pod's end
        pod(containers=[container("job", terminated(0, "Completed"))]),
        SimpleNamespace(metadata=SimpleNamespace(name="p"), status=None),
    ],
)
def test_a_container_ending_on_its_own_or_the_runs_deadline_is_not_the_node(untouched: Any) -> None:
    assert node_disturbance(untouched) is None


def run_with(outcome: Outcome, *, disturbances: list[str], unready: list[str] | None = None) -> Any:
    context: Any = QuietContext(nodes={"node-a"}, disturbances=disturbances)
    context.unready = unready or []
    return run_probe(Task("docker-run", "docker-run", "run", lambda _ctx: outcome), context)


def test_a_failure_under_an_eviction_is_inconclusive_naming_it() -> None:
    verdict = run_with(
        Outcome(Status.FAIL, "nested container did not start"),
        disturbances=["pod p was Evicted: The node was low on resource: memory."],
    )
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.summary.startswith("the node disturbed the probe, nothing concluded: pod p was Evicted")
    assert "(the probe said: nested container did not start)" in verdict.summary
    assert verdict.evidence["status_before"] == "fail"


def test_a_pass_proven_before_a_disturbance_stands() -> None:
    verdict = run_with(Outcome(Status.PASS, "built and pushed"), disturbances=["pod p was Evicted: later"])
    assert verdict.status is Status.PASS


def test_a_broken_exec_channel_names_the_stopped_kubelet() -> None:
    unready = ["node node-a is NotReady (Unknown: NodeStatusUnknown: Kubelet stopped posting node status.)"]
    verdict = run_with(
        Outcome(Status.INCONCLUSIVE, "exec channel failed, nothing concluded: Handshake status 500"),
        disturbances=[],
        unready=unready,
    )
    assert verdict.status is Status.INCONCLUSIVE
    assert "Kubelet stopped posting node status" in verdict.summary
    assert verdict.evidence["node_disturbance"] == unready


def test_a_failure_on_a_healthy_node_is_a_failure() -> None:
    verdict = run_with(Outcome(Status.FAIL, "overlay mount refused"), disturbances=[])
    assert verdict.status is Status.FAIL
    assert verdict.summary == "overlay mount refused"


class GoneCore:
    """A pod already deleted by someone else (an eviction that finished): reads are 404, its events remain."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def create_namespaced_pod_with_http_info(self, _namespace: str, _body: Any, **_kwargs: Any) -> Any:
        """Admitted."""
        return None, 201, {}

    def read_namespaced_pod(self, _name: str, _namespace: str, **_kwargs: Any) -> Any:
        """Gone."""
        raise ApiException(status=404, reason="Not Found")

    def list_namespaced_event(self, _namespace: str, **_kwargs: Any) -> Any:
        """The warning the eviction left."""
        event = SimpleNamespace(type="Warning", reason="Evicted", message="evicted by the API", last_timestamp="1")
        return SimpleNamespace(items=[event])

    def delete_namespaced_pod(self, name: str, _namespace: str, **_kwargs: Any) -> None:
        """Already gone."""
        self.deleted.append(name)
        raise ApiException(status=404, reason="Not Found")


def gone_context() -> tuple[ProbeContext, GoneCore]:
    core = GoneCore()
    connection: Any = SimpleNamespace(core=core, api_client=None)
    task = Task("docker-run", "docker-run", "", lambda _ctx: None)  # type: ignore[arg-type,return-value]
    return ProbeContext(task, connection, RunScope("ns", "r1"), Progress(), threading.Event()), core


def test_a_pod_that_vanished_before_the_probe_deleted_it_was_taken_from_it() -> None:
    context, core = gone_context()
    context.create_pod({"metadata": {"name": "dc-r1-docker-run-dind"}, "spec": {}})
    context.delete_pod("dc-r1-docker-run-dind")
    said = (
        "pod dc-r1-docker-run-dind was deleted while the probe used it (evicted, preempted or removed) "
        "(last warning Evicted: evicted by the API)"
    )
    assert context.disturbances == [said]
    assert core.deleted == ["dc-r1-docker-run-dind"]


def test_a_warning_unrelated_to_its_going_is_not_quoted() -> None:
    context, core = gone_context()
    unrelated = SimpleNamespace(type="Warning", reason="MissingClusterDNS", message="no DNS", last_timestamp="1")
    core.list_namespaced_event = lambda _ns, **_kw: SimpleNamespace(items=[unrelated])  # type: ignore[method-assign]
    context.create_pod({"metadata": {"name": "dc-r1-docker-run-dind"}, "spec": {}})
    context.delete_pod("dc-r1-docker-run-dind")
    assert context.disturbances == [
        "pod dc-r1-docker-run-dind was deleted while the probe used it (evicted, preempted or removed)"
    ]


def test_a_pod_the_probe_never_made_or_already_deleted_is_no_disturbance() -> None:
    context, _ = gone_context()
    context.delete_pod("dc-r1-docker-run-never-made")
    context.create_pod({"metadata": {"name": "dc-r1-docker-run-dind"}, "spec": {}})
    context.delete_pod("dc-r1-docker-run-dind")
    context.disturbances.clear()
    context.delete_pod("dc-r1-docker-run-dind")  # twice: the second time it is ours that is gone
    assert context.disturbances == []


def test_an_exec_the_kubelet_did_not_answer_names_the_kubelet() -> None:
    said = (
        "exec channel failed, nothing concluded: exec into p/job failed: Handshake status 500 Internal Server Error "
        "-+-+- {} -+-+- b'error dialing backend: dial tcp 10.88.0.1:10250: connect: connection refused'"
    )
    verdict = run_with(Outcome(Status.INCONCLUSIVE, said), disturbances=[])
    assert "the kubelet of node node-a did not answer (stopped, restarting or unreachable)" in verdict.summary


@pytest.mark.parametrize(
    ("said", "named"),
    [
        (
            (
                "exec channel failed, nothing concluded: exec failed: Internal error occurred: error sending request: "
                'Post "https://10.88.0.1:10250/exec/ns/p/dind?command=x": read tcp 10.88.0.1:55226->10.88.0.1:10250: '
                "read: connection reset by peer"
            ),
            "the kubelet of node node-a did not answer",
        ),
        (
            (
                "exec channel failed, nothing concluded: exec failed: Internal error occurred: unable to upgrade "
                'connection: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while '
                'dialing: dial unix /run/dindcheck-testbed/containerd.sock: connect: no such file or directory"'
            ),
            "the container runtime of node node-a did not answer (restarting or down)",
        ),
    ],
)
def test_an_exec_lost_to_the_kubelet_or_the_runtime_names_it(said: str, named: str) -> None:
    verdict = run_with(Outcome(Status.INCONCLUSIVE, said), disturbances=[])
    assert verdict.summary.startswith(f"the node disturbed the probe, nothing concluded: {named}")


def test_an_exec_error_of_the_command_itself_names_no_node_fault() -> None:
    said = "exec channel failed, nothing concluded: exec into p/job: no exit status within 75s"
    verdict = run_with(Outcome(Status.INCONCLUSIVE, said), disturbances=[])
    assert verdict.summary == said
