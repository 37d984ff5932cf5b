"""Recorded-looking runs for the report tests: the testbed profiles from the issue, as verdicts.

Each profile is what the probes report on the testbed knob of the same name (design.md, testbed CONTRACT), so a
recommendation test reads as "on a cluster like this, recommend that".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from probes import specs
from probes.definitions import catalog
from probes.definitions.overlay_cache import overlay_facts
from probes.engine import Outcome, ProbeContext, RunScope, Task, pasted, placed
from probes.model import (
    Admission,
    Basis,
    ClusterInfo,
    Facts,
    Mode,
    ModeBlock,
    NodeInfo,
    Placement,
    PoolResult,
    RunResult,
    Status,
    TestedSpec,
    Verdict,
)
from probes.settings import Images, Resources

VerdictFactory = Callable[..., Verdict]
RunFactory = Callable[..., RunResult]

NODE = NodeInfo(
    name="testbed-0",
    kubelet_version="v1.31.4",
    container_runtime="containerd://1.7.24",
    kernel="6.1.0-28-amd64",
    os_image="Debian GNU/Linux 12 (bookworm)",
    architecture="amd64",
)
CLUSTER = ClusterInfo(
    server="https://127.0.0.1:6443",
    version="v1.31.4",
    nodes=(NODE,),
    namespace="dindcheck-7f3a",
    namespace_labels={
        "app.kubernetes.io/managed-by": "dindcheck",
        "pod-security.kubernetes.io/enforce": "privileged",
    },
    notes=("the run labelled its namespace pod-security.kubernetes.io/enforce=privileged",),
)

PSA_DIND_MESSAGE = (
    'pods "dindcheck-dind" is forbidden: violates PodSecurity "baseline:latest": privileged '
    '(container "dind" must not set securityContext.privileged=true)'
)
PSA_BUILDKIT_MESSAGE = (
    'pods "dindcheck-buildkit" is forbidden: violates PodSecurity "baseline:latest": seccompProfile '
    '(container "buildkitd" must not set securityContext.seccompProfile.type to "Unconfined")'
)
VAP_MESSAGE = (
    'pods "dindcheck-dind" is forbidden: ValidatingAdmissionPolicy "deny-privileged" with binding '
    '"deny-privileged" denied request: privileged containers are not allowed'
)


TESTED_IMAGES = Images(dind="docker:29-dind", buildkit="moby/buildkit:rootless", tools="debian:bookworm-slim")
TESTED_RESOURCES = Resources()


RUN_SCOPE = RunScope(CLUSTER.namespace, "7f3a")


def _not_run(_context: ProbeContext) -> Outcome:
    raise AssertionError("the report tests never run a probe")


def as_the_engine_records(check_id: str, recorded: tuple[TestedSpec, ...]) -> tuple[TestedSpec, ...]:
    """What the engine makes of a probe's records (run_probe): the probe pod's pod fields, the check that ran it."""
    task = Task(check_id, check_id, "", _not_run)
    return tuple(pasted(tested, RUN_SCOPE, task) for tested in recorded)


def tested_specs(check_id: str, status: Status) -> tuple[TestedSpec, ...]:
    """The specs the probe of check_id records, built with the functions the probes call, as the engine keeps them."""
    return as_the_engine_records(check_id, _recorded(check_id, status))


def _recorded(check_id: str, status: Status) -> tuple[TestedSpec, ...]:
    proven = status is Status.PASS
    if check_id == "socket-sharing":
        return tuple(
            specs.record(
                Mode.DIND, layout, specs.dind_pod_spec(TESTED_IMAGES, TESTED_RESOURCES, layout=layout), proven=proven
            )
            for layout in (specs.CLASSIC, specs.NATIVE)
        )
    if check_id == "docker-run":
        return (
            specs.record(Mode.DIND, specs.CLASSIC, specs.dind_pod_spec(TESTED_IMAGES, TESTED_RESOURCES), proven=proven),
        )
    builders: dict[str, tuple[Mode, Callable[[Images, Resources], dict[str, Any]]]] = {
        "buildkit-rootless": (Mode.BUILDKIT_ROOTLESS, specs.buildkit_pod_spec),
        "kaniko": (Mode.KANIKO, specs.kaniko_pod_spec),
        "sysbox": (Mode.SYSBOX, specs.sysbox_pod_spec),
        "host-socket": (Mode.HOST_SOCKET, specs.host_socket_pod_spec),
        "buildpacks": (Mode.BUILDPACKS, specs.buildpacks_pod_spec),
    }
    if check_id not in builders:
        return ()
    mode, build = builders[check_id]
    annotations = specs.SYSBOX_ANNOTATIONS if mode is Mode.SYSBOX else None
    return (
        specs.record(mode, mode.value, build(TESTED_IMAGES, TESTED_RESOURCES), proven=proven, annotations=annotations),
    )


def facts_from(check_id: str, status: Status, evidence: dict[str, Any]) -> Facts:
    """The typed facts a probe records next to evidence of this shape (the recommendation reads only these)."""
    if check_id == "privileged-admission":
        answers = {
            Mode(mode): Admission(
                admitted=answer.get("admitted"),
                code=int(answer.get("code", 201 if answer.get("admitted") else 403)),
                source=answer.get("source", ""),
                message=answer.get("message", ""),
                warnings=tuple(answer.get("warnings", ())),
            )
            for mode, answer in evidence.get("specs", {}).items()
        }
        return Facts(admission=answers)
    if check_id == "overlay-cache":
        return overlay_facts(evidence)
    if check_id == "lsm":
        inferred = evidence.get("inferred", [])
        return Facts(
            blocks=tuple(
                ModeBlock(Mode(mode), cause, Basis.INFERRED if any(i in cause for i in inferred) else Basis.OBSERVED)
                for mode, cause in evidence.get("blocks", {}).items()
            )
        )
    return Facts(specs=tested_specs(check_id, status))


def make_verdict(
    check_id: str,
    status: Status = Status.PASS,
    summary: str | None = None,
    evidence: dict[str, Any] | None = None,
    *,
    remediation: str = "",
) -> Verdict:
    """A verdict with a readable default summary, so tests only spell out what they are about."""
    return Verdict(
        id=check_id,
        capability=check_id,
        status=status,
        summary=summary if summary is not None else f"{check_id} {status.value}",
        evidence=evidence or {},
        remediation=remediation,
        duration_s=1.5,
        facts=facts_from(check_id, status, evidence or {}),
    )


def make_run(*verdicts: Verdict, required_mode: Mode | None = None) -> RunResult:
    """A run over the testbed cluster with exactly these verdicts (anything missing was not run)."""
    return RunResult(
        cluster=CLUSTER,
        verdicts=verdicts,
        generated_at="2025-06-01T12:00:00Z",
        total_s=84.25,
        required_mode=required_mode,
        capabilities=tuple(definition.id for definition in catalog()),
    )


def _admission(**specs: dict[str, Any]) -> dict[str, Any]:
    admitted = {"admitted": True, "message": "", "source": "", "warnings": []}
    modes = ("dind", "buildkit-rootless", "sysbox", "host-socket")
    return {"specs": {mode: specs.get(mode.replace("-", "_"), admitted) for mode in modes}}


def _overlay(*, cache_overlay: bool = True, storage_class: str = "local-ext4", fs_type: str = "ext4") -> dict[str, Any]:
    reason = "" if cache_overlay else "overlayfs: upper fs does not support tmpfile"
    return {
        "emptydir": {"overlay": True, "fs_type": "ext2/ext3"},
        "cache_class": {
            "storage_class": storage_class,
            "overlay": cache_overlay,
            "fs_type": fs_type,
            "reason": reason,
            "rwx_capable": False,
        },
    }


SYSBOX_MISSING = make_verdict(
    "sysbox",
    Status.FAIL,
    'no RuntimeClass "sysbox-runc": sysbox is not installed',
    {"runtime_class": None},
)
HOST_SOCKET_MISSING = make_verdict(
    "host-socket",
    Status.FAIL,
    "hostPath type check failed: /var/run/docker.sock is not a socket file",
    {"runtime": "containerd://1.7.24"},
)
LSM_NONE = make_verdict(
    "lsm",
    Status.PASS,
    "no LSM active (lockdown, capability, landlock, bpf); user namespaces allowed",
    {"blocks": {}, "observed": ["active LSMs: lockdown,capability,landlock,bpf"], "inferred": []},
)

TESTBED_NODE_VERDICTS = (LSM_NONE, SYSBOX_MISSING, HOST_SOCKET_MISSING)
"""lsm, sysbox and host-socket as the testbed's nodes answer them whatever the admission profile."""
DIND_NOT_ADMITTED = (
    make_verdict("socket-sharing", Status.SKIPPED, "the dind pod was not admitted"),
    make_verdict("docker-run", Status.SKIPPED, "the dind pod was not admitted"),
)
"""The dind pod's checks when the pod was refused: skipped, since nothing ran in it."""


def permissive() -> RunResult:
    """--psa-default privileged: dind and rootless BuildKit both work; no sysbox, containerd nodes."""
    return make_run(
        make_verdict("privileged-admission", evidence=_admission(), summary="every mode's pod admitted and ran"),
        make_verdict("overlay-cache", evidence=_overlay(), summary="overlay works on emptyDir and on local-ext4"),
        make_verdict("socket-sharing", summary="docker info answered after 4.1s over the shared /var/run"),
        make_verdict("docker-run", summary="nested docker run worked (bridge network, cgroup v1)"),
        make_verdict("buildkit-rootless", summary="built and pushed testbed-registry:5000/dindcheck/probe:1"),
        *TESTBED_NODE_VERDICTS,
    )


def deny_privileged() -> RunResult:
    """--deny-privileged: a ValidatingAdmissionPolicy refuses privileged pods; rootless BuildKit still works."""
    refused = {"admitted": False, "message": VAP_MESSAGE, "source": "validating-admission-policy", "warnings": []}
    return make_run(
        make_verdict(
            "privileged-admission",
            Status.FAIL,
            "the dind pod was rejected by ValidatingAdmissionPolicy deny-privileged",
            _admission(dind=refused),
        ),
        make_verdict("overlay-cache", evidence=_overlay()),
        *DIND_NOT_ADMITTED,
        make_verdict("buildkit-rootless", summary="built and pushed testbed-registry:5000/dindcheck/probe:1"),
        *TESTBED_NODE_VERDICTS,
    )


def psa_baseline() -> RunResult:
    """--psa-default baseline: privileged and Unconfined profiles are both refused: nothing builds."""
    dind = {"admitted": False, "message": PSA_DIND_MESSAGE, "source": "pod-security-admission", "warnings": []}
    buildkit = {"admitted": False, "message": PSA_BUILDKIT_MESSAGE, "source": "pod-security-admission", "warnings": []}
    return make_run(
        make_verdict(
            "privileged-admission",
            Status.FAIL,
            'dind rejected by Pod Security Admission "baseline:latest"',
            _admission(dind=dind, buildkit_rootless=buildkit),
            remediation="label the namespace pod-security.kubernetes.io/enforce=privileged or exempt it",
        ),
        make_verdict("overlay-cache", evidence=_overlay()),
        *DIND_NOT_ADMITTED,
        make_verdict("buildkit-rootless", Status.FAIL, 'buildkitd pod rejected by PodSecurity "baseline:latest"'),
        *TESTBED_NODE_VERDICTS,
    )


def userns_off() -> RunResult:
    """--userns off: user.max_user_namespaces=0 on the node breaks rootless BuildKit; dind does not care."""
    return make_run(
        make_verdict("privileged-admission", evidence=_admission()),
        make_verdict("overlay-cache", evidence=_overlay()),
        make_verdict("socket-sharing"),
        make_verdict("docker-run"),
        make_verdict(
            "buildkit-rootless",
            Status.FAIL,
            "rootlesskit: fork/exec /proc/self/exe: no space left on device",
        ),
        make_verdict(
            "lsm",
            Status.FAIL,
            "user namespaces are disabled on the node",
            {
                "blocks": {"buildkit-rootless": "user.max_user_namespaces=0"},
                "observed": ["user.max_user_namespaces=0"],
                "inferred": [],
            },
        ),
        SYSBOX_MISSING,
        HOST_SOCKET_MISSING,
    )


def fuse_cache() -> RunResult:
    """--cache-fs fuse: overlay fails on the cache class (as on NFS); everything else works."""
    return make_run(
        make_verdict("privileged-admission", evidence=_admission()),
        make_verdict(
            "overlay-cache",
            Status.FAIL,
            "overlay failed on StorageClass fuse-cache (fuse.bindfs)",
            _overlay(cache_overlay=False, storage_class="fuse-cache", fs_type="fuse.bindfs"),
            remediation="use a block-storage class (ext4/xfs) for build caches",
        ),
        make_verdict("socket-sharing"),
        make_verdict("docker-run"),
        make_verdict("buildkit-rootless"),
        *TESTBED_NODE_VERDICTS,
    )


POOL_LABEL = "eks.amazonaws.com/nodegroup"
CI_TAINT = {"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}
CHOSEN_BECAUSE = "the first Ready node of the pool by name"
IPTABLES_SUMMARY = (
    "nested docker run failed: iptables v1.8.7 (legacy): can't initialize iptables table `nat': Table does not exist "
    "(do you need to insmod?)"
)
FUSE_SUMMARY = "overlay failed on StorageClass fuse-cache (fuse.bindfs)"


def pool_node(name: str, pool: str) -> NodeInfo:
    """A node of the 'default' pool (containerd 1.6, Amazon Linux 2) or the 'ci' pool (containerd 2.1, AL2023)."""
    runtime, kernel, os_image = (
        ("containerd://2.1.3", "6.12.30-41.109.amzn2023.x86_64", "Amazon Linux 2023.7.20250609")
        if pool == "ci"
        else ("containerd://1.6.33", "5.10.238-231.953.amzn2.x86_64", "Amazon Linux 2")
    )
    return NodeInfo(
        name=name,
        kubelet_version="v1.31.7-eks-473151a",
        container_runtime=runtime,
        kernel=kernel,
        os_image=os_image,
        architecture="amd64",
        labels={POOL_LABEL: pool},
    )


DEFAULT_NODES = ("ip-10-0-1-17.ec2.internal", "ip-10-0-1-42.ec2.internal")
CI_NODES = ("ip-10-0-2-8.ec2.internal", "ip-10-0-2-91.ec2.internal", "ip-10-0-2-130.ec2.internal")
POOL_PLACEMENTS = {
    "default": Placement(node_selector={POOL_LABEL: "default"}),
    "ci": Placement(node_selector={POOL_LABEL: "ci"}, tolerations=(CI_TAINT,)),
}


def make_pool(name: str, nodes: tuple[str, ...], verdicts: tuple[Verdict, ...]) -> PoolResult:
    """A pool probed on its first node, placed by the pool label (and tolerating the ci taint), as are its specs."""
    placement = POOL_PLACEMENTS.get(name, Placement(node_selector={POOL_LABEL: name}))
    placed_verdicts = tuple(
        replace(
            verdict,
            facts=replace(
                verdict.facts, specs=tuple(replace(t, spec=placed(t.spec, placement)) for t in verdict.facts.specs)
            ),
        )
        for verdict in verdicts
    )
    return PoolResult(
        name=name,
        node=nodes[0],
        chosen_because=CHOSEN_BECAUSE,
        nodes=nodes,
        placement=placement,
        verdicts=placed_verdicts,
    )


def make_pools_run(*pools: PoolResult, required_mode: Mode | None = None) -> RunResult:
    """An --each-pool run: no verdicts of its own, every pool's in its PoolResult."""
    nodes = tuple(pool_node(node, pool.name) for pool in pools for node in pool.nodes)
    cluster = replace(CLUSTER, nodes=nodes, probed_nodes=tuple(pool.node for pool in pools))
    return replace(
        make_run(required_mode=required_mode),
        cluster=cluster,
        pool_label=POOL_LABEL,
        pools=pools,
    )


def _on_runtime(verdicts: tuple[Verdict, ...], runtime: str) -> tuple[Verdict, ...]:
    """The host-socket verdict names the node's runtime: keep it true to the pool's nodes."""
    return tuple(
        replace(verdict, evidence={"runtime": runtime}) if verdict.id == "host-socket" else verdict
        for verdict in verdicts
    )


def default_pool_verdicts() -> tuple[Verdict, ...]:
    """The default pool: everything the permissive testbed profile proves, on containerd 1.6."""
    return _on_runtime(permissive().verdicts, "containerd://1.6.33")


def ci_pool_verdicts() -> tuple[Verdict, ...]:
    """The tainted ci pool: overlay fails on the FUSE-backed cache class and nested docker run has no iptables nat."""
    broken = {
        "overlay-cache": make_verdict(
            "overlay-cache",
            Status.FAIL,
            FUSE_SUMMARY,
            _overlay(cache_overlay=False, storage_class="fuse-cache", fs_type="fuse.bindfs"),
            remediation="use a block-storage class (ext4/xfs) for build caches",
        ),
        "docker-run": make_verdict(
            "docker-run",
            Status.FAIL,
            IPTABLES_SUMMARY,
            {"exit_code": 125},
            remediation="load the ip_tables and iptable_nat modules on the ci nodes, or run dockerd with nftables",
        ),
    }
    verdicts = tuple(broken.get(verdict.id, verdict) for verdict in permissive().verdicts)
    return _on_runtime(verdicts, "containerd://2.1.3")


def two_pools(*, required_mode: Mode | None = None) -> RunResult:
    """Two pools: default (containerd 1.6) proves all the permissive profile does; ci (containerd 2.1) no dind."""
    return make_pools_run(
        make_pool("default", DEFAULT_NODES, default_pool_verdicts()),
        make_pool("ci", CI_NODES, ci_pool_verdicts()),
        required_mode=required_mode,
    )


PROFILES: dict[str, Callable[[], RunResult]] = {
    "permissive": permissive,
    "deny-privileged": deny_privileged,
    "psa-baseline": psa_baseline,
    "userns-off": userns_off,
    "fuse-cache": fuse_cache,
}


@pytest.fixture(name="make_verdict")
def make_verdict_fixture() -> VerdictFactory:
    """Build one verdict: for tests that compose their own runs."""
    return make_verdict


@pytest.fixture(name="make_run")
def make_run_fixture() -> RunFactory:
    """Build a run from verdicts: for tests that compose their own runs."""
    return make_run


@pytest.fixture(params=sorted(PROFILES))
def profile_run(request: pytest.FixtureRequest) -> RunResult:
    """Every testbed profile in turn."""
    return PROFILES[request.param]()


@pytest.fixture
def profiles() -> dict[str, RunResult]:
    """Every testbed profile by name."""
    return {name: build() for name, build in PROFILES.items()}


def as_selinux_type(run: RunResult, selinux_type: str) -> RunResult:
    """The run as --selinux-type TYPE makes it: every tested spec carries the type in its pod securityContext."""
    context = {"seLinuxOptions": {"type": selinux_type}}

    def retyped(verdict: Verdict) -> Verdict:
        tested = tuple(replace(spec, spec={**spec.spec, "securityContext": context}) for spec in verdict.facts.specs)
        return replace(verdict, facts=replace(verdict.facts, specs=tested))

    return replace(run, verdicts=tuple(map(retyped, run.verdicts)))
