"""The result model: the only vocabulary shared by probes, the pytest plugin and the reports.

Results flow one way: probe pod -> evidence and typed facts -> Verdict -> pytest outcome -> report ->
recommendation. Evidence is free-form (what a person reads); Facts are the typed values the recommendation and the
snippets rely on, each with one definition of its JSON keys, so nothing downstream re-parses evidence dicts.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any


class Status(enum.Enum):
    """How a check ended. Only PASS means the capability was proven by doing the real thing."""

    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"


class Mode(enum.Enum):
    """CONTRACT (docs/contracts.md): ways of building containers in pods, as report JSON v1 names them."""

    DIND = "dind"
    BUILDKIT_ROOTLESS = "buildkit-rootless"
    KANIKO = "kaniko"
    SYSBOX = "sysbox"
    HOST_SOCKET = "host-socket"
    BUILDPACKS = "buildpacks"
    """Cloud Native Buildpacks: builds and pushes from source, no Dockerfile (a separate question from build_only)."""
    NONE = "none"


class Basis(enum.Enum):
    """Whether a conclusion was seen (a setting read, a command's result) or reasoned from what was seen."""

    OBSERVED = "observed"
    INFERRED = "inferred"


Evidence = dict[str, Any]
EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Admission:
    """The API server's answer to a create (or dry-run create) of a pod; admitted None = no answer (unknown)."""

    admitted: bool | None
    code: int
    source: str = ""
    message: str = ""
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Evidence form, for the report."""
        return {
            "admitted": self.admitted,
            "code": self.code,
            "source": self.source,
            "message": self.message,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class OverlayResult:
    """An overlay mount tried where a mode keeps its layers: on an emptyDir, or on a PVC of a StorageClass."""

    storage_class: str
    """'' for the emptyDir (node disk)."""
    fs_type: str
    overlay: bool | None
    """None when the mount could not be tried (the pod with the volume never ran)."""
    reason: str = ""
    nfs_like: bool = False
    """The class's provisioner looks like NFS/EFS/CephFS/FUSE: an inference; the mount is the proof."""

    def to_json(self) -> dict[str, Any]:
        """Evidence form, for the report."""
        return {
            "storage_class": self.storage_class,
            "fs_type": self.fs_type,
            "overlay": self.overlay,
            "reason": self.reason,
            "rwx_capable": self.nfs_like,
        }


@dataclass(frozen=True)
class ModeBlock:
    """A setting that stops a mode, and whether that was observed or inferred."""

    mode: Mode
    cause: str
    basis: Basis = Basis.OBSERVED

    def describe(self) -> str:
        """'lsm observed: <cause>' style text for a cause chain."""
        return f"{self.basis.value}: {self.cause}"


@dataclass(frozen=True)
class TestedSpec:
    """A pod spec exactly as a probe submitted it, and whether doing the real thing with it worked.

    The report prints these as the config to paste: what users copy is what was tested, with the run's images.
    """

    __test__ = False  # not a pytest test class, despite the name

    mode: Mode
    layout: str
    """'classic' or 'native' sidecar for DinD; the mode id otherwise."""
    spec: Mapping[str, Any]
    """The pod spec users paste: the probe's containers and volumes within the pod-level fields the probe pod had."""
    proven: bool
    annotations: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    """What the pasted pod needs or leaves out that its spec cannot say (a Secret that must exist where it runs, the
    probe pod's own deadline), printed as comments beside it."""
    check: str = ""
    """The check that submitted it (the engine sets it): a mode's config is printed in a layout every check that
    tested the mode proved, so a layout one check proved alone is not passed off as what another one proved."""


LSM_NAMES = {"apparmor": "AppArmor", "selinux": "SELinux"}


BASELINE_SELINUX_TYPES = ("container_t", "container_init_t", "container_kvm_t")
"""The SELinux types Pod Security baseline admits in seLinuxOptions.type (besides none): spc_t is not one."""


@dataclass(frozen=True)
class NodeSecurity:
    """What an ordinary pod read of its node's cgroup version and LSMs: the API says neither.

    Only what was read: '' is a value not read (never a guess); the node is the one the check's pod ran on (the
    engine records it on the verdict, the probe cannot know it).
    """

    cgroup: str
    """'v2' (/sys/fs/cgroup is cgroup2fs), 'v1' (tmpfs: v1 or hybrid), '' when neither was read."""
    lsm: tuple[str, ...]
    """The active LSMs among apparmor and selinux; () when neither is active."""
    apparmor_profile: str = ""
    """The probe pod's own AppArmor confinement ('cri-containerd.apparmor.d (enforce)', 'unconfined')."""
    selinux_mode: str = ""
    """'enforcing' or 'permissive'; '' when not read."""
    selinux_label: str = ""
    """The probe pod's own SELinux label ('system_u:system_r:container_t:s0:c1,c2')."""

    def describe(self) -> str:
        """'cgroup v2, AppArmor (cri-containerd.apparmor.d enforce)': what a report says of the node."""
        parts = [f"cgroup {self.cgroup}" if self.cgroup else "cgroup version not read"]
        for lsm in self.lsm:
            word = LSM_NAMES.get(lsm, lsm)
            if lsm == "apparmor":
                profile = self.apparmor_profile.replace(" (", " ").rstrip(")")
                parts.append(f"{word} ({profile})" if profile else word)
            elif lsm == "selinux":
                mode = f"{word} {self.selinux_mode}".rstrip()
                parts.append(f"{mode} ({self.selinux_label})" if self.selinux_label else mode)
            else:
                parts.append(word)
        if not self.lsm:
            parts.append("no AppArmor or SELinux")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The keys a report JSON v1 node gains ('' read as null: not read is not a value)."""
        return {
            "cgroup": self.cgroup or None,
            "lsm": list(self.lsm),
            "apparmor_profile": self.apparmor_profile or None,
            "selinux_mode": self.selinux_mode or None,
            "selinux_label": self.selinux_label or None,
        }


NOT_OBSERVED_JSON: Mapping[str, None] = MappingProxyType(dict.fromkeys(NodeSecurity(cgroup="", lsm=()).to_json()))
"""A node no check read from inside a pod: every key null."""


@dataclass(frozen=True)
class Facts:
    """Typed conclusions of one check that the recommendation and the snippets read."""

    admission: Mapping[Mode, Admission] = field(default_factory=dict)
    overlay: tuple[OverlayResult, ...] = ()
    blocks: tuple[ModeBlock, ...] = ()
    specs: tuple[TestedSpec, ...] = ()
    node_security: NodeSecurity | None = None
    """The cgroup version and LSMs read on the node the check's pod ran on (the lsm check); None when not read."""

    def cache_overlay(self) -> OverlayResult | None:
        """The overlay result on the cache StorageClass, when one was tested."""
        return next((result for result in self.overlay if result.storage_class), None)

    def emptydir_overlay(self) -> OverlayResult | None:
        """The overlay result on an emptyDir."""
        return next((result for result in self.overlay if not result.storage_class), None)

    def blocks_for(self, mode: Mode) -> tuple[ModeBlock, ...]:
        """The settings seen to stop one mode."""
        return tuple(block for block in self.blocks if block.mode is mode)


NO_FACTS = Facts()


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
    facts: Facts = NO_FACTS
    nodes: tuple[str, ...] = ()
    """The nodes the check's pods ran on (the engine records them; evidence 'node' says the same to a reader): a
    mode needs all its checks proven on one node."""

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
    """What the API says about a node (enough to tell node pools and runtimes apart), and what a pod read on it."""

    name: str
    kubelet_version: str
    container_runtime: str
    kernel: str
    os_image: str
    architecture: str
    labels: dict[str, str] = field(default_factory=dict)
    security: NodeSecurity | None = None
    """The cgroup version and LSMs a check read from inside a pod on this node; None when none ran on it."""

    def to_json(self) -> dict[str, Any]:
        """The report JSON v1 shape of a node."""
        return {
            "name": self.name,
            "kubelet_version": self.kubelet_version,
            "container_runtime": self.container_runtime,
            "kernel": self.kernel,
            "os_image": self.os_image,
            "architecture": self.architecture,
            **(NOT_OBSERVED_JSON if self.security is None else self.security.to_json()),
        }


@dataclass(frozen=True)
class ImageUse:
    """An image a run used and the digest the node resolved it to: tells 'the cluster changed' from 'the tag moved'."""

    ref: str
    digest: str = ""
    """The pod status's imageID ('' when no pod with it ran)."""

    def to_json(self) -> dict[str, str]:
        """The report JSON v1 shape of an image."""
        return {"ref": self.ref, "digest": self.digest}


@dataclass(frozen=True)
class Placement:
    """Where probe pods may run (--node-selector, --toleration, --node, or one pool of --each-pool).

    Only pod-level scheduling fields: a verdict is about the nodes where CI runs, so every probe pod of the run
    (and the volume it binds, for WaitForFirstConsumer classes) lands where these say.
    """

    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, str], ...] = ()
    """Kubernetes toleration objects (key, operator, value, effect); {"operator": "Exists"} tolerates every taint."""
    node: str = ""
    """One node by name (a nodeAffinity on metadata.name, so the scheduler and volume binding still take part)."""

    @property
    def targeted(self) -> bool:
        """Whether the run was told where to go (else the scheduler's default placement)."""
        return bool(self.node_selector or self.tolerations or self.node)

    def to_json(self) -> dict[str, Any]:
        """The report JSON v1 shape of a placement."""
        return {
            "node_selector": dict(self.node_selector),
            "tolerations": [dict(toleration) for toleration in self.tolerations],
            "node": self.node,
        }


NO_PLACEMENT = Placement()


@dataclass(frozen=True)
class PoolResult:
    """One node pool of an --each-pool run: the node that stood for it, why, and its checks' verdicts."""

    name: str
    """The pool label's value on the pool's nodes."""
    node: str
    chosen_because: str
    nodes: tuple[str, ...]
    """Every Ready node of the pool (the probes ran on `node` only)."""
    placement: Placement
    verdicts: tuple[Verdict, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The pool's identity in report JSON v1 (the report adds its checks, modes and recommendation)."""
        return {
            "pool": self.name,
            "node": self.node,
            "chosen_because": self.chosen_because,
            "nodes": list(self.nodes),
            "placement": self.placement.to_json(),
        }


@dataclass(frozen=True)
class UnprobedPool:
    """A pool of an --each-pool run that exists by label but could not be probed: nothing is proven on it."""

    name: str
    nodes: tuple[str, ...]
    """Every node with the pool's label value (matching the run's selector), whatever its state."""
    reason: str
    """Why no probe ran there: its nodes NotReady or cordoned, or tainted without a --toleration."""
    kind: str = ""
    """The reason in a few words, the same for every pool it holds for (what a summary of many pools counts)."""

    def to_json(self) -> dict[str, Any]:
        """The report JSON v1 shape of an unprobed pool."""
        return {"pool": self.name, "nodes": list(self.nodes), "reason": self.reason}


UNPROBED_NAMED = 5
"""Up to this many unprobed pools, each is named with why; beyond it, one line sums them up."""


def summarize_unprobed(pools: Sequence[UnprobedPool]) -> str | None:
    """One line for many unprobed pools (a big cluster's scaled-down pools), None for few (each is named then).

    Hundreds of lines would bury the verdict: the line counts pools and nodes by why and names the first few; the
    JSON report's unprobed_pools keeps every pool, its nodes and why.
    """
    if len(pools) <= UNPROBED_NAMED:
        return None
    kinds = Counter(pool.kind or "other reasons" for pool in pools)
    by_kind = ", ".join(f"{count} with {kind}" for kind, count in kinds.most_common())
    names = ", ".join(pool.name for pool in pools[:3])
    nodes = sum(len(pool.nodes) for pool in pools)
    return (
        f"{len(pools)} pools NOT PROBED ({nodes} nodes): {by_kind}; {names} and {len(pools) - 3} more "
        "(each pool, its nodes and why: the JSON report's unprobed_pools)"
    )


@dataclass(frozen=True)
class ClusterInfo:
    """Which cluster was probed, as the report names it."""

    server: str
    version: str
    nodes: tuple[NodeInfo, ...] = ()
    namespace: str = ""
    namespace_labels: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    images: Mapping[str, ImageUse] = field(default_factory=dict)
    """Role (dind, buildkit, tools, registry) -> the image used and its resolved digest."""
    probed_nodes: tuple[str, ...] = ()
    """The nodes probe pods ran on (every pool's, for --each-pool)."""
    placement: Placement = NO_PLACEMENT
    """Where the run was told to place its pods (a single-pool run; --each-pool gives each pool its own)."""

    def with_security_of(self, verdicts: Iterable[Verdict]) -> ClusterInfo:
        """The nodes with the security facts of the checks that ran on them alone (pods on two nodes: on neither).

        Each node gets what was read on it; a node no such check ran on keeps None (not observed), never a guess.
        """
        read: dict[str, NodeSecurity] = {}
        for verdict in verdicts:
            if verdict.facts.node_security is not None and len(verdict.nodes) == 1:
                read.setdefault(verdict.nodes[0], verdict.facts.node_security)
        if not read:
            return self
        nodes = tuple(replace(node, security=read.get(node.name, node.security)) for node in self.nodes)
        return replace(self, nodes=nodes)

    def to_json(self) -> dict[str, Any]:
        """The report JSON v1 shape of the cluster block."""
        return {
            "server": self.server,
            "version": self.version,
            "nodes": [node.to_json() for node in self.nodes],
            "namespace": self.namespace,
            "namespace_labels": self.namespace_labels,
            "notes": list(self.notes),
            "images": {role: image.to_json() for role, image in self.images.items()},
            "probed_nodes": list(self.probed_nodes),
            "placement": self.placement.to_json(),
        }


@dataclass(frozen=True)
class Throttling:
    """How often the API server throttled the run (429) and how long the run waited as its Retry-After said."""

    responses: int
    waited_s: float

    def to_json(self) -> dict[str, Any]:
        """The report JSON v1 shape of `throttled`."""
        return {"responses": self.responses, "waited_s": round(self.waited_s, 1)}

    def describe(self) -> str:
        """One line for the terminal and Markdown reports."""
        return (
            f"API server throttling: {self.responses} request(s) answered 429 Too Many Requests, "
            f"{self.waited_s:.1f}s waited as Retry-After asked"
        )


@dataclass(frozen=True)
class RunResult:
    """Everything a report needs: the cluster, every verdict, and how long the run took."""

    cluster: ClusterInfo
    verdicts: tuple[Verdict, ...]
    generated_at: str
    total_s: float
    required_mode: Mode | None = None
    capabilities: tuple[str, ...] = ()
    """Every check the suite knows, in catalog order (so a deselected one shows as not run)."""
    pool_label: str = ""
    """The node label whose values name the pools (--each-pool); '' for a single-pool run."""
    pools: tuple[PoolResult, ...] = ()
    """Per-pool verdicts of an --each-pool run; then `verdicts` is empty (no check ran 'on the cluster')."""
    unprobed_pools: tuple[UnprobedPool, ...] = ()
    """Pools of an --each-pool run that exist by label but were not probed: no mode is proven on every pool."""
    throttled: Throttling | None = None
    """How the API server throttled the run (429s honoured); None when it never did."""

    def for_pool(self, pool: PoolResult) -> RunResult:
        """The run as if only that pool had been probed: what each pool's assessment and report read."""
        cluster = replace(self.cluster, probed_nodes=(pool.node,), placement=pool.placement)
        return replace(self, cluster=cluster, verdicts=pool.verdicts, pool_label="", pools=(), unprobed_pools=())

    def verdict(self, check_id: str) -> Verdict | None:
        """The verdict of one check, or None when it was not run (deselected, or the run stopped first)."""
        return next((v for v in self.verdicts if v.id == check_id), None)

    def tested_specs(self, mode: Mode) -> tuple[TestedSpec, ...]:
        """Every pod spec any check submitted for a mode, in verdict order."""
        return tuple(spec for verdict in self.verdicts for spec in verdict.facts.specs if spec.mode is mode)


@dataclass(frozen=True)
class UnprobedCluster:
    """A cluster (kubeconfig context) of a fleet run that could not be probed: nothing is proven on it."""

    context: str
    server: str
    """The API server's URL, '' when the context could not even be loaded."""
    reason: str
    """Why no probe ran there: its preflight's own error (unreachable, RBAC, kubeconfig)."""

    def to_json(self) -> dict[str, Any]:
        """The report JSON v1 shape of an unprobed cluster."""
        return {"context": self.context, "server": self.server, "reason": self.reason}


@dataclass(frozen=True)
class ClusterRun:
    """One cluster of a fleet run: the kubeconfig context that named it and its own run, as if probed alone."""

    context: str
    run: RunResult


@dataclass(frozen=True)
class FleetRun:
    """A run over several clusters at once (--context repeated, --all-contexts): each cluster's run, and the rest.

    A CI job may land on any cluster of the fleet, so a mode is usable fleet-wide only where proven on every one.
    """

    clusters: tuple[ClusterRun, ...]
    """The probed clusters, in the order the contexts were given."""
    unprobed: tuple[UnprobedCluster, ...]
    generated_at: str
    total_s: float
    required_mode: Mode | None = None
    capabilities: tuple[str, ...] = ()
