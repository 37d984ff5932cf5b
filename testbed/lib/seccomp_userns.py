"""Adds "no user namespaces" seccomp rules to an OCI runtime spec (used by runc-wrapper for `up --userns off`).

The real setting is the node sysctl user.max_user_namespaces=0: clone()/unshare() with CLONE_NEWUSER then fail with
ENOSPC. Where the kernel refuses that sysctl (writing it needs CAP_SYS_RESOURCE, which some VMs' capability bounding
set lacks), the testbed gives every container the same behaviour with seccomp:
- clone and unshare with the CLONE_NEWUSER bit set fail with ENOSPC (the errno of max_user_namespaces=0);
- clone3 fails with ENOSYS (its flags live in memory seccomp cannot inspect; libc and Go then fall back to clone).
A spec without a seccomp profile gets an allow-by-default profile with just these rules. A spec with a profile keeps
it; unconditional allows of clone/unshare/clone3 in it are narrowed to "CLONE_NEWUSER not set".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CLONE_NEWUSER = 0x10000000
ENOSPC = 28
ENOSYS = 38
MARK = "dindcheck-testbed/userns-off"
ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def newuser_arg(*, is_set: bool) -> list[dict[str, Any]]:
    """A seccomp argument condition: the CLONE_NEWUSER bit of the flags is set / not set."""
    return [
        {"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER if is_set else 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]


DENY: list[dict[str, Any]] = [
    {"names": ["clone", "unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSPC, "args": newuser_arg(is_set=True)},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
]
NAMES = {"clone", "unshare", "clone3"}


def patch(spec: dict[str, Any]) -> dict[str, Any]:
    """Adds the rules to SPEC (idempotent) and returns it."""
    linux = spec.setdefault("linux", {})
    profile = linux.get("seccomp")
    if profile is None:
        linux["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ARCHES,
            "syscalls": [{**rule, "comment": MARK} for rule in DENY],
        }
        return spec
    if any(rule.get("comment") == MARK for rule in profile.get("syscalls") or []):
        return spec  # already patched
    narrowed: set[str] = set()
    kept: list[dict[str, Any]] = []
    for rule in profile.get("syscalls") or []:
        names = set(rule.get("names") or [])
        if rule.get("action") == "SCMP_ACT_ALLOW" and not rule.get("args") and names & NAMES:
            narrowed |= names & NAMES
            rest = [n for n in rule["names"] if n not in NAMES]
            if rest:
                kept.append({**rule, "names": rest})
            continue
        kept.append(rule)
    kept.extend(
        {"names": [name], "action": "SCMP_ACT_ALLOW", "args": newuser_arg(is_set=False)}
        for name in sorted(narrowed - {"clone3"})
    )
    kept.extend({**rule, "comment": MARK} for rule in DENY)
    profile["syscalls"] = kept
    return spec


def main(argv: list[str]) -> int:
    """seccomp_userns.py CONFIG_JSON: patches the file in place."""
    path = Path(argv[1])
    spec = json.loads(path.read_text())
    path.write_text(json.dumps(patch(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
