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
from probes.definitions import _builder, _registry, _selinux
from probes.engine import Needle, Outcome, ProbeContext, compact, named_cause
from probes.model import Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "Kaniko needs a container that runs as root (runAsUser 0; Pod Security 'restricted' forbids it, 'baseline' "
    "allows it), keeps the default capabilities (CHOWN, DAC_OVERRIDE, FOWNER, SETUID, SETGID: it unpacks images "
    "and runs RUN steps as root) and a writable root filesystem. It needs neither privileged nor user namespaces. "
    "On an SELinux node it runs as container_t: where the node's policy denies what a RUN step needs (the node's "
    "audit log has the AVC, e.g. denied { getpgid }), run it with securityContext.seLinuxOptions.type: spc_t or "
    "load a policy module allowing it. " + _selinux.PROVE_SPC_T
)

# Known failure texts (docs/probe-facts.md, "Kaniko") -> the cause a person can act on.
FAILURE_CAUSES: tuple[tuple[tuple[Needle, ...], str], ...] = (
    (
        # getpgid(2) fails only with ESRCH or an LSM's EACCES: here SELinux's (avc: denied { getpgid } ... container_t)
        (("getting group id for process", "permission denied"),),
        (
            "an LSM (SELinux: the node's policy denies container_t getpgid) refused Kaniko's RUN step: run Kaniko "
            "with securityContext.seLinuxOptions.type: spc_t, or allow it in a policy module"
        ),
    ),
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
    registry = _builder.registry_sidecar(settings)
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
    registry, insecure = _builder.push_registry(
        settings, evidence, throwaway="throwaway registry sidecar in the probe pod"
    )
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
    evidence.update(image=ref, base_image=base)
    return _builder.run_builder(ctx, settings, BUILDER, pod_spec, spec, ref=ref, insecure=insecure, evidence=evidence)


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
        return _registry.step_failed(
            what, text, evidence, classify=classify_failure, builder="Kaniko", exit_code=state["exit_code"]
        )
    pushed = str(steps["kaniko"].get("message", ""))
    evidence["digest"] = pushed if pushed.startswith("sha256:") else ""
    summary = (
        f"built FROM a pushed base with a RUN step and pushed {ref} ({evidence['digest'] or 'digest not reported'}) "
        "as root without privileged or a user namespace"
    )
    return Outcome(Status.PASS, summary, evidence, remediation="")


def _judge(_pod: Any, steps: _builder.Steps, ref: str, evidence: dict[str, Any]) -> Outcome:
    return verdict(steps, ref, evidence)


BUILDER = _builder.Builder(
    name="Kaniko",
    creating="creating the Kaniko pod",
    building="pushing a base image, building FROM it with a RUN step, pushing",
    container="kaniko",
    logged=("prepare", "base", "kaniko"),
    classify=classify_failure,
    judge=_judge,
    readback_as="Kaniko",
    record=lambda spec, settings, proven: specs.record_builder(Mode.KANIKO, spec, settings, proven=proven),
)

PROBE = ProbeDefinition(
    id="kaniko",
    capability="kaniko",
    title="Kaniko builds (RUN step on a pulled base) and pushes as root, without privileged",
    remediation=REMEDIATION,
    run=run,
)
