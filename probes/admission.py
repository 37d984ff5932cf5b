"""Telling apart who refused a pod: PSA, a policy, a webhook, a missing RuntimeClass, or no policy at all.

No policy at all: a ResourceQuota, a LimitRange, API throttling, the run's own RBAC or credentials, dry-run
unsupported, an invalid spec (422), or any refusal whose words no rule here recognises.

The messages are the API server's own (docs/probe-facts.md, "Privileged admission"); this module only names their
source so the report can say "rejected by Pod Security Admission" instead of "403". Only a recognised policy's
refusal is an answer about a mode (admitted False); every other refusal leaves admission unknown (admitted None), so
the check is inconclusive with the server's words instead of blaming a policy that may not exist.
"""

from __future__ import annotations

import json
import re

from probes.model import Admission

SOURCE_PSA = "pod-security-admission"
SOURCE_POLICY = "validating-admission-policy"
SOURCE_WEBHOOK = "admission-webhook"
SOURCE_RUNTIME_CLASS = "runtime-class"
SOURCE_SCC = "openshift-scc"
SOURCE_GKE_WARDEN = "gke-warden"
SOURCE_INVALID = "invalid-spec"
SOURCE_DRY_RUN_UNSUPPORTED = "dry-run-unsupported"
SOURCE_NAMESPACE = "namespace"
SOURCE_QUOTA = "resource-quota"
SOURCE_LIMIT_RANGE = "limit-range"
SOURCE_THROTTLED = "api-throttling"
SOURCE_RBAC = "rbac"
SOURCE_UNAUTHENTICATED = "authentication"
SOURCE_OTHER = "other"

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (SOURCE_DRY_RUN_UNSUPPORTED, re.compile(r"does not support dry run|dry ?run.*not supported", re.IGNORECASE)),
    (SOURCE_PSA, re.compile(r"violates PodSecurity")),
    (SOURCE_POLICY, re.compile(r"ValidatingAdmissionPolicy")),
    (SOURCE_GKE_WARDEN, re.compile(r"GKE Warden")),
    (SOURCE_SCC, re.compile(r"security context constraint", re.IGNORECASE)),
    (SOURCE_RUNTIME_CLASS, re.compile(r"RuntimeClass \"[^\"]+\" not found")),
    (SOURCE_QUOTA, re.compile(r"exceeded quota|must specify (limits|requests)|failed quota", re.IGNORECASE)),
    (
        SOURCE_LIMIT_RANGE,
        re.compile(r"(maximum|minimum) \w+ usage per (Container|Pod)|max limit to request ratio per", re.IGNORECASE),
    ),
    (SOURCE_RBAC, re.compile(r"cannot (create|get|list|delete|patch) resource", re.IGNORECASE)),
    (SOURCE_WEBHOOK, re.compile(r"admission webhook \"[^\"]+\" denied")),
    (SOURCE_NAMESPACE, re.compile(r"because it is being terminated|namespaces \"[^\"]+\" not found")),
)

# The only refusals that answer whether a mode's spec is allowed: a policy (or the runtime a mode names) said no.
# Anything else (a quota, a LimitRange, RBAC, a 401, a 422, words no rule knows) leaves the answer unknown.
POLICY_SOURCES = frozenset(
    {
        SOURCE_PSA,
        SOURCE_POLICY,
        SOURCE_WEBHOOK,
        SOURCE_GKE_WARDEN,
        SOURCE_SCC,
        SOURCE_RUNTIME_CLASS,
    }
)


def classify(code: int, message: str) -> str:
    """Name who refused the request, from the status code and the server's message."""
    if code == 429:
        return SOURCE_THROTTLED
    if code == 401:
        return SOURCE_UNAUTHENTICATED
    for source, pattern in _RULES:
        if pattern.search(message):
            return source
    if code == 422:
        return SOURCE_INVALID
    return SOURCE_OTHER


def message_from_body(body: str | bytes | None) -> str:
    """The human message of a Kubernetes Status body (falls back to the raw text)."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        status = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return text.strip()


def rejection(code: int, body: str | bytes | None) -> Admission:
    """An Admission for a refused request; only a recognised policy's refusal is 'denied', the rest unknown (None)."""
    message = message_from_body(body)
    source = classify(code, message)
    denied = source in POLICY_SOURCES and 400 <= code < 500
    return Admission(admitted=False if denied else None, code=code, source=source, message=message)


def warnings_from_headers(headers: object) -> tuple[str, ...]:
    """Warning headers ('299 - "text"') as plain texts; admission webhooks and PSA 'warn' mode use them."""
    values: list[str] = []
    getter = getattr(headers, "getlist", None) or getattr(headers, "get_all", None)
    if callable(getter):
        values = [str(v) for v in (getter("Warning") or [])]
    elif isinstance(headers, dict):
        raw = headers.get("Warning") or headers.get("warning")
        values = [raw] if isinstance(raw, str) else list(raw or [])
    texts: list[str] = []
    for value in values:
        texts.extend(
            match.group(1).replace('\\"', '"') for match in re.finditer(r'\d{3} [^ ]+ "((?:[^"\\]|\\.)*)"', value)
        )
        if not texts and value:
            texts.append(value)
    return tuple(texts)
