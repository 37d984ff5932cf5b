"""The result model: the only vocabulary shared by probes, the pytest plugin and the reports.

Results flow one way: probe pod -> evidence -> Verdict -> pytest outcome -> report -> recommendation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# CONTRACT (design.md): capability names as they appear in report JSON v1.
CAPABILITIES: tuple[str, ...] = (
    "privileged-admission",
    "overlay-cache",
    "socket-sharing",
    "docker-run",
    "buildkit-rootless",
    "lsm",
    "sysbox",
    "host-socket",
)


class Status(enum.Enum):
    """How a check ended. Only PASS means the capability was proven by doing the real thing."""

    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"


class Mode(enum.Enum):
    """CONTRACT (design.md): ways of building containers in pods, as report JSON v1 names them."""

    DIND = "dind"
    BUILDKIT_ROOTLESS = "buildkit-rootless"
    SYSBOX = "sysbox"
    HOST_SOCKET = "host-socket"
    NONE = "none"


Evidence = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """One check's conclusion, with what was seen and what to do about it."""

    id: str
    capability: str
    status: Status
    summary: str
    evidence: Evidence = field(default_factory=dict)
    remediation: str = ""
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The report JSON v1 shape of a check."""
        return {
            "id": self.id,
            "capability": self.capability,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": self.evidence,
            "remediation": self.remediation,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(frozen=True)
class NodeInfo:
    """What the API says about a node: enough to tell node pools and runtimes apart."""

    name: str
    kubelet_version: str
    container_runtime: str
    kernel: str
    os_image: str
    architecture: str
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report JSON v1 shape of a node."""
        return {
            "name": self.name,
            "kubelet_version": self.kubelet_version,
            "container_runtime": self.container_runtime,
            "kernel": self.kernel,
            "os_image": self.os_image,
            "architecture": self.architecture,
        }


@dataclass(frozen=True)
class ClusterInfo:
    """Which cluster was probed, as the report names it."""

    server: str
    version: str
    nodes: tuple[NodeInfo, ...] = ()
    namespace: str = ""
    namespace_labels: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The report JSON v1 shape of the cluster block."""
        return {
            "server": self.server,
            "version": self.version,
            "nodes": [node.to_json() for node in self.nodes],
            "namespace": self.namespace,
            "namespace_labels": self.namespace_labels,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class RunResult:
    """Everything a report needs: the cluster, every verdict, and how long the run took."""

    cluster: ClusterInfo
    verdicts: tuple[Verdict, ...]
    generated_at: str
    total_s: float
    required_mode: Mode | None = None

    def verdict(self, check_id: str) -> Verdict | None:
        """The verdict of one check, or None when it was not run (deselected)."""
        return next((v for v in self.verdicts if v.id == check_id), None)
