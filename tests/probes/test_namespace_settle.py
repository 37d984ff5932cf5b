"""Probes start only once admission sees the namespace as the run made it (its caches lag behind the API)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from kubernetes.client.rest import ApiException

from probes import workspace
from probes.workspace import Workspace

RELABELLED = Workspace("team-ci", "run1", created=False, pod_security="privileged", previous_pod_security="baseline")
NEW = Workspace("dindcheck-run1", "run1", created=True)
PSA_BASELINE = (
    'pods "dc-run1-namespace-check" is forbidden: violates PodSecurity "baseline:latest": privileged '
    '(container "check" must not set securityContext.privileged=true)'
)
NO_SERVICE_ACCOUNT = (
    'pods "dc-run1-namespace-check" is forbidden: error looking up service account dindcheck-run1/default: '
    'serviceaccount "default" not found'
)


class Admission:
    """Answers dry-run pod creates from a script: a refusal message, or None (admitted); the last answer repeats."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any], **kwargs: Any) -> None:
        """Refuse (403 with the message as a Status body) or admit."""
        self.asked.append((namespace, body, kwargs))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is not None:
            refusal = ApiException(status=403, reason="Forbidden")
            refusal.body = json.dumps({"kind": "Status", "message": answer})
            raise refusal


def settle(answers: Admission, space: Workspace, wait_s: float = 5.0) -> str | None:
    connection: Any = SimpleNamespace(core=answers)
    return workspace.settle(connection, space, wait_s=wait_s, poll_s=0.01)


def test_a_relabelled_namespace_is_waited_for_until_pod_security_enforces_the_new_level() -> None:
    answers = Admission(PSA_BASELINE, PSA_BASELINE, None)
    assert settle(answers, RELABELLED) is None
    assert len(answers.asked) == 3
    namespace, pod, kwargs = answers.asked[0]
    assert namespace == "team-ci"
    assert kwargs["dry_run"] == "All", "the check creates nothing"
    assert pod["spec"]["containers"][0]["securityContext"] == {"privileged": True}, "the level must decide"


def test_a_level_never_enforced_is_a_note_for_the_report() -> None:
    note = settle(Admission(PSA_BASELINE), RELABELLED, wait_s=0.1)
    assert note is not None
    assert "namespace team-ci" in note
    assert "Pod Security still enforces baseline, not privileged" in note


def test_a_stricter_level_is_enforced_once_a_privileged_pod_is_refused_in_its_words() -> None:
    restricted = Workspace("team-ci", "run1", created=False, pod_security="restricted", previous_pod_security=None)
    cited = PSA_BASELINE.replace("baseline:latest", "restricted:latest")
    answers = Admission(None, cited)
    assert settle(answers, restricted) is None
    assert len(answers.asked) == 2, "a privileged pod admitted under restricted is the old view"
    note = settle(Admission(None), restricted, wait_s=0.1)
    assert note is not None
    assert "still admits a privileged pod, not restricted" in note


def test_a_new_namespace_is_waited_for_until_its_service_account_exists() -> None:
    answers = Admission(NO_SERVICE_ACCOUNT, None)
    assert settle(answers, NEW) is None
    assert len(answers.asked) == 2
    assert "securityContext" not in answers.asked[0][1]["spec"]["containers"][0], "no level: a plain pod"
    note = settle(Admission(NO_SERVICE_ACCOUNT), NEW, wait_s=0.1)
    assert note is not None
    assert "default ServiceAccount is still missing" in note


def test_a_refusal_that_says_nothing_of_the_namespace_does_not_hold_the_run() -> None:
    policy = "ValidatingAdmissionPolicy 'no-privileged' with binding 'x' denied request: no"
    answers = Admission(policy)
    assert settle(answers, RELABELLED) is None
    assert len(answers.asked) == 1
