"""Rootless BuildKit: does buildkitd with the reference securityContext build and push, without privileged?

The pod is BuildKit's own rootless example. It builds a FROM-scratch Dockerfile (no base image to pull), pushes
it to --registry or to a throwaway registry pod the run starts, and the pushed manifest is read back.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from probes import specs
from probes.definitions import _registry
from probes.engine import Outcome, ProbeContext, ProbeDefinition, compact, key_values
from probes.exceptions import AdmissionRejectedError, PodNotRunningError
from probes.model import Status

REMEDIATION = (
    "Rootless BuildKit needs: seccompProfile and appArmorProfile Unconfined (so PSA 'baseline' rejects it: label "
    "the namespace privileged or exempt it), user namespaces enabled on the node (user.max_user_namespaces > 0, "
    "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04+), allowPrivilegeEscalation not false "
    "(newuidmap is setuid), --oci-worker-no-process-sandbox, and its state dir on an emptyDir."
)

REGISTRY_PORT = 5000

# Known failure texts (research/probe-facts.md section 5) -> the cause a person can act on.
FAILURE_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("max_user_namespaces", "no space left on device"),
        (
            "user namespaces are disabled on the node "
            "(creating one fails with ENOSPC, as under user.max_user_namespaces=0)"
        ),
    ),
    (
        ("apparmor_restrict_unprivileged_userns",),
        "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)",
    ),
    (
        ("newuidmap", "could not set caps"),
        "newuidmap cannot gain its capabilities (allowPrivilegeEscalation: false or no_new_privs)",
    ),
    (("write to uid_map failed",), "cannot map uids: already inside a user namespace without room"),
    (("failed to share mount point",), "AppArmor confines the container (needs appArmorProfile Unconfined)"),
    (
        ("fork/exec /proc/self/exe: operation not permitted",),
        "seccomp or AppArmor forbids creating user namespaces (needs Unconfined profiles)",
    ),
    (
        ("mount proc:/proc", "operation not permitted"),
        "/proc is masked: run buildkitd with --oci-worker-no-process-sandbox",
    ),
)


def classify_failure(text: str) -> str:
    """Name the cause of a rootless BuildKit failure from its log, or '' when it is not a known one."""
    lowered = text.lower()
    for needles, cause in FAILURE_CAUSES:
        if any(needle.lower() in lowered for needle in needles):
            return cause
    return ""


BUILD_AND_PUSH = r"""
i=0
until buildctl debug workers >/dev/null 2>&1; do
  i=$((i+1))
  if [ "$i" -ge 120 ]; then
    echo "buildkitd=unreachable"
    echo "buildkitd_error=$(buildctl debug workers 2>&1 | tail -n 3 | tr '\n' ' ')"; exit 0
  fi
  sleep 0.5
done
echo "buildkitd=ok"
echo "snapshotter=$(buildctl debug workers -v 2>/dev/null \
  | grep -o 'org.mobyproject.buildkit.worker.snapshotter:[^ ]*' | head -n 1 | cut -d: -f2)"
d=$(mktemp -d); cd "$d" || exit 1
printf 'FROM scratch\nCOPY hello /hello\n' > Dockerfile; echo "dindcheck $REF" > hello
if buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. \
    --output "type=image,name=$REF,push=true$INSECURE" --metadata-file meta.json > build.log 2>&1; then
  echo "build_push=ok"
else
  echo "build_push=failed"; echo "build_error=$(grep -iE 'error|fail' build.log | tail -n 3 | tr '\n' ' ')"
fi
echo "digest=$(tr -d ' \n' < meta.json 2>/dev/null \
  | grep -o '"containerimage.digest":"sha256:[0-9a-f]*"' | cut -d'"' -f4)"
"""


def run(ctx: ProbeContext) -> Outcome:
    """The BuildKit pod first (its admission is the verdict), then the registry, then build, push, read back."""
    evidence: dict[str, Any] = {}
    spec = specs.buildkit_pod_spec(ctx.settings.images.buildkit, registry_secret=ctx.settings.registry_secret)
    manifest = ctx.pod_manifest("buildkitd", spec)
    name = manifest["metadata"]["name"]
    ctx.say("creating the rootless BuildKit pod")
    try:
        ctx.create_pod(manifest)
    except AdmissionRejectedError as exc:
        evidence["admission"] = exc.evidence()
        return Outcome(Status.FAIL, f"the rootless BuildKit pod was {exc.describe()}", evidence)
    registry_pod = None
    try:
        if ctx.settings.registry:
            registry = ctx.settings.registry.rstrip("/")
            insecure = ctx.settings.registry_insecure
            evidence["registry"] = {"address": registry, "kind": "user"}
        else:
            registry_manifest = ctx.pod_manifest("registry", _registry_pod_spec(ctx.settings.images.registry))
            registry_pod = registry_manifest["metadata"]["name"]
            ctx.say("starting a throwaway registry pod")
            ctx.create_pod(registry_manifest)
            pod = ctx.wait_running(registry_pod)
            registry = f"{pod.status.pod_ip}:{REGISTRY_PORT}"
            insecure = True
            evidence["registry"] = {"address": registry, "kind": "throwaway pod", "pod": registry_pod}
        return _build(ctx, name, registry, insecure, registry_pod, evidence)
    finally:
        ctx.delete_pod(name)
        if registry_pod is not None:
            ctx.delete_pod(registry_pod)


def _build(
    ctx: ProbeContext, name: str, registry: str, insecure: bool, registry_pod: str | None, evidence: dict[str, Any]
) -> Outcome:
    try:
        ctx.wait_running(name)
    except PodNotRunningError as exc:
        log = ctx.logs(name, "buildkitd")
        cause = classify_failure(f"{exc.reason}\n{log}")
        evidence["buildkitd_log"] = log.strip().splitlines()[-8:]
        if cause or "exited" in exc.reason:
            return Outcome(Status.FAIL, f"buildkitd did not start: {cause or compact(exc.reason)}", evidence)
        raise
    ref = f"{registry}/dindcheck/probe:{ctx.settings.run_id}"
    ctx.say(f"building and pushing {ref}")
    script = f"REF='{ref}'; INSECURE='{',registry.insecure=true' if insecure else ''}'\n{BUILD_AND_PUSH}"
    result = ctx.exec(name, "buildkitd", script, timeout_s=180)
    values = key_values(result.stdout)
    evidence.update({k: v for k, v in values.items() if v})
    evidence["image"] = ref
    if values.get("buildkitd") != "ok":
        log = ctx.logs(name, "buildkitd")
        cause = classify_failure(log + values.get("buildkitd_error", "")) or values.get("buildkitd_error", "")
        evidence["buildkitd_log"] = log.strip().splitlines()[-8:]
        return Outcome(Status.FAIL, f"buildkitd never answered: {cause or result.tail()}", evidence)
    if values.get("build_push") != "ok":
        error = values.get("build_error", result.tail())
        cause = classify_failure(error)
        if cause:
            return Outcome(Status.FAIL, f"build failed: {cause} ({error})", evidence)
        if _is_push_problem(error):
            return Outcome(
                Status.INCONCLUSIVE,
                f"could not push to {registry}: {error}; the registry's reachability or credentials, not BuildKit, "
                "stopped the proof",
                evidence,
                remediation="Check --registry (address, port, http vs https: --registry-insecure) and "
                "--registry-secret, and that pods may reach it (NetworkPolicy, egress).",
            )
        return Outcome(Status.FAIL, f"build or push failed: {error}", evidence)
    readback = _read_back(ctx, ref, registry_pod, insecure)
    evidence["readback"] = readback.to_evidence()
    pushed = values.get("digest", "")
    if readback.ok and pushed and readback.digest and readback.digest != pushed:
        return Outcome(Status.FAIL, f"registry serves {readback.digest}, BuildKit pushed {pushed}", evidence)
    summary = f"built FROM scratch and pushed {ref} ({pushed or 'digest not reported'}) without privileged"
    summary += f"; snapshotter {values.get('snapshotter') or '?'}"
    if readback.ok:
        summary += f"; manifest read back via {readback.via}"
    else:
        summary += f"; manifest not read back ({readback.via}: {readback.error})"
    return Outcome(Status.PASS, summary, evidence, remediation="")


def _is_push_problem(error: str) -> bool:
    markers = (
        "connection refused",
        "no such host",
        "i/o timeout",
        "unauthorized",
        "401",
        "403",
        "failed to do request",
        "server gave http response to https client",
        "x509",
    )
    return any(marker in error.lower() for marker in markers)


def _read_back(ctx: ProbeContext, ref: str, registry_pod: str | None, insecure: bool) -> _registry.ManifestReadback:
    _, repo, tag = _registry.split_reference(ref)
    if registry_pod is not None:
        return _registry.via_pod_proxy(ctx, registry_pod, REGISTRY_PORT, repo, tag)
    return _registry.via_http(ref, insecure=insecure, docker_config=_docker_config(ctx))


def _docker_config(ctx: ProbeContext) -> dict[str, object] | None:
    if not ctx.settings.registry_secret:
        return None
    secret = ctx.core.read_namespaced_secret(ctx.settings.registry_secret, ctx.settings.namespace)
    raw = (secret.data or {}).get(".dockerconfigjson")
    if not raw:
        return None
    parsed = json.loads(base64.b64decode(raw))
    return parsed if isinstance(parsed, dict) else None


def _registry_pod_spec(image: str) -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "registry",
                "image": image,
                "ports": [{"containerPort": REGISTRY_PORT}],
                "readinessProbe": {"tcpSocket": {"port": REGISTRY_PORT}, "periodSeconds": 1},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/registry"}],
            }
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }


PROBE = ProbeDefinition(
    id="buildkit-rootless",
    capability="buildkit-rootless",
    title="rootless BuildKit builds and pushes without privileged",
    remediation=REMEDIATION,
    run=run,
)
