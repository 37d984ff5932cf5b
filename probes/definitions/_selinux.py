"""SELinux as a pod sees it: its own label, and the denials that label explains.

A pod sees no selinuxfs (/sys/fs/selinux is an empty directory in containers, privileged ones too) and no
securityfs, so its own label (/proc/self/attr/current) is the one sign of SELinux it can read: it does not say
enforcing or permissive. A refusal (EACCES, EPERM) in a container whose label is a confined type such as container_t
is SELinux's to explain; in spc_t (what a privileged container runs as) or unconfined_t it is not.
"""

from __future__ import annotations

import re

from probes.engine import ProbeContext
from probes.exceptions import ExecChannelError

SELINUX_LABEL = re.compile(r"^[^:\s]+:[^:\s]+:(?P<type>[^:\s]+):s\d+(?:-s\d+)?(?::c\d+(?:[.,]c\d+)*)?$")
"""user:role:type:level (an AppArmor confinement reads 'profile (mode)' or 'unconfined')."""
UNCONFINED_TYPES = frozenset({"spc_t", "unconfined_t"})
READ_LABEL = r"{ tr -d '\000' < /proc/self/attr/current; } 2>/dev/null"
LABEL_LINE = f'echo "selinux_label=$({READ_LABEL})"'
"""A script line printing the container's own label as selinux_label=... (empty where no LSM gives one)."""
SPC_T = "securityContext.seLinuxOptions.type: spc_t"
"""What users set to take a container out of container_t (Pod Security 'baseline' refuses it, as it refuses
privileged)."""
PROVE_SPC_T = (
    "Rerun dindcheck with --selinux-type spc_t to prove that on these nodes: every probe pod then runs as spc_t, and "
    "the config to paste carries it."
)


def selinux_type(label: str) -> str:
    """The type of an SELinux label ('container_t'), or '' when the text is not one."""
    found = SELINUX_LABEL.match(label.strip())
    return found.group("type") if found else ""


def confined_type(label: str) -> str:
    """The label's type when SELinux confines it (container_t), '' for spc_t, unconfined_t or no SELinux label."""
    kind = selinux_type(label)
    return "" if kind in UNCONFINED_TYPES else kind


def read_label(ctx: ProbeContext, pod: str, container: str) -> str:
    """A running container's own label; '' when it has none or the exec channel could not read it."""
    try:
        return ctx.exec(pod, container, READ_LABEL, timeout_s=30).stdout.strip()
    except ExecChannelError:
        return ""
