"""Buildpacks: does the CNB lifecycle build an app from source and push it, in the Pod Security restricted shape?

Cloud Native Buildpacks need no daemon, no user namespace, no capability and no root: the lifecycle's `creator`
detects the app, runs the builder's buildpacks and exports the image straight to a registry, as the builder image's
own non-root user. That is what Pod Security restricted admits, so on clusters that enforce it this is the build
path left: from source, never from a Dockerfile (a separate question from build_only).

The probe pod runs the creator exactly as the spec users paste (the `creator` container). Around it, only
scaffolding, in the restricted shape too so that a restricted namespace admits the whole pod: an init container
writes the app source (a Procfile, the smallest source a Procfile buildpack detects), a throwaway registry runs as a
native sidecar on localhost (unless --registry is given), and a container that only sleeps keeps the pod (and so the
registry) up for the read-back. The run image is the one the builder names (its run.toml), as in users' builds. The
creator's report, with the pushed digest, comes back in the termination message and is read back from the registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from probes import specs
from probes.definitions import _builder, _registry
from probes.engine import Needle, Outcome, ProbeContext, compact, named_cause
from probes.model import Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "The CNB lifecycle needs no privileged, no root, no capability and no user namespace: the creator runs as the "
    "builder image's non-root CNB user (runAsNonRoot), with all capabilities dropped, RuntimeDefault seccomp and "
    "allowPrivilegeEscalation false, which Pod Security restricted admits. It needs a builder image whose user is "
    "that non-root user, a writable layers directory (an emptyDir), and push access to the registry."
)

# Known failure texts (docs/probe-facts.md, "Buildpacks") -> the cause a person can act on.
FAILURE_CAUSES: tuple[tuple[tuple[Needle, ...], str], ...] = (
    (
        ("image will run as root", "refusing to run as root"),
        (
            "the builder image's user is root: the creator must run as the builder's non-root CNB user (CNB_USER_ID), "
            "so use a CNB builder image (Paketo's run as 1001:1000) or one whose USER is that uid"
        ),
    ),
    (
        ("non-numeric user",),
        (
            "the builder image names its user instead of a uid, so runAsNonRoot cannot be verified: set runAsUser and "
            "runAsGroup to the builder's CNB_USER_ID and CNB_GROUP_ID"
        ),
    ),
    (
        ("exec as user",),
        (
            "the pod runs as another uid than the builder's CNB_USER_ID (a policy or an OpenShift SCC assigned "
            "one), and without capabilities the lifecycle cannot switch to it: run as CNB_USER_ID:CNB_GROUP_ID"
        ),
    ),
    (
        ("read-only file system",),
        "the lifecycle writes its layers and the app's layers: the layers directory must be a writable volume",
    ),
    (
        ("platform api version",),
        (
            f"the builder's lifecycle does not support platform API {specs.CNB_PLATFORM_API}: use a builder with "
            "lifecycle 0.18 or newer"
        ),
    ),
    (
        ("buildpack api version",),
        "the builder's lifecycle does not support its buildpacks' API: the builder is inconsistent; use a newer one",
    ),
)

# The registry would not take the export: its permissions or credentials, not the lifecycle, stopped the proof.
EXPORT_REFUSED: tuple[Needle, ...] = (
    "ensure registry read/write access",
    "denied:",
    "unauthorized",
    ("failed to export", "status code 4"),
    ("failed to write image", "status code 4"),
)

DETECTION_FAILED: tuple[Needle, ...] = ("no buildpack groups passed detection", "failed to detect")

APP = "Procfile"
# The scaffolding's first step: the app source, made here, writable by whichever non-root user the builder has (the
# emptyDir itself is world-writable, and only its owner, root, may chmod it).
PREPARE = rf"""
set -eu
printf 'web: echo "built from source by dindcheck %s"\n' "$RUN_ID" > {specs.CNB_WORKSPACE}/{APP}
chmod a+rw {specs.CNB_WORKSPACE}/{APP}
"""
HELPER_UID = _registry.REGISTRY_UID
"""The scaffolding's user (nobody), as the throwaway registry's: restricted-shaped, it needs nothing more."""

DIGEST_LINE = re.compile(r'^\s*digest\s*=\s*"(sha256:[0-9a-f]{64})"', re.MULTILINE)


def classify_failure(text: str) -> str:
    """Name the cause of a lifecycle failure from its words, or '' when it is not a known one."""
    return named_cause(text, FAILURE_CAUSES)


def export_refused(text: str) -> bool:
    """The registry refused the export (permissions, credentials): the lifecycle did its part."""
    return bool(named_cause(text, ((EXPORT_REFUSED, "refused"),)))


def reported_digest(report: str) -> str:
    """The image digest from the creator's report.toml ([image] digest = "sha256:..."), '' when absent."""
    found = DIGEST_LINE.search(report)
    return found.group(1) if found else ""


def restricted_gaps(stored: Mapping[str, Any]) -> tuple[str, ...]:
    """What the stored securityContext lacks of the Pod Security restricted shape (empty: it has all of it)."""
    gaps = []
    if stored.get("runAsNonRoot") is not True:
        gaps.append("runAsNonRoot is not true")
    if stored.get("allowPrivilegeEscalation") is not False:
        gaps.append("allowPrivilegeEscalation is not false")
    if "ALL" not in (stored.get("capabilities") or {}).get("drop", []) or (stored.get("capabilities") or {}).get("add"):
        gaps.append("capabilities are not all dropped")
    if (stored.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        gaps.append("seccompProfile is not RuntimeDefault")
    if stored.get("privileged"):
        gaps.append("privileged")
    return tuple(gaps)


def stored_context(pod: Any, container: str) -> dict[str, Any]:
    """A container's securityContext as the API server stored it (pod-level fields it inherits filled in)."""
    pod_level = pod.spec.security_context
    own = next((c.security_context for c in pod.spec.containers if c.name == container), None)

    def pick(field: str) -> Any:
        value = getattr(own, field, None) if own is not None else None
        return value if value is not None else getattr(pod_level, field, None)

    capabilities = getattr(own, "capabilities", None)
    seccomp = pick("seccomp_profile")
    return {
        "runAsNonRoot": pick("run_as_non_root"),
        "runAsUser": pick("run_as_user"),
        "allowPrivilegeEscalation": getattr(own, "allow_privilege_escalation", None),
        "privileged": getattr(own, "privileged", None),
        "capabilities": {
            "drop": list(getattr(capabilities, "drop", None) or []),
            "add": list(getattr(capabilities, "add", None) or []),
        },
        "seccompProfile": {"type": getattr(seccomp, "type", None)},
    }


def _helper(name: str, image: str, settings: ProbeSettings, command: list[str]) -> dict[str, Any]:
    """A scaffolding container in the restricted shape, as nobody, with the run's resources."""
    context = {**specs.restricted_context(), "runAsUser": HELPER_UID, "runAsGroup": HELPER_UID}
    return {
        "name": name,
        "image": image,
        "command": command,
        "resources": settings.resources.to_spec(),
        "securityContext": context,
    }


def probe_pod_spec(ctx: ProbeContext, settings: ProbeSettings, spec: dict[str, Any]) -> dict[str, Any]:
    """The tested spec plus the scaffolding: the app writer, and the throwaway registry with its keep-alive."""
    tools = settings.images.tools
    prepare = {
        **_helper("prepare", tools, settings, ["sh", "-c", PREPARE]),
        "env": [{"name": "RUN_ID", "value": ctx.scope.run_id}],
        "volumeMounts": [{"name": "workspace", "mountPath": specs.CNB_WORKSPACE}],
    }
    if settings.registry:
        return {**spec, "initContainers": [prepare]}
    registry = _builder.registry_sidecar(settings)
    hold = _helper("hold", tools, settings, list(specs.SLEEP))
    return {
        **spec,
        "initContainers": [prepare, registry],
        "containers": [*spec["containers"], hold],
        "volumes": [*spec["volumes"], {"name": "registry-data", "emptyDir": {}}],
    }


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Build the app from source with the tested creator, push it, read the manifest back."""
    evidence: dict[str, Any] = {"builder": settings.images.builder}
    registry, insecure = _builder.push_registry(
        settings, evidence, throwaway="throwaway registry sidecar in the probe pod"
    )
    ref = f"{registry}/dindcheck/buildpacks:{ctx.scope.run_id}"
    spec = specs.buildpacks_pod_spec(
        settings.images,
        settings.resources,
        image=ref,
        insecure_registries=(registry,) if insecure else (),
        registry_secret=settings.registry_secret,
    )
    pod_spec = probe_pod_spec(ctx, settings, spec)
    evidence["image"] = ref
    return _builder.run_builder(ctx, settings, BUILDER, pod_spec, spec, ref=ref, insecure=insecure, evidence=evidence)


def _judge(pod: Any, steps: _builder.Steps, ref: str, evidence: dict[str, Any]) -> Outcome:
    """The creator's result, and the securityContext the API server stored for it (a policy may have mutated it)."""
    evidence["stored_security_context"] = stored_context(pod, "creator")
    return verdict(steps, ref, evidence)


def verdict(steps: dict[str, dict[str, Any]], ref: str, evidence: dict[str, Any]) -> Outcome:
    """What the finished containers and the stored securityContext prove (pure over recorded facts)."""
    prepare = steps.get("prepare")
    if prepare is None or prepare["exit_code"] != 0:
        text = " ".join((prepare or {}).get("log", [])) or (prepare or {}).get("message", "") or "did not run"
        return Outcome(Status.INCONCLUSIVE, f"writing the app source failed (tools image): {compact(text)}", evidence)
    creator = steps.get("creator")
    what = f"building the {APP} app from source and exporting it"
    if creator is None:
        return Outcome(Status.INCONCLUSIVE, f"{what} never finished (container creator did not run)", evidence)
    if creator["exit_code"] != 0:
        return _creator_failed(what, creator, evidence)
    evidence["digest"] = reported_digest(str(creator.get("message", "")))
    gaps = restricted_gaps(evidence.get("stored_security_context") or {})
    if gaps:
        return Outcome(
            Status.INCONCLUSIVE,
            f"built and pushed {ref}, but not in the restricted shape the spec asked for: the API server stored a "
            f"securityContext where {', '.join(gaps)} (a mutating policy changed it), so what ran is not what "
            "users would paste",
            evidence,
        )
    summary = (
        f"built a {APP} app from source (no Dockerfile) with the CNB lifecycle and pushed {ref} "
        f"({evidence['digest'] or 'digest not reported'}) as a non-root user with all capabilities dropped, "
        "RuntimeDefault seccomp and no privilege escalation (Pod Security restricted, as stored by the API server)"
    )
    return Outcome(Status.PASS, summary, evidence, remediation="")


def _creator_failed(what: str, creator: dict[str, Any], evidence: dict[str, Any]) -> Outcome:
    """The creator exited non-zero: a named cause, the registry's refusal, an app it did not detect, or its words."""
    log = creator.get("log", [])
    errors = [line for line in log if line.startswith("ERROR:")]  # the lifecycle's own words, without its progress
    text = " ".join(errors or log) or creator.get("message", "") or creator.get("reason", "")
    cause = classify_failure(text)
    if cause:
        return Outcome(Status.FAIL, f"{what} failed: {cause} ({compact(text, 240)})", evidence)
    if export_refused(text):
        return Outcome(
            Status.INCONCLUSIVE,
            f"{what}: the registry refused the export: {compact(text, 240)}; the registry's permissions or "
            "credentials, not the lifecycle, stopped the proof",
            evidence,
            remediation="Give the run push access to --registry (--registry-secret with a "
            "kubernetes.io/dockerconfigjson Secret), or leave --registry unset to use the throwaway registry.",
        )
    if _registry.is_push_problem(text):
        return _registry.push_problem_outcome(what, text, evidence, builder="the CNB lifecycle")
    if named_cause(text, ((DETECTION_FAILED, "detect"),)):
        return Outcome(
            Status.INCONCLUSIVE,
            f"{what}: the builder's buildpacks did not detect the probe's app (a {APP}), so nothing was built: "
            f"{compact(text, 200)}",
            evidence,
            remediation=f"Pass a builder with a {APP} buildpack (--image-builder), e.g. Paketo's base builder.",
        )
    return Outcome(Status.FAIL, f"{what} failed (exit {creator['exit_code']}): {compact(text, 300)}", evidence)


BUILDER = _builder.Builder(
    name="buildpacks",
    creating="creating the buildpacks pod (restricted shape)",
    building=f"building a {APP} app from source with the CNB lifecycle, exporting",
    container="creator",
    logged=("prepare", "creator"),
    classify=classify_failure,
    judge=_judge,
    readback_as="the CNB lifecycle",
    record=lambda spec, _settings, proven: specs.record(Mode.BUILDPACKS, "buildpacks", spec, proven=proven),
)

PROBE = ProbeDefinition(
    id="buildpacks",
    capability="buildpacks",
    title="Cloud Native Buildpacks build from source and push in the Pod Security restricted shape",
    remediation=REMEDIATION,
    run=run,
)
