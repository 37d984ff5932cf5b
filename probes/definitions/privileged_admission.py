"""Privileged admission: is the DinD sidecar's privileged pod admitted, and does a real one actually run privileged?

Every mode's real pod spec is dry-run server-side (cluster-wide PSA defaults and policies are invisible from
namespace labels); then a real privileged pod is created, because some platforms reject only at scheduling. A
refusal that is no policy (a ResourceQuota, a LimitRange, throttling, the run's RBAC or credentials, an invalid spec)
answers nothing: inconclusive with the server's words. A running pod is not yet a privileged one: a mutating webhook
can strip `privileged` at admission, so the stored spec is read back and the privilege is proven from inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from probes import specs
from probes.engine import CommandResult, Outcome, ProbeContext, compact, key_values
from probes.exceptions import AdmissionRejectedError, ExecChannelError, PodNotRunningError
from probes.model import Admission, Facts, Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

CONTAINER = "tools"

# What only a privileged container has: every capability the kernel knows, and mounts (an ordinary container has
# no CAP_SYS_ADMIN, and the runtime's default AppArmor profile denies mount; privileged lifts both).
PRIVILEGE_READINGS = r"""
grep -E '^Cap(Eff|Bnd):' /proc/self/status | sed 's/:[[:space:]]*/=/'
echo "cap_last_cap=$(cat /proc/sys/kernel/cap_last_cap 2>/dev/null)"
if ! command -v mount >/dev/null 2>&1; then echo "mount=absent"
elif d=$(mktemp -d) && out=$(mount -t tmpfs dindcheck "$d" 2>&1); then echo "mount=ok"; umount "$d"
else echo "mount=refused"; echo "mount_error=$(printf '%s' "$out" | tr '\n' ' ')"; fi
"""

CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)  # fmt: skip
"""Linux capability names by bit number (linux/capability.h)."""
DIND_NEEDS = (CAPABILITIES.index("SYS_ADMIN"), CAPABILITIES.index("NET_ADMIN"))
"""What dockerd cannot do without (mounts and namespaces; its bridge and iptables), and no ordinary container holds.

A runtime grants a privileged container every capability it holds itself, which may be fewer than the kernel knows
(an older runtime predates CAP_PERFMON; a runtime in a container may lack CAP_SYS_RESOURCE): only these two missing
means the privilege was taken away. Any other missing one is named in the summary, never hidden."""

REMEDIATION = (
    "Privileged DinD needs a namespace whose Pod Security level is 'privileged' "
    "(kubectl label ns NS pod-security.kubernetes.io/enforce=privileged) and an exemption in any policy engine "
    "(Gatekeeper/Kyverno/ValidatingAdmissionPolicy) for the CI namespace. Where that is not acceptable, use "
    "rootless BuildKit (build-only) or sysbox."
)


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Dry-run every mode's spec, then run a real privileged pod when DinD's spec was not refused by a policy."""
    answers: dict[Mode, Admission] = {}
    for mode, spec in specs.mode_specs(
        settings.images, settings.resources, job_uid=settings.job_uid, dind_env=settings.dind_env
    ).items():
        ctx.say(f"dry-run create of the {mode.value} pod spec")
        annotations = specs.SYSBOX_ANNOTATIONS if mode is Mode.SYSBOX else None
        answers[mode] = ctx.dry_run(ctx.pod_manifest(f"dry-{mode.value}", spec, annotations=annotations))
    facts = Facts(admission=answers)
    evidence: dict[str, Any] = {"specs": {mode.value: answer.to_json() for mode, answer in answers.items()}}
    dind = answers[Mode.DIND]
    if dind.admitted is False:
        return Outcome(Status.FAIL, f"privileged pod rejected by {dind.source}: {dind.message}", evidence, facts=facts)
    if dind.admitted is None:
        evidence["dry_run_note"] = f"dry-run gave no answer ({dind.source}: {dind.message}); trying a real create"
    manifest = ctx.pod_manifest(
        "real", specs.tools_pod_spec(settings.images.tools, settings.resources, privileged=True)
    )
    try:
        with ctx.pod(manifest) as pod:
            evidence["real_pod"] = {"running": True, **stored_privilege(pod)}
            if not evidence["real_pod"]["stored_privileged"]:
                return Outcome(Status.FAIL, stripped_summary(evidence["real_pod"]), evidence, facts=facts)
            try:
                result = ctx.exec(manifest["metadata"]["name"], CONTAINER, PRIVILEGE_READINGS, timeout_s=30)
            except ExecChannelError as exc:
                return Outcome(
                    Status.INCONCLUSIVE,
                    f"privileged pod admitted and running, but its privilege could not be checked from inside: {exc}",
                    evidence,
                    facts=facts,
                )
    except AdmissionRejectedError as exc:
        evidence["real_pod"] = {"running": False, **exc.evidence()}
        if exc.decided is False:
            return Outcome(Status.FAIL, f"privileged pod {exc.describe()}", evidence, facts=facts)
        return Outcome(
            Status.INCONCLUSIVE,
            f"privileged pod not created, and no policy answered ({exc.source}, HTTP {exc.code}): {exc.message}",
            evidence,
            facts=facts,
        )
    except PodNotRunningError as exc:
        evidence["real_pod"] = {"running": False, **exc.evidence()}
        if scheduling_rejection(exc.reason):
            return Outcome(
                Status.FAIL,
                f"privileged pod admitted but rejected at scheduling: {compact(exc.reason)}",
                evidence,
                facts=facts,
            )
        return Outcome(
            Status.INCONCLUSIVE,
            f"privileged pod admitted, but it did not run: {compact(exc.reason)}",
            evidence,
            facts=facts,
        )
    inside = privilege_inside(result)
    evidence["inside"] = inside.evidence
    if inside.status is not Status.PASS:
        return Outcome(
            inside.status, f"privileged pod admitted and running, but {inside.summary}", evidence, facts=facts
        )
    summary = f"privileged pod admitted and running, stored as privileged; inside it {inside.summary}"
    if dind.warnings:
        summary += f" (warnings: {'; '.join(dind.warnings)})"
    if dind.admitted is None:
        summary += " (proven by a real pod; dry-run was not answered)"
    return Outcome(Status.PASS, summary, evidence, remediation="", facts=facts)


def stored_privilege(pod: Any) -> dict[str, Any]:
    """The tested container's securityContext as the API server stored it, and the annotations mutators leave."""
    container = next((c for c in pod.spec.containers or [] if c.name == CONTAINER), None)
    context = container.security_context if container is not None else None
    annotations = dict(pod.metadata.annotations or {})
    return {
        "stored_privileged": bool(context is not None and context.privileged is True),
        "stored_security_context": {k: v for k, v in context.to_dict().items() if v is not None} if context else None,
        "mutation_annotations": {k: v for k, v in annotations.items() if "mutat" in k or "patches" in k},
    }


def stripped_summary(real_pod: dict[str, Any]) -> str:
    """A pod admitted without the privilege it asked for: who changed it, as far as the pod says."""
    marks = real_pod["mutation_annotations"]
    by = f"; the pod's annotations: {compact(str(marks), 200)}" if marks else ""
    return (
        "privileged pod admitted and running, but the stored spec is not privileged: it was mutated at admission "
        f"(a mutating webhook or policy removed securityContext.privileged; stored securityContext "
        f"{real_pod['stored_security_context']}{by})"
    )


@dataclass(frozen=True)
class Inside:
    """What the readings from inside the privileged container prove."""

    status: Status
    summary: str
    evidence: dict[str, Any]


def privilege_inside(result: CommandResult) -> Inside:
    """Judge the readings (pure, over the recorded output): the capabilities held, and a mount only privileged may make.

    Without CAP_SYS_ADMIN or CAP_NET_ADMIN, or with a refused mount, the container is not what privileged means
    (FAIL). Readings that could not be taken prove nothing (INCONCLUSIVE).
    """
    readings = key_values(result.stdout)
    evidence: dict[str, Any] = {"readings": readings}
    try:
        effective = int(readings["CapEff"], 16)
        last = int(readings["cap_last_cap"])
    except (KeyError, ValueError):
        return Inside(
            Status.INCONCLUSIVE,
            f"its capabilities could not be read from inside (rc={result.rc}: {result.tail()})",
            evidence,
        )
    missing = [bit for bit in range(last + 1) if not effective >> bit & 1]
    evidence["missing_capabilities"] = [capability_name(bit) for bit in missing]
    names = ", ".join(evidence["missing_capabilities"])
    if any(bit in DIND_NEEDS for bit in missing):
        return Inside(
            Status.FAIL,
            f"it is not privileged inside: CapEff {readings['CapEff']} lacks {names} (a mutating webhook, policy or "
            "the runtime reduced it)",
            evidence,
        )
    held = f"every capability but {names}" if missing else "every capability"
    held += f" (CapEff {readings['CapEff']})"
    mount = readings.get("mount", "")
    if mount == "refused":
        return Inside(
            Status.FAIL,
            f"it has {held}, yet a tmpfs mount was refused: {readings.get('mount_error', '')} (an LSM or seccomp "
            "profile confines it; dockerd cannot mount its storage)",
            evidence,
        )
    if mount == "ok":
        return Inside(Status.PASS, f"has {held} and may mount", evidence)
    return Inside(Status.PASS, f"has {held}; a mount was not tried (no mount command in the tools image)", evidence)


def capability_name(bit: int) -> str:
    """CAP_SYS_ADMIN for 21; a number for capabilities newer than this table."""
    return f"CAP_{CAPABILITIES[bit]}" if bit < len(CAPABILITIES) else f"capability {bit}"


def scheduling_rejection(reason: str) -> bool:
    """Platforms that admit a privileged pod but refuse to place it (EKS Fargate); other Pending causes stay unknown."""
    return "not supported on Fargate" in reason


PROBE = ProbeDefinition(
    id="privileged-admission",
    capability="privileged-admission",
    title="privileged pods (DinD sidecar) are admitted and run",
    remediation=REMEDIATION,
    run=run,
)
