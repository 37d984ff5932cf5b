"""Reading a pushed manifest back from a registry (the Distribution API), to prove the push really landed."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.rest import ApiException

from probes.api import API_TIMEOUT_S, NOT_PROCESSED, api_call
from probes.engine import Outcome, ProbeContext, compact
from probes.exceptions import AdmissionRejectedError
from probes.model import Status
from probes.settings import ProbeSettings

REGISTRY_PORT = 5000
LOCAL_REGISTRY = f"localhost:{REGISTRY_PORT}"
"""Builders speak plain HTTP to a localhost registry by default: the throwaway registry lives in the probe pod."""

# Shell functions for the builder probes. base_rootfs DIR: a base image's context made here (the container's own
# /bin/sh and the libraries it loads, nothing pulled from elsewhere). probe_dockerfile DIR BASE RUN_ID: a Dockerfile
# FROM that base with a RUN step, so the builder pulls it and runs a step in it.
BUILD_CONTEXTS = r"""
base_rootfs() {
  mkdir -p "$1/rootfs/bin"; sh_bin=$(readlink -f /bin/sh); cp "$sh_bin" "$1/rootfs/bin/sh"
  for lib in $(ldd "$sh_bin" 2>/dev/null | grep -o '/[^ ]*') /lib/ld-musl-*.so.1; do
    if [ -e "$lib" ]; then mkdir -p "$1/rootfs$(dirname "$lib")"; cp "$lib" "$1/rootfs$lib"; fi
  done
  printf 'FROM scratch\nCOPY rootfs/ /\n' > "$1/Dockerfile"
}
probe_dockerfile() {
  mkdir -p "$1"
  printf 'FROM %s\nRUN echo "built by dindcheck %s" > /built && test -s /built\n' "$2" "$3" > "$1/Dockerfile"
}
"""

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"
)


@dataclass(frozen=True)
class ManifestReadback:
    """What the registry answered for the pushed tag."""

    ok: bool
    """A manifest came back (a 2xx whose body is no manifest is not ok)."""
    via: str
    digest: str = ""
    media_type: str = ""
    error: str = ""
    not_found: bool = False
    """The registry answered 404: the pushed manifest is not there (a failed push, not an unreachable registry)."""
    digest_from: str = ""
    """'Docker-Content-Digest' (the registry's header) or 'body' (sha256 of the manifest bytes it served)."""

    def to_evidence(self) -> dict[str, object]:
        """Evidence form."""
        return {
            "ok": self.ok,
            "via": self.via,
            "digest": self.digest,
            "media_type": self.media_type,
            "error": self.error,
            "not_found": self.not_found,
            "digest_from": self.digest_from,
        }


def manifest_answer(via: str, body: bytes, header_digest: str) -> ManifestReadback:
    """A registry's 2xx answer: a manifest, and its digest (the registry's header, else computed from the bytes)."""
    text = body.decode("utf-8", "replace")
    media_type = _media_type(text)
    if not media_type:
        return ManifestReadback(False, via, error=f"the registry answered, but with no manifest: {text[:200]}")
    if header_digest:
        return ManifestReadback(True, via, header_digest, media_type, digest_from="Docker-Content-Digest")
    return ManifestReadback(True, via, f"sha256:{hashlib.sha256(body).hexdigest()}", media_type, digest_from="body")


def split_reference(ref: str) -> tuple[str, str, str]:
    """'host:5000/a/b:tag' -> ('host:5000', 'a/b', 'tag')."""
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    return host, repo, tag


def bearer_challenge(header: str) -> dict[str, str]:
    """Parse 'Bearer realm="...",service="...",scope="..."' into its parameters ({} when not Bearer)."""
    if not header.lower().startswith("bearer "):
        return {}
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def via_pod_proxy(ctx: ProbeContext, pod_name: str, port: int, repo: str, tag: str) -> ManifestReadback:
    """Ask a registry pod through the API server's pod proxy (works where pod IPs are not routable from here).

    The raw response is read (_preload_content=False): the client would otherwise turn the JSON into a repr.
    """
    via = "api-server pod proxy"
    try:
        # an API server away (refused connection) or throttling is waited out; the proxy's own answers are not
        response = api_call(
            ctx.core.connect_get_namespaced_pod_proxy_with_path,
            f"{pod_name}:{port}",
            ctx.scope.namespace,
            f"v2/{repo}/manifests/{tag}",
            retried=NOT_PROCESSED,
            timeout_s=API_TIMEOUT_S,
            _headers={"Accept": MANIFEST_TYPES},
            _preload_content=False,
        )
    except ApiException as exc:
        return ManifestReadback(False, via, error=f"{exc.status} {exc.reason}: {exc.body}", not_found=exc.status == 404)
    return manifest_answer(via, bytes(response.data), str(response.headers.get("Docker-Content-Digest", "")))


def via_http(ref: str, *, insecure: bool, docker_config: dict[str, object] | None) -> ManifestReadback:
    """GET the manifest straight from this machine, with basic or bearer auth from a docker config.json."""
    host, repo, tag = split_reference(ref)
    scheme = "http" if insecure else "https"
    url = f"{scheme}://{host}/v2/{repo}/manifests/{tag}"
    auth = _basic_auth(host, docker_config)
    context = ssl.create_default_context()
    headers = {"Accept": MANIFEST_TYPES}
    try:
        return _get_manifest(url, headers, auth, context)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return ManifestReadback(False, f"{scheme} from this machine", error=str(getattr(exc, "reason", exc)))


def _get_manifest(url: str, headers: dict[str, str], auth: str | None, context: ssl.SSLContext) -> ManifestReadback:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme is http(s) by construction
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT_S, context=context) as response:  # noqa: S310
            return _http_answer(response)
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            return ManifestReadback(
                False, "http from this machine", error=f"{exc.code} {exc.reason}", not_found=exc.code == 404
            )
        challenge = bearer_challenge(exc.headers.get("WWW-Authenticate", ""))
    if not challenge:
        if auth is None:
            return ManifestReadback(False, "http from this machine", error="401: registry wants credentials")
        retry = urllib.request.Request(url, headers={**headers, "Authorization": f"Basic {auth}"})  # noqa: S310
    else:
        token = _bearer_token(challenge, auth, context)
        retry = urllib.request.Request(url, headers={**headers, "Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(retry, timeout=API_TIMEOUT_S, context=context) as response:  # noqa: S310
        return _http_answer(response)


def _http_answer(response: Any) -> ManifestReadback:
    return manifest_answer("http from this machine", response.read(), response.headers.get("Docker-Content-Digest", ""))


def _bearer_token(challenge: dict[str, str], auth: str | None, context: ssl.SSLContext) -> str:
    query = urllib.parse.urlencode({k: v for k, v in challenge.items() if k in ("service", "scope")})
    request = urllib.request.Request(f"{challenge['realm']}?{query}")  # noqa: S310
    if auth:
        request.add_header("Authorization", f"Basic {auth}")
    with urllib.request.urlopen(request, timeout=API_TIMEOUT_S, context=context) as response:  # noqa: S310
        answer = json.loads(response.read())
    return str(answer.get("token") or answer.get("access_token") or "")


def _basic_auth(host: str, docker_config: dict[str, object] | None) -> str | None:
    auths = (docker_config or {}).get("auths")
    if not isinstance(auths, dict):
        return None
    entry = auths.get(host) or auths.get(f"https://{host}") or auths.get(f"http://{host}")
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        return str(entry["auth"])
    if entry.get("username"):
        return base64.b64encode(f"{entry['username']}:{entry.get('password', '')}".encode()).decode()
    return None


def _media_type(body: object) -> str:
    try:
        parsed = json.loads(body) if isinstance(body, str | bytes) else body
    except ValueError:
        return ""
    if isinstance(parsed, dict):
        return str(parsed.get("mediaType") or ("oci-manifest" if parsed.get("schemaVersion") == 2 else ""))
    return ""


# Texts of a registry that could not be used (unreachable, refused credentials, TLS): the builder was not at fault.
PUSH_PROBLEMS = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "unauthorized",
    "requested access to the resource is denied",
    "insufficient_scope",
    "failed to do request",
    "server gave http response to https client",
    "x509",
)
REGISTRY_REFUSED = re.compile(
    r"\b40[13]\s+(unauthorized|forbidden)\b|\bstatus(\s+code)?\s*[:=]?\s*40[13]\b", re.IGNORECASE
)
"""A 401 or 403 as the registry's HTTP status ('403 Forbidden', 'unexpected status code 401'), not any '401' in a
digest, a path or a line number."""


def is_push_problem(error: str) -> bool:
    """The registry's reachability or credentials failed, not the builder: the proof could not be made."""
    return any(marker in error.lower() for marker in PUSH_PROBLEMS) or bool(REGISTRY_REFUSED.search(error))


REGISTRY_UID = 65534
"""nobody: the registry needs no root (its storage is an emptyDir, world-writable; its port is above 1024)."""


REGISTRY_CONTAINER = "registry"


def registry_container(settings: ProbeSettings) -> dict[str, Any]:
    """The throwaway registry as a container of the probe pod, on REGISTRY_PORT, storage on an emptyDir.

    Locked down as far as Pod Security restricted goes, so that a policy which admits the tested builder's spec
    (runAsNonRoot, no root users, dropped capabilities) admits the probe pod too: the helper must never be the
    reason a builder looks refused.
    """
    return {
        "name": REGISTRY_CONTAINER,
        "image": settings.images.registry,
        "ports": [{"containerPort": REGISTRY_PORT}],
        "volumeMounts": [{"name": "registry-data", "mountPath": "/var/lib/registry"}],
        "resources": settings.resources.to_spec(),
        "securityContext": {
            "runAsUser": REGISTRY_UID,
            "runAsGroup": REGISTRY_UID,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def refused_outcome(
    ctx: ProbeContext, builder: str, spec: dict[str, Any], exc: AdmissionRejectedError, evidence: dict[str, Any]
) -> Outcome:
    """The probe pod was refused: judge the builder by its own spec, dry-run alone, not by the probe's helpers.

    The probe pod adds helper containers (the throwaway registry, context writers) to the spec users paste. A policy
    may refuse one of those while admitting the builder: that proves nothing about the builder.
    """
    evidence["admission"] = exc.evidence()
    if exc.decided is None:
        return Outcome(Status.INCONCLUSIVE, f"the {builder} pod was {exc.describe()}", evidence)
    alone = ctx.dry_run(ctx.pod_manifest("dry", spec))
    evidence["admission_of_the_tested_spec"] = alone.to_json()
    if alone.admitted is False:
        return Outcome(Status.FAIL, f"the {builder} pod was rejected by {alone.source}: {alone.message}", evidence)
    if alone.admitted is None:
        return Outcome(
            Status.INCONCLUSIVE,
            f"the {builder} probe pod was {exc.describe()}; a dry-run of the {builder} spec alone gave no answer "
            f"({alone.source}: {alone.message}), so whose refusal it was is unknown",
            evidence,
        )
    return Outcome(
        Status.INCONCLUSIVE,
        f"the {builder} spec alone is admitted, but the probe's helper containers were {exc.describe()}",
        evidence,
        remediation="Pass --registry (and --registry-secret) so that the probe pod needs no throwaway registry "
        f"container, or let the policy admit it (it runs as uid {REGISTRY_UID}, no capabilities, RuntimeDefault "
        "seccomp).",
    )


def push_problem_outcome(what: str, error: str, evidence: dict[str, Any], *, builder: str) -> Outcome:
    """The registry stopped the proof (unreachable, credentials, TLS): inconclusive, never the builder's failure."""
    return Outcome(
        Status.INCONCLUSIVE,
        f"{what}: the registry was not usable: {compact(error, 240)}; the registry's reachability or credentials, "
        f"not {builder}, stopped the proof",
        evidence,
        remediation="Check --registry (address, port, http vs https: --registry-insecure) and --registry-secret, "
        "and that pods may reach it (NetworkPolicy, egress).",
    )


def step_failed(
    what: str,
    text: str,
    evidence: dict[str, Any],
    *,
    classify: Callable[[str], str],
    builder: str,
    exit_code: int | None = None,
) -> Outcome:
    """A build step failed: its named cause, the registry that stopped it (inconclusive), else its own words."""
    cause = classify(text)
    if cause:
        return Outcome(Status.FAIL, f"{what} failed: {cause} ({compact(text, 240)})", evidence)
    if is_push_problem(text):
        return push_problem_outcome(what, text, evidence, builder=builder)
    exited = "" if exit_code is None else f" (exit {exit_code})"
    return Outcome(Status.FAIL, f"{what} failed{exited}: {compact(text, 300)}", evidence)


def readback_verdict(built: Outcome, readback: ManifestReadback, evidence: dict[str, Any], *, builder: str) -> Outcome:
    """The push is proven only when the registry serves a manifest whose digest is the one the builder pushed.

    A 2xx alone is no proof (a proxy's page, a stale tag): the digest must be the registry's header or the sha256 of
    the manifest it served, and it must be the one the builder reported.
    """
    pushed = str(evidence.get("digest", ""))
    if readback.not_found:
        return Outcome(Status.FAIL, f"the registry has no manifest for {evidence['image']}: {readback.error}", evidence)
    if not readback.ok:
        return Outcome(
            Status.INCONCLUSIVE,
            f"built and pushed, but the manifest could not be read back ({readback.via}: {readback.error})",
            evidence,
        )
    if not pushed or not readback.digest:
        missing = f"{builder} reported no digest" if not pushed else "the registry gave no digest"
        return Outcome(
            Status.INCONCLUSIVE,
            f"built and pushed, and the registry serves {readback.digest or 'a manifest'} for {evidence['image']}, "
            f"but {missing} to compare: the push is not proven",
            evidence,
        )
    if readback.digest != pushed:
        return Outcome(
            Status.FAIL,
            f"the registry serves {readback.digest} ({readback.digest_from}) for {evidence['image']}, {builder} "
            f"pushed {pushed}",
            evidence,
        )
    return Outcome(
        Status.PASS,
        f"{built.summary}; manifest {pushed} read back via {readback.via}",
        evidence,
        remediation="",
    )


def read_back(
    ctx: ProbeContext, settings: ProbeSettings, ref: str, pod_name: str, port: int, insecure: bool
) -> ManifestReadback:
    """The pushed manifest: from the probe pod's throwaway registry, or from --registry over HTTP(S)."""
    _, repo, tag = split_reference(ref)
    if not settings.registry:
        return via_pod_proxy(ctx, pod_name, port, repo, tag)
    return via_http(ref, insecure=insecure, docker_config=_docker_config(ctx, settings))


def _docker_config(ctx: ProbeContext, settings: ProbeSettings) -> dict[str, object] | None:
    if not settings.registry_secret:
        return None
    secret = ctx.core.read_namespaced_secret(settings.registry_secret, ctx.scope.namespace)
    raw = (secret.data or {}).get(".dockerconfigjson")
    if not raw:
        return None
    parsed = json.loads(base64.b64decode(raw))
    return parsed if isinstance(parsed, dict) else None
