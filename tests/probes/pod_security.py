"""Pod Security Standards, level restricted, as the Kubernetes docs define it: which rules a pod breaks, and where.

Written from the standard's table (kubernetes.io/docs/concepts/security/pod-security-standards), not from dindcheck's
specs, so a test can ask "would Pod Security restricted admit this pod?" of a spec the probes really build. Each
violation names the container it is about ("pod" for pod-level fields), as the API server's refusal does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})


def restricted_violations(spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(container or 'pod', rule) for every rule of Pod Security restricted (and so baseline) that spec breaks."""
    found: set[tuple[str, str]] = set()
    pod_context = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.add(("pod", field))
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.add(("pod", f"volume {volume['name']} of type {', '.join(sorted(kinds))}"))
    if spec.get("securityContext", {}).get("sysctls"):
        found.add(("pod", "sysctls"))
    containers = [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]
    for container in containers:
        found |= {(container["name"], rule) for rule in _container_violations(container, pod_context)}
    return found


def _container_violations(container: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    context = container.get("securityContext") or {}

    def effective(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    rules: list[str] = []
    if context.get("privileged"):
        rules.append("privileged")
    if context.get("windowsOptions", {}).get("hostProcess"):
        rules.append("hostProcess")
    if any(port.get("hostPort") for port in container.get("ports") or []):
        rules.append("hostPort")
    if context.get("procMount", "Default") != "Default":
        rules.append("procMount")
    if (effective("appArmorProfile") or {}).get("type") == "Unconfined":
        rules.append("appArmorProfile Unconfined")
    if (effective("seccompProfile") or {}).get("type") not in PROFILE_TYPES:
        rules.append("seccompProfile not RuntimeDefault or Localhost")
    if context.get("allowPrivilegeEscalation") is not False:
        rules.append("allowPrivilegeEscalation != false")
    if effective("runAsNonRoot") is not True:
        rules.append("runAsNonRoot != true")
    if effective("runAsUser") == 0:
        rules.append("runAsUser=0")
    capabilities = context.get("capabilities") or {}
    added = set(capabilities.get("add") or [])
    if not added <= BASELINE_CAPABILITIES or not added <= {"NET_BIND_SERVICE"}:
        rules.append(f"capabilities added: {', '.join(sorted(added))}")
    if "ALL" not in (capabilities.get("drop") or []):
        rules.append("capabilities not dropping ALL")
    return rules
