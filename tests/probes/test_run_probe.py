"""run_probe turns whatever a probe raised into a verdict that claims nothing it did not prove."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from kubernetes.client.rest import ApiException

from probes import admission, api
from probes.engine import Outcome, ProbeContext, RunScope, Task, refusal, run_probe
from probes.exceptions import (
    AdmissionRejectedError,
    CancelledError,
    ExecChannelError,
    PodNotRunningError,
    ProbeError,
)
from probes.model import Facts, Mode, ModeBlock, Placement, Status, TestedSpec


class QuietContext:
    """run_probe only tells the terminal it is done and reads which nodes the probe's pods ran on."""

    def __init__(self, nodes: set[str] | None = None, disturbances: list[str] | None = None) -> None:
        self.said: list[str] = []
        self.nodes = nodes or set()
        self.disturbances = disturbances or []
        self.unready: list[str] = []
        self.channels_lost: list[str] = []
        self.health = api.ApiHealth()
        self.scope = RunScope("dindcheck-r1", "r1", image_pull_secret="mirror-pull")  # noqa: S106 - a Secret's name

    def say(self, message: str) -> None:
        """Remember what the probe said."""
        self.said.append(message)

    def unready_nodes(self) -> list[str]:
        """The probe's nodes that are not Ready (none unless a test says so)."""
        return self.unready


def run(work: Callable[[Any], Outcome]) -> Any:
    task = Task("probe-x", "probe-x", "do the thing", work)
    context: Any = QuietContext()
    verdict = run_probe(task, context)
    assert context.said == ["done"]
    return verdict


def raising(error: BaseException) -> Callable[[ProbeContext], Outcome]:
    def work(_context: ProbeContext) -> Outcome:
        raise error

    return work


@pytest.mark.parametrize(
    ("error", "status", "cause"),
    [
        (
            PodNotRunningError("pod p is not running: ErrImagePull: x", reason="ErrImagePull: x", phase="Pending"),
            "inconclusive",
            "ErrImagePull",
        ),
        (CancelledError("run cancelled"), "inconclusive", "cancelled"),
        (ExecChannelError("exec into p/job failed: Handshake status 403"), "inconclusive", "Handshake status 403"),
        (ProbeError("overlay script did not run"), "inconclusive", "overlay script did not run"),
        (ApiException(status=500, reason="Internal Server Error"), "inconclusive", "API error 500"),
        (urllib3.exceptions.ProtocolError("connection reset"), "inconclusive", "API connection failed"),
        (
            AdmissionRejectedError("violates PodSecurity", source="pod-security-admission", code=403, decided=False),
            "skipped",
            "rejected by pod-security-admission",
        ),
        (
            AdmissionRejectedError("exceeded quota: q", source="resource-quota", code=403, decided=None),
            "inconclusive",
            "rejected by resource-quota",
        ),
    ],
)
def test_errors_become_verdicts_with_their_cause(error: BaseException, status: str, cause: str) -> None:
    verdict = run(raising(error))
    assert verdict.status.value == status
    assert cause in verdict.summary
    assert verdict.remediation == "do the thing"


def test_an_exec_channel_failure_is_never_a_fail() -> None:
    """The old path read a broken `kubectl exec` as 'dockerd never answered' (fail): now it proves nothing."""
    verdict = run(raising(ExecChannelError("exec into p/job: no exit status within 105s")))
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.evidence["exec"] == "exec into p/job: no exit status within 105s"


def test_a_bug_is_inconclusive_with_the_traceback_never_a_pass() -> None:
    verdict = run(raising(KeyError("oops")))
    assert verdict.status is Status.INCONCLUSIVE
    assert "internal error" in verdict.summary
    assert "KeyError" in verdict.evidence["internal_error"]


def test_outcome_and_facts_are_carried_into_the_verdict() -> None:
    facts = Facts(blocks=(ModeBlock(Mode.BUILDKIT_ROOTLESS, "user namespaces off"),))

    def work(_context: ProbeContext) -> Outcome:
        return Outcome(Status.FAIL, "blocked", {"k": "v"}, remediation="enable userns", facts=facts)

    verdict = run(work)
    assert (verdict.status, verdict.summary, verdict.evidence, verdict.remediation) == (
        Status.FAIL,
        "blocked",
        {"k": "v"},
        "enable userns",
    )
    assert verdict.facts == facts
    assert verdict.duration_s >= 0


def api_error(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="Forbidden")
    error.body = json.dumps({"kind": "Status", "message": message, "code": status})
    return error


def test_an_api_error_names_the_servers_own_message() -> None:
    verdict = run(raising(api_error(403, 'nodes is forbidden: User "x" cannot list resource "nodes"')))
    assert verdict.status is Status.INCONCLUSIVE
    assert 'API error 403: nodes is forbidden: User "x" cannot list resource "nodes"' in verdict.summary
    assert verdict.evidence == {"api_status": 403}


def test_a_dropped_connection_is_inconclusive() -> None:
    verdict = run(raising(ConnectionResetError(104, "Connection reset by peer")))
    assert verdict.status is Status.INCONCLUSIVE
    assert "Connection reset by peer" in verdict.summary


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        (403, 'pods "p" is forbidden: exceeded quota: q, requested: limits.cpu=1', Status.INCONCLUSIVE),
        (403, 'pods "p" is forbidden: failed quota: q: must specify limits.cpu for: dind', Status.INCONCLUSIVE),
        (429, "Too many requests, please try again later.", Status.INCONCLUSIVE),
        (
            403,
            (
                'pods is forbidden: User "system:serviceaccount:x:y" cannot create resource "pods" in API group "" '
                'in the namespace "z"'
            ),
            Status.INCONCLUSIVE,
        ),
        (403, 'pods "p" is forbidden: violates PodSecurity "baseline:latest": privileged', Status.SKIPPED),
    ],
)
def test_a_refused_create_skips_only_when_a_policy_refused(code: int, message: str, status: Status) -> None:
    """From the server's answer to the verdict, as create_pod raises it: a quota or RBAC refusal decides nothing."""
    answer = admission.rejection(code, json.dumps({"kind": "Status", "message": message}))
    verdict = run(raising(refusal(answer)))
    assert verdict.status is status
    assert message in verdict.summary
    assert verdict.evidence["admission"]["source"] == answer.source


def test_a_pod_that_never_ran_keeps_the_kubelets_last_word() -> None:
    error = PodNotRunningError(
        "pod p not running after 60s (Pending: FailedMount: timed out)",
        reason="FailedMount: timed out",
        phase="Pending",
        event_reason="FailedMount",
        event_message="timed out waiting for the condition",
    )
    verdict = run(raising(error))
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.evidence["pod"]["event"] == {
        "reason": "FailedMount",
        "message": "timed out waiting for the condition",
    }


def test_the_verdict_names_the_nodes_and_the_pasted_specs_carry_the_probe_pods_fields_and_the_pool_placement() -> None:
    """What ran is pasted: the probe pod's pod fields, except the run's own deadline and grace (said in a note)."""
    tested = TestedSpec(Mode.KANIKO, "kaniko", {"containers": [{"name": "kaniko"}]}, proven=True)
    paste = Placement(
        node_selector={"dindcheck.io/pool": "ci"}, tolerations=({"key": "dedicated", "operator": "Exists"},)
    )

    def work(_context: ProbeContext) -> Outcome:
        return Outcome(Status.PASS, "built", {"k": "v"}, facts=Facts(specs=(tested,)))

    task = Task("kaniko", "kaniko", "", work, target="ci", paste_placement=paste)
    verdict = run_probe(task, QuietContext(nodes={"node-ci"}))  # type: ignore[arg-type]
    assert verdict.evidence == {"k": "v", "node": "node-ci"}
    (pasted,) = verdict.facts.specs
    assert pasted.spec == {
        "containers": [{"name": "kaniko"}],
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "imagePullSecrets": [{"name": "mirror-pull"}],
        "nodeSelector": {"dindcheck.io/pool": "ci"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
    }
    assert pasted.check == "kaniko"
    (note,) = pasted.notes
    assert "activeDeadlineSeconds 720" in note
    assert "terminationGracePeriodSeconds 1" in note
    assert tested.spec == {"containers": [{"name": "kaniko"}]}  # the probe's own record is untouched
    assert task.key == "ci/kaniko"


def test_the_verdict_records_every_node_its_pods_ran_on_for_the_same_node_rule() -> None:
    def work(_context: ProbeContext) -> Outcome:
        return Outcome(Status.PASS, "shared")

    verdict = run_probe(Task("socket-sharing", "s", "", work), QuietContext(nodes={"node-b", "node-a"}))  # type: ignore[arg-type]
    assert verdict.nodes == ("node-a", "node-b")
    assert verdict.evidence["node"] == "node-a, node-b"
