"""Kaniko: does the executor build (a RUN step on a pulled base) and push as root, without privileged?

Kaniko needs no privileged and no user namespace: it unpacks the base image over its own root filesystem and runs
RUN steps there, as root with the default capabilities and seccomp profile. That is what Pod Security baseline
allows, so it is the build path left on clusters that deny privileged pods and user namespaces.

The probe pod runs the executor exactly as the spec users paste (the `kaniko` container). Around it, only
scaffolding: an init container writes the build context (a base rootfs made of the tools image's own shell, and
the Dockerfiles), a throwaway registry runs as a native sidecar on localhost (so no NetworkPolicy stands between
them), a first executor run pushes the base there, and a container that only sleeps keeps the pod (and so the
registry) up for the read-back. The `kaniko` container then builds FROM that base with a RUN step and pushes to
--registry, or to the throwaway registry; its digest comes back in the termination message and is read back.
"""

from __future__ import annotations

from typing import Any

from probes import specs
from probes.definitions import _registry
from probes.engine import Needle, Outcome, ProbeContext, compact, named_cause
from probes.exceptions import AdmissionRejectedError, PodNotRunningError
from probes.model import Facts, Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "Kaniko needs a container that runs as root (runAsUser 0; Pod Security 'restricted' forbids it, 'baseline' "
    "allows it), keeps the default capabilities (CHOWN, DAC_OVERRIDE, FOWNER, SETUID, SETGID: it unpacks images "
    "and runs RUN steps as root) and a writable root filesystem. It needs neither privileged nor user namespaces."
)

# Known failure texts (docs/probe-facts.md, "Kaniko") -> the cause a person can act on.
FAILURE_CAUSES: tuple[tuple[tuple[Needle, ...], str], ...] = (
    (
        ("runasnonroot", "will run as root", "breaks non-root policy"),
        "Kaniko must run as root: the cluster forces runAsNonRoot (Pod Security restricted or a policy)",
    ),
    (
        ("read-only file system",),
        "Kaniko unpacks the base image over its own root filesystem: readOnlyRootFilesystem must be false",
    ),
    (
        # only where the kernel refused the call: a chown that succeeded is no cause
        tuple((call, "operation not permitted") for call in ("chown", "setgid", "setuid", "mknod")),
        (
            "a capability Kaniko needs to unpack files as root was dropped (keep CHOWN, DAC_OVERRIDE, FOWNER, "
            "SETUID, SETGID)"
        ),
    ),
    (
        ("taking snapshot", "error creating snapshot", "failed to get filesystem from image"),
        "Kaniko could not snapshot its own filesystem (an unusual root filesystem or too little ephemeral storage)",
    ),
)

# The scaffolding's first step: a base rootfs of the tools image's own /bin/sh and the libraries it loads (nothing
# pulled from elsewhere), its Dockerfile, and the Dockerfile the kaniko container builds.
PREPARE = (
    _registry.BUILD_CONTEXTS
    + r"""
set -eu
base_rootfs /workspace/base
probe_dockerfile /workspace "$BASE" "$RUN_ID"
"""
)


def classify_failure(text: str) -> str:
    """Name the cause of a Kaniko failure from its words, or '' when it is not a known one."""
    return named_cause(text, FAILURE_CAUSES)


def _scaffolding(ctx: ProbeContext, settings: ProbeSettings, base: str) -> dict[str, Any]:
    """The containers around the tested one: context writer, registry sidecar, base build, keep-alive."""
    resources = settings.resources.to_spec()
    tools = settings.images.tools
    prepare = {
        "name": "prepare",
        "image": tools,
        "command": ["sh", "-c", PREPARE],
        "env": [{"name": "BASE", "value": base}, {"name": "RUN_ID", "value": ctx.scope.run_id}],
        "volumeMounts": [{"name": "workspace", "mountPath": specs.KANIKO_WORKSPACE}],
        "resources": resources,
    }
    registry = {  # a native sidecar: up before the base build, and until the read-back
        **_registry.registry_container(settings),
        "restartPolicy": "Always",
        "startupProbe": {"tcpSocket": {"port": _registry.REGISTRY_PORT}, "periodSeconds": 1, "failureThreshold": 120},
    }
    base_build = specs.kaniko_pod_spec(
        settings.images,
        settings.resources,
        destination=base,
        insecure_registries=(_registry.LOCAL_REGISTRY,),
        context_dir=f"{specs.KANIKO_WORKSPACE}/base",
    )["containers"][0]
    base_build["name"] = "base"
    hold = {"name": "hold", "image": tools, "command": list(specs.SLEEP), "resources": resources}
    return {"init": [prepare, registry, base_build], "hold": hold}


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Build the base, then FROM it with a RUN step in the tested kaniko container; push; read the manifest back."""
    evidence: dict[str, Any] = {}
    run_id = ctx.scope.run_id
    if settings.registry:
        registry = settings.registry.rstrip("/")
        insecure = settings.registry_insecure
        evidence["registry"] = {"address": registry, "kind": "user"}
    else:
        registry, insecure = _registry.LOCAL_REGISTRY, True
        evidence["registry"] = {"address": registry, "kind": "throwaway registry sidecar in the probe pod"}
    ref = f"{registry}/dindcheck/kaniko:{run_id}"
    base = f"{_registry.LOCAL_REGISTRY}/dindcheck/kaniko-base:{run_id}"
    insecure_registries = tuple(dict.fromkeys((_registry.LOCAL_REGISTRY, *((registry,) if insecure else ()))))
    spec = specs.kaniko_pod_spec(
        settings.images,
        settings.resources,
        destination=ref,
        insecure_registries=insecure_registries,
        registry_secret=settings.registry_secret,
    )
    parts = _scaffolding(ctx, settings, base)
    pod_spec = {
        **spec,
        "initContainers": parts["init"],
        "containers": [*spec["containers"], parts["hold"]],
        "volumes": [*spec["volumes"], {"name": "registry-data", "emptyDir": {}}],
    }
    manifest = ctx.pod_manifest("build", pod_spec)
    name = manifest["metadata"]["name"]
    evidence.update(image=ref, base_image=base)
    ctx.say("creating the Kaniko pod")
    try:
        ctx.create_pod(manifest)
    except AdmissionRejectedError as exc:
        outcome = _registry.refused_outcome(ctx, "Kaniko", spec, exc, evidence)
    else:
        try:
            outcome = _build(ctx, settings, name, ref, insecure, evidence)
        finally:
            ctx.delete_pod(name)
    tested = specs.record_builder(Mode.KANIKO, spec, settings, proven=outcome.status is Status.PASS)
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=(tested,)))


def _build(
    ctx: ProbeContext, settings: ProbeSettings, name: str, ref: str, insecure: bool, evidence: dict[str, Any]
) -> Outcome:
    ctx.say(f"pushing a base image, building FROM it with a RUN step, pushing {ref}")
    try:
        pod = ctx.wait_terminated(name, "kaniko", timeout_s=ctx.scope.timeout_s + 120)
    except PodNotRunningError as exc:
        evidence["pod"] = exc.evidence()
        cause = classify_failure(exc.reason)
        if cause:
            return Outcome(Status.FAIL, f"the Kaniko pod did not run: {cause} ({compact(exc.reason, 200)})", evidence)
        return Outcome(Status.INCONCLUSIVE, f"the Kaniko pod did not run: {compact(exc.reason)}", evidence)
    steps = terminations(pod)
    evidence["steps"] = steps
    for step in ("prepare", "base", "kaniko"):
        if steps.get(step, {}).get("exit_code") not in (None, 0):
            steps[step]["log"] = ctx.logs(name, step, tail=12).strip().splitlines()[-8:]
    outcome = verdict(steps, ref, evidence)
    if outcome.status is not Status.PASS:
        return outcome
    readback = _registry.read_back(ctx, settings, ref, name, _registry.REGISTRY_PORT, insecure)
    evidence["readback"] = readback.to_evidence()
    return _registry.readback_verdict(outcome, readback, evidence, builder="Kaniko")


def terminations(pod: Any) -> dict[str, dict[str, Any]]:
    """Each finished container's exit code, reason and termination message, by container name."""
    found: dict[str, dict[str, Any]] = {}
    for status in list(pod.status.init_container_statuses or []) + list(pod.status.container_statuses or []):
        term = status.state.terminated if status.state else None
        if term is not None:
            found[status.name] = {
                "exit_code": term.exit_code,
                "reason": term.reason or "",
                "message": (term.message or "").strip(),
            }
    return found


def verdict(steps: dict[str, dict[str, Any]], ref: str, evidence: dict[str, Any]) -> Outcome:
    """What the finished containers prove (pure over their recorded terminations and log tails)."""
    for step, what in (
        ("prepare", "writing the build context"),
        ("base", "building and pushing the base image"),
        ("kaniko", "building FROM the pulled base with a RUN step and pushing"),
    ):
        state = steps.get(step)
        if state is None:
            return Outcome(Status.INCONCLUSIVE, f"{what} never finished (container {step} did not run)", evidence)
        if state["exit_code"] == 0:
            continue
        text = " ".join(state.get("log", [])) or state.get("message", "") or state.get("reason", "")
        if step == "prepare":  # the scaffolding, not Kaniko
            return Outcome(Status.INCONCLUSIVE, f"{what} failed (tools image): {compact(text, 240)}", evidence)
        cause = classify_failure(text)
        if cause:
            return Outcome(Status.FAIL, f"{what} failed: {cause} ({compact(text, 240)})", evidence)
        if _registry.is_push_problem(text):
            return _registry.push_problem_outcome(what, text, evidence, builder="Kaniko")
        return Outcome(Status.FAIL, f"{what} failed (exit {state['exit_code']}): {compact(text, 300)}", evidence)
    pushed = str(steps["kaniko"].get("message", ""))
    evidence["digest"] = pushed if pushed.startswith("sha256:") else ""
    summary = (
        f"built FROM a pushed base with a RUN step and pushed {ref} ({evidence['digest'] or 'digest not reported'}) "
        "as root without privileged or a user namespace"
    )
    return Outcome(Status.PASS, summary, evidence, remediation="")


PROBE = ProbeDefinition(
    id="kaniko",
    capability="kaniko",
    title="Kaniko builds (RUN step on a pulled base) and pushes as root, without privileged",
    remediation=REMEDIATION,
    run=run,
)
