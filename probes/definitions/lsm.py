"""AppArmor, SELinux, seccomp and user-namespace settings, read from inside an ordinary pod.

What is read is reported as observed; what it means for the modes is, where not proven by another probe, marked
inferred. The reading logic is pure (assess) so it is tested on recorded readings from real nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from probes import specs
from probes.definitions._selinux import PROVE_SPC_T, selinux_type
from probes.engine import Outcome, ProbeContext, key_values
from probes.model import Facts, Mode, ModeBlock, NodeSecurity, Status
from probes.settings import ProbeDefinition, ProbeSettings

ABSENT = "<absent>"

READINGS = r"""
r() { if [ -r "$2" ] && v=$(head -c 300 "$2" 2>/dev/null); then \
        echo "$1=$(printf '%s' "$v" | tr '\0\n' '  ' | sed 's/ *$//')"; else echo "$1=<absent>"; fi; }
r apparmor_enabled /sys/module/apparmor/parameters/enabled
r lsm_list /sys/kernel/security/lsm
r attr_current /proc/self/attr/current
r attr_apparmor_current /proc/self/attr/apparmor/current
r selinux_enforce /sys/fs/selinux/enforce
r max_user_namespaces /proc/sys/user/max_user_namespaces
r unprivileged_userns_clone /proc/sys/kernel/unprivileged_userns_clone
r apparmor_restrict_unprivileged_userns /proc/sys/kernel/apparmor_restrict_unprivileged_userns
grep -E '^(Seccomp|NoNewPrivs|CapBnd):' /proc/self/status | sed 's/:[[:space:]]*/=/'
if out=$(unshare -U true 2>&1); then echo "userns_try=ok"; else echo "userns_try=$(echo "$out" | tr '\n' ' ')"; fi
echo "kernel=$(uname -r)"
echo "cgroup_fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
"""

REMEDIATION = (
    "Rootless BuildKit needs user namespaces: user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1 "
    "(older Debian/Ubuntu), and on Ubuntu 24.04+ kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor "
    "profile allowing userns. Under SELinux a container runs as container_t unless privileged (spc_t): where "
    "the node's policy denies container_t what a mode needs (its AVC in the node's audit log), run that container "
    "with securityContext.seLinuxOptions.type: spc_t or load a policy module allowing it. " + PROVE_SPC_T
)


NOTHING_READ = NodeSecurity(cgroup="", lsm=())


@dataclass(frozen=True)
class LsmAssessment:
    """Observed facts, inferred consequences, and which modes the observed settings block."""

    observed: tuple[str, ...]
    inferred: tuple[str, ...]
    blocks: tuple[ModeBlock, ...] = ()
    active: tuple[str, ...] = ()
    userns: str = "a user namespace was not tried"
    """What the unshare -U attempt showed, in a few words: only a success says user namespaces are available."""
    node: NodeSecurity = NOTHING_READ
    """The node's cgroup version and LSMs, and the probe pod's own confinement, for the report's cluster block."""

    def blocks_by_mode(self) -> dict[str, str]:
        """Mode id -> cause, the evidence form."""
        return {block.mode.value: block.cause for block in self.blocks}


def _present(value: str | None) -> bool:
    return value is not None and value not in ("", ABSENT)


CGROUP_BY_FS = {"cgroup2fs": "v2", "tmpfs": "v1"}
"""The filesystem type of /sys/fs/cgroup -> the cgroup version (tmpfs: v1, or hybrid with v1 controllers)."""


def _node_security(readings: dict[str, str], active: tuple[str, ...], context: str, selinux_mode: str) -> NodeSecurity:
    """The cgroup version, the active LSMs and the pod's own confinement, each only as read."""
    label = readings.get("attr_current", "")
    return NodeSecurity(
        cgroup=CGROUP_BY_FS.get(readings.get("cgroup_fs", "").strip(), ""),
        lsm=active,
        apparmor_profile=context if "apparmor" in active else "",
        selinux_mode=selinux_mode if "selinux" in active and selinux_mode in ("enforcing", "permissive") else "",
        selinux_label=label if "selinux" in active and ":" in label else "",
    )


def assess(readings: dict[str, str]) -> LsmAssessment:
    """Turn raw readings into observed facts, inferences, and blocked modes."""
    observed: list[str] = []
    inferred: list[str] = []
    blocks: dict[str, str] = {}  # mode -> cause; the first cause seen for a mode wins
    active: list[str] = []
    context = next(
        (readings[key] for key in ("attr_apparmor_current", "attr_current") if _present(readings.get(key))), ""
    )
    lsm_list = readings.get("lsm_list", ABSENT)
    apparmor_on = readings.get("apparmor_enabled", ABSENT).strip().upper().startswith("Y") or (
        _present(lsm_list) and "apparmor" in lsm_list.split(",")
    )
    selinux_mode = readings.get("selinux_enforce", ABSENT).strip()
    label_type = selinux_type(readings.get("attr_current", ""))
    selinux_on = _present(selinux_mode) or (_present(lsm_list) and "selinux" in lsm_list.split(",")) or bool(label_type)
    if _present(lsm_list):
        observed.append(f"active LSMs: {lsm_list}")
    if apparmor_on:
        active.append("apparmor")
        observed.append("AppArmor is enabled on the node")
        if "(enforce)" in context:
            observed.append(f"probe container confined by AppArmor profile {context}")
            inferred.append(
                "containers without appArmorProfile Unconfined get the runtime's default profile, "
                "which blocks the mounts rootless BuildKit needs"
            )
        elif context.startswith("unconfined"):
            observed.append("probe container is unconfined by AppArmor")
    mode = {"1": "enforcing", "0": "permissive"}.get(
        selinux_mode, selinux_mode if _present(selinux_mode) else "on (its mode not read: no selinuxfs in the pod)"
    )
    if selinux_on:
        active.append("selinux")
        observed.append(f"SELinux is {mode}")
        if ":container_t:" in context:
            observed.append(f"probe container runs as {context}")
            inferred.append(
                "ordinary containers run as container_t and privileged ones as spc_t: what container_t may not do "
                "(on the reference policy: CAP_SYS_ADMIN in its own user namespace, which rootless BuildKit needs; "
                "connecting to a privileged dockerd's socket) fails there with EACCES/EPERM and an AVC in the "
                "node's audit log"
            )
        elif ":spc_t:" in context:
            observed.append(f"probe container runs as spc_t ({context})")
    if not active:
        observed.append("no AppArmor or SELinux active (none active on this node)")
    max_userns = readings.get("max_user_namespaces", ABSENT)
    if max_userns.isdigit():
        observed.append(f"user.max_user_namespaces={max_userns}")
        if int(max_userns) == 0:
            blocks["buildkit-rootless"] = "user namespaces are disabled on the node (user.max_user_namespaces=0)"
    if readings.get("unprivileged_userns_clone", ABSENT) == "0":
        observed.append("kernel.unprivileged_userns_clone=0")
        blocks.setdefault(
            "buildkit-rootless", "unprivileged user namespaces are off (kernel.unprivileged_userns_clone=0)"
        )
    attempt = readings.get("userns_try", "").strip()
    userns = "a user namespace was not tried"
    if attempt == "ok":
        userns = "an ordinary pod created a user namespace (unshare -U)"
        observed.append(userns)
    elif attempt.lower().endswith("not found"):
        userns = f"a user namespace was not tried (no unshare in the tools image: {attempt})"
        observed.append(userns)
    elif attempt:
        userns = f"creating a user namespace in an ordinary pod failed: {attempt}"
        observed.append(userns)
        if "no space left on device" in attempt.lower():
            blocks.setdefault(
                "buildkit-rootless",
                "user namespaces are disabled on the node (creating one fails with ENOSPC, as under "
                "user.max_user_namespaces=0)",
            )
        elif "operation not permitted" in attempt.lower():
            inferred.append(
                "that failure is the pod's seccomp/LSM profile (EPERM), which rootless BuildKit's "
                "Unconfined profiles lift; it does not block the mode by itself"
            )
    restrict = readings.get("apparmor_restrict_unprivileged_userns", ABSENT)
    if restrict in ("0", "1"):
        observed.append(f"kernel.apparmor_restrict_unprivileged_userns={restrict}")
        if restrict == "1" and apparmor_on:
            blocks.setdefault(
                "buildkit-rootless",
                "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)",
            )
    seccomp = readings.get("Seccomp", "")
    if seccomp:
        observed.append(f"probe container seccomp mode {seccomp} ({'filtered' if seccomp == '2' else 'none'})")
        if seccomp == "2":
            inferred.append(
                "the default seccomp profile forbids unshare for non-root: rootless BuildKit needs "
                "seccompProfile Unconfined"
            )
    if readings.get("cgroup_fs"):
        observed.append(f"/sys/fs/cgroup is {readings['cgroup_fs']}")
    typed = tuple(ModeBlock(Mode(mode), cause) for mode, cause in blocks.items())  # every block here was read
    node = _node_security(readings, tuple(active), context, mode)
    return LsmAssessment(tuple(observed), tuple(inferred), typed, tuple(active), userns, node)


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Read the settings from an ordinary (unprivileged, default-profile) pod, then assess them."""
    manifest = ctx.pod_manifest("read", specs.tools_pod_spec(settings.images.tools, settings.resources))
    with ctx.pod(manifest):
        result = ctx.exec(manifest["metadata"]["name"], "tools", READINGS, timeout_s=30)
    return verdict(result.stdout, result.rc, result.tail())


def verdict(stdout: str, rc: int, tail: str) -> Outcome:
    """Assess the readings (pure, over the recorded output)."""
    readings = key_values(stdout)
    if "max_user_namespaces" not in readings:
        return Outcome(
            Status.INCONCLUSIVE,
            f"could not read the settings: rc={rc} {tail}",
            {"raw": stdout[-2000:]},
        )
    found = assess(readings)
    evidence: dict[str, Any] = {
        "readings": readings,
        "observed": list(found.observed),
        "inferred": list(found.inferred),
        "blocks": found.blocks_by_mode(),
        "active": list(found.active),
    }
    lsm_word = ", ".join(found.active) or "none active"
    facts = Facts(blocks=found.blocks, node_security=found.node)
    if found.blocks:
        causes = "; ".join(f"{block.mode.value}: {block.cause}" for block in found.blocks)
        return Outcome(Status.FAIL, f"LSM {lsm_word}; observed settings block {causes}", evidence, facts=facts)
    return Outcome(
        Status.PASS,
        f"LSM {lsm_word}; {found.userns}; no observed setting blocks a mode",
        evidence,
        remediation="",
        facts=facts,
    )


PROBE = ProbeDefinition(
    id="lsm",
    capability="lsm",
    title="AppArmor/SELinux and user-namespace settings do not block the modes",
    remediation=REMEDIATION,
    run=run,
)
