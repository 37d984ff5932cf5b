"""Who refused a pod, told apart from the API server's own messages (research/probe-facts.md section 1)."""

from __future__ import annotations

import json

import pytest

from probes import admission

PSA = (
    'pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged '
    '(container "dind" must not set securityContext.privileged=true)'
)
VAP = (
    "pods \"x\" is forbidden: ValidatingAdmissionPolicy 'deny-privileged' with binding 'deny-privileged' "
    "denied request: privileged containers are not allowed"
)
GATEKEEPER = (
    'admission webhook "validation.gatekeeper.sh" denied the request: [denied by psp-privileged] '
    "Privileged container is not allowed: dind"
)
KYVERNO = 'admission webhook "validate.kyverno.svc-fail" denied the request: policy disallow-privileged'
WARDEN = (
    "GKE Warden rejected the request because it violates one or more constraints [denied by autogke-disallow-privilege]"
)
SCC = 'pods "x" is forbidden: unable to validate against any security context constraint: [provider restricted-v2]'
RUNTIME_CLASS = 'pods "x" is forbidden: pod rejected: RuntimeClass "sysbox-runc" not found'
DRY_RUN = 'admission webhook "legacy.example.com" does not support dry run'
INVALID = (
    'Pod "x" is invalid: spec.containers[0].securityContext: Invalid value: '
    "cannot set allowPrivilegeEscalation to false and privileged to true"
)


@pytest.mark.parametrize(
    ("code", "message", "source"),
    [
        (403, PSA, admission.SOURCE_PSA),
        (403, VAP, admission.SOURCE_POLICY),
        (403, GATEKEEPER, admission.SOURCE_WEBHOOK),
        (400, KYVERNO, admission.SOURCE_WEBHOOK),
        (403, WARDEN, admission.SOURCE_GKE_WARDEN),
        (403, SCC, admission.SOURCE_SCC),
        (403, RUNTIME_CLASS, admission.SOURCE_RUNTIME_CLASS),
        (400, DRY_RUN, admission.SOURCE_DRY_RUN_UNSUPPORTED),
        (422, INVALID, admission.SOURCE_INVALID),
        (403, "something else entirely", admission.SOURCE_OTHER),
    ],
)
def test_classify_names_the_refuser(code: int, message: str, source: str) -> None:
    assert admission.classify(code, message) == source


def test_dry_run_unsupported_is_unknown_never_denied() -> None:
    body = json.dumps({"kind": "Status", "message": DRY_RUN, "code": 400})
    result = admission.rejection(400, body)
    assert result.admitted is None
    assert result.source == admission.SOURCE_DRY_RUN_UNSUPPORTED


def test_psa_rejection_is_a_denial_with_the_servers_message() -> None:
    body = json.dumps({"kind": "Status", "message": PSA, "code": 403}).encode()
    result = admission.rejection(403, body)
    assert result.admitted is False
    assert result.message == PSA


def test_server_errors_are_unknown() -> None:
    assert admission.rejection(503, "service unavailable").admitted is None


def test_non_json_body_is_kept_as_text() -> None:
    assert admission.message_from_body(b"plain text error\n") == "plain text error"


def test_warning_headers_are_unquoted() -> None:
    headers = {"Warning": '299 - "would violate PodSecurity \\"restricted:latest\\": privileged"'}
    assert admission.warnings_from_headers(headers) == ('would violate PodSecurity "restricted:latest": privileged',)


def test_no_warning_headers() -> None:
    assert admission.warnings_from_headers({}) == ()


QUOTA_LIMITS = 'pods "x" is forbidden: failed quota: q: must specify limits.cpu for: dind; limits.memory for: dind'
QUOTA_EXCEEDED = (
    'pods "x" is forbidden: exceeded quota: q, requested: limits.cpu=1, used: limits.cpu=8, limited: limits.cpu=8'
)
RBAC = (
    'pods is forbidden: User "system:serviceaccount:ci:dindcheck" cannot create resource "pods" in API group "" '
    'in the namespace "ci"'
)
LIMIT_RANGE = 'pods "x" is forbidden: maximum cpu usage per Container is 500m, but limit is 1'


@pytest.mark.parametrize(
    ("code", "message", "source"),
    [
        (403, QUOTA_LIMITS, admission.SOURCE_QUOTA),
        (403, QUOTA_EXCEEDED, admission.SOURCE_QUOTA),
        (403, RBAC, admission.SOURCE_RBAC),
        (403, LIMIT_RANGE, admission.SOURCE_LIMIT_RANGE),
        (429, "Too many requests, please try again later.", admission.SOURCE_THROTTLED),
    ],
)
def test_refusals_that_are_no_policy_leave_admission_unknown(code: int, message: str, source: str) -> None:
    """A quota, the run's RBAC or throttling say nothing about whether privileged pods are allowed."""
    answer = admission.rejection(code, json.dumps({"kind": "Status", "message": message}))
    assert answer.source == source
    assert answer.admitted is None


@pytest.mark.parametrize("message", [PSA, VAP, GATEKEEPER])
def test_policies_still_deny(message: str) -> None:
    assert admission.rejection(403, json.dumps({"message": message})).admitted is False


@pytest.mark.parametrize(
    "message",
    ["exceeded quota: q, requested: limits.cpu=1", "must specify limits.cpu for: dind"],
)
def test_quota_words_alone_are_enough(message: str) -> None:
    """Webhooks and older servers shorten the message: the quota's own words still name it."""
    answer = admission.rejection(403, json.dumps({"message": message}))
    assert (answer.source, answer.admitted) == (admission.SOURCE_QUOTA, None)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (0, ""),
        (500, "Internal error occurred: failed calling webhook"),
        (403, 'pods "x" is forbidden: unable to create new content in namespace ci because it is being terminated'),
        (404, 'namespaces "ci" not found'),
    ],
)
def test_no_answer_is_unknown_never_denied(code: int, message: str) -> None:
    assert admission.rejection(code, json.dumps({"message": message})).admitted is None


LIMIT_RATIO = (
    'pods "x" is forbidden: [cpu max limit to request ratio per Container is 4, but provided ratio is 20.000000]'
)


def test_a_limit_to_request_ratio_refusal_is_the_limit_range() -> None:
    answer = admission.rejection(403, json.dumps({"message": LIMIT_RATIO}))
    assert (answer.source, answer.admitted) == (admission.SOURCE_LIMIT_RANGE, None)


UNAUTHORIZED = "Unauthorized"
LIMIT_RANGE_DEFAULT_BELOW_REQUEST = (
    'Pod "x" is invalid: spec.containers[0].resources.requests: Invalid value: "1": must be less than or equal to '
    "cpu limit of 500m"
)
UNKNOWN_FORBIDDEN = 'pods "x" is forbidden: no new pods on Fridays'


@pytest.mark.parametrize(
    ("code", "message", "source"),
    [
        (401, UNAUTHORIZED, admission.SOURCE_UNAUTHENTICATED),
        (422, LIMIT_RANGE_DEFAULT_BELOW_REQUEST, admission.SOURCE_INVALID),
        (422, INVALID, admission.SOURCE_INVALID),
        (403, UNKNOWN_FORBIDDEN, admission.SOURCE_OTHER),
        (400, "the server rejected our request for an unknown reason", admission.SOURCE_OTHER),
        (409, 'pods "x" already exists', admission.SOURCE_OTHER),
    ],
)
def test_a_4xx_that_no_policy_gave_is_unknown_with_the_servers_words(code: int, message: str, source: str) -> None:
    """An expired token, a 422 from requests above a LimitRange's limit, words no rule knows: no policy answered."""
    answer = admission.rejection(code, json.dumps({"kind": "Status", "message": message, "code": code}))
    assert (answer.source, answer.admitted) == (source, None)
    assert answer.message == message
    assert answer.code == code


@pytest.mark.parametrize(
    ("code", "message"),
    [(403, PSA), (403, VAP), (422, VAP), (403, GATEKEEPER), (400, KYVERNO), (403, WARDEN), (403, SCC)],
)
def test_every_recognised_policy_is_a_denial(code: int, message: str) -> None:
    assert admission.rejection(code, json.dumps({"message": message})).admitted is False


def test_a_missing_runtime_class_is_an_answer_about_the_mode() -> None:
    """The sysbox spec names a RuntimeClass the cluster does not have: that mode's pod is refused, not unknown."""
    answer = admission.rejection(403, json.dumps({"message": RUNTIME_CLASS}))
    assert (answer.source, answer.admitted) == (admission.SOURCE_RUNTIME_CLASS, False)


def test_a_policys_words_behind_a_server_error_are_no_answer() -> None:
    """A 5xx is the server failing, whatever its text quotes."""
    assert admission.rejection(500, json.dumps({"message": GATEKEEPER})).admitted is None
