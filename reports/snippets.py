"""Config to paste for a recommended mode, and what each mode costs in security.

Every snippet is built from plain dicts with yaml.safe_dump, so it is valid YAML by construction; the only text added
by hand is leading '#' comment lines. Images are parameters: the report names the images the run actually used
(air-gapped clusters override them), falling back to the upstream defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from probes.model import Mode

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_IMAGES: Mapping[str, str] = {
    "dind": "docker:28-dind",
    "buildkit": "moby/buildkit:rootless",
    "job": "docker:28-cli",
}

SECURITY_COST: Mapping[Mode, str] = {
    Mode.DIND: (
        "Privileged container: root-equivalent on the node. A job can mount the node's disk, load kernel modules and "
        "read other pods' data, so every build job is trusted as much as the node's administrator. Fails Pod Security "
        "baseline and restricted."
    ),
    Mode.BUILDKIT_ROOTLESS: (
        "No privileged: buildkitd runs as uid 1000 in a user namespace. It still needs seccomp and AppArmor "
        "Unconfined and allowPrivilegeEscalation (for newuidmap), so kernel bugs reachable through unfiltered "
        "syscalls and user namespaces are the exposure. Fails Pod Security baseline (Unconfined profiles) and "
        "restricted. Builds and pushes only: no docker run."
    ),
    Mode.SYSBOX: (
        "No privileged: the container's root maps to an unprivileged user on the node through user namespaces, and "
        "sysbox virtualises /proc and /sys for the inner Docker. The cost is a node-level install (sysbox-runc, "
        "usually with CRI-O) and trusting sysbox itself. Runs and builds."
    ),
    Mode.HOST_SOCKET: (
        "Mounting the node's Docker socket is root on the node: any job can start a privileged container, mount / "
        "and take over the node and every pod on it; jobs also share one daemon and cache. Fails Pod Security "
        "baseline (hostPath). Discouraged even where it works."
    ),
}

DOCKER_SOCKET = "unix:///var/run/docker.sock"
BUILDKIT_SOCKET_DIR = "/run/user/1000/buildkit"
BUILDKIT_SOCKET = f"unix://{BUILDKIT_SOCKET_DIR}/buildkitd.sock"
BUILDKIT_STATE_DIR = "/home/user/.local/share/buildkit"
SYSBOX_RUNTIME_CLASS = "sysbox-runc"
PAUSE_COMMAND = ("sh", "-c", "echo replace this command with your job; sleep infinity")


@dataclass(frozen=True)
class CacheClass:
    """The cache StorageClass the run tested and whether overlay worked on it: SkyPilot's cache_volume advice."""

    name: str
    overlay: bool | None
    """None when overlay on the class is unknown (check not run, or no verdict on the class)."""


def resolve_images(images: Mapping[str, str] | None) -> dict[str, str]:
    """The images a snippet names: the run's own overrides on top of the upstream defaults."""
    return {**DEFAULT_IMAGES, **(images or {})}


def _yaml(document: object, comments: tuple[str, ...] = ()) -> str:
    """Dump a document, with optional '#' comment lines in front (still valid YAML)."""
    header = "".join(f"# {line}\n" if line else "#\n" for line in comments)
    if document is None:
        return header
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _cache_comments(cache: CacheClass | None, mode_word: str) -> tuple[str, ...]:
    """SkyPilot's cache_volume must be block storage: say what the run learnt about the tested class."""
    if cache is not None and cache.overlay is False:
        verdict = f"overlay FAILED on StorageClass {cache.name}: do not back cache_volume with it."
    elif cache is not None and cache.overlay:
        verdict = f"overlay worked on StorageClass {cache.name}: it can back cache_volume."
    else:
        verdict = "no cache StorageClass was tested (--storage-class)."
    return (
        "To keep the build cache across restarts, use a SkyPilot volume on block storage",
        "(ext4/xfs; not NFS, EFS, Filestore or CephFS).",
        verdict,
        "  enable_docker:",
        f"    mode: {mode_word}",
        "    cache_volume: my-builder-cache",
    )


def skypilot_config(
    *,
    usable: frozenset[Mode],
    full_docker: Mode,
    cache: CacheClass | None = None,
) -> str:
    """~/.sky/config.yaml: SkyPilot's enable_docker only knows dind (true / ALL) and rootless BuildKit (BUILD)."""
    where = "~/.sky/config.yaml (or under `config:` in a task YAML)"
    if Mode.DIND in usable:
        comments = [where, "enable_docker: true = privileged dind sidecar: docker build, push and run."]
        if full_docker is not Mode.DIND:
            comments.append(f"dindcheck prefers {full_docker.value} for docker run; SkyPilot has no switch for it.")
        if Mode.BUILDKIT_ROOTLESS in usable:
            comments.append("Build and push only? enable_docker: BUILD works here too and needs no privileged.")
        comments.extend(_cache_comments(cache, "ALL"))
        return _yaml({"kubernetes": {"enable_docker": True}}, tuple(comments))
    if Mode.BUILDKIT_ROOTLESS in usable:
        comments = [where, "enable_docker: BUILD = rootless BuildKit sidecar: docker buildx build and push, no run."]
        comments.extend(_cache_comments(cache, "BUILD"))
        return _yaml({"kubernetes": {"enable_docker": "BUILD"}}, tuple(comments))
    return _yaml(
        None,
        (
            where,
            "Neither SkyPilot enable_docker mode (true/ALL = dind, BUILD = rootless BuildKit) works on this cluster:",
            "leave enable_docker unset.",
        ),
    )


def _socket_volume(name: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {}}


def _pod(name: str, spec: dict[str, Any], annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _dind_sidecar(image: str, *, privileged: bool, docker_data_volume: bool) -> dict[str, Any]:
    """Run dockerd as a native sidecar, socket only: 'dockerd' as first arg stops the entrypoint adding tcp 2375."""
    mounts: list[dict[str, Any]] = [{"name": "docker-run", "mountPath": "/var/run"}]
    if docker_data_volume:
        mounts.append({"name": "docker-data", "mountPath": "/var/lib/docker"})
    security: dict[str, Any] = {"securityContext": {"privileged": True}} if privileged else {}
    return {
        "name": "dind",
        "image": image,
        "restartPolicy": "Always",
        "args": ["dockerd", f"--host={DOCKER_SOCKET}"],
        "env": [{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
        **security,
        "startupProbe": {"exec": {"command": ["docker", "info"]}, "periodSeconds": 2, "failureThreshold": 60},
        "volumeMounts": mounts,
    }


def _docker_client(image: str) -> dict[str, Any]:
    return {
        "name": "job",
        "image": image,
        "command": list(PAUSE_COMMAND),
        "env": [{"name": "DOCKER_HOST", "value": DOCKER_SOCKET}],
        "volumeMounts": [{"name": "docker-run", "mountPath": "/var/run"}],
    }


def dind_pod(images: Mapping[str, str] | None = None) -> str:
    """The privileged dind sidecar as agent-stack-k8s / Actions Runner Controller pod templates write it."""
    resolved = resolve_images(images)
    spec = {
        "initContainers": [_dind_sidecar(resolved["dind"], privileged=True, docker_data_volume=True)],
        "containers": [_docker_client(resolved["job"])],
        "volumes": [_socket_volume("docker-run"), _socket_volume("docker-data")],
    }
    comments = (
        "Docker-in-Docker: privileged dockerd as a native sidecar (Kubernetes >= 1.29), socket over an emptyDir.",
        "Copy spec: into your runner/agent pod template. /var/lib/docker stays on an emptyDir on node disk:",
        "overlay needs ext4/xfs/btrfs/tmpfs under it, never NFS or FUSE.",
    )
    return _yaml(_pod("docker-build", spec), comments)


def buildkit_rootless_pod(images: Mapping[str, str] | None = None) -> str:
    """The rootless BuildKit sidecar with moby/buildkit's reference securityContext, and a buildctl client."""
    resolved = resolve_images(images)
    buildkitd = {
        "name": "buildkitd",
        "image": resolved["buildkit"],
        "restartPolicy": "Always",
        "args": ["--addr", BUILDKIT_SOCKET, "--oci-worker-no-process-sandbox"],
        "securityContext": {
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
            "runAsUser": 1000,
            "runAsGroup": 1000,
        },
        "startupProbe": {
            "exec": {"command": ["buildctl", "--addr", BUILDKIT_SOCKET, "debug", "workers"]},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "volumeMounts": [
            {"name": "buildkit-socket", "mountPath": BUILDKIT_SOCKET_DIR},
            {"name": "buildkit-state", "mountPath": BUILDKIT_STATE_DIR},
        ],
    }
    client = {
        "name": "job",
        "image": resolved["buildkit"],
        "command": list(PAUSE_COMMAND),
        "env": [{"name": "BUILDKIT_HOST", "value": BUILDKIT_SOCKET}],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
        "volumeMounts": [{"name": "buildkit-socket", "mountPath": BUILDKIT_SOCKET_DIR}],
    }
    spec = {
        "initContainers": [buildkitd],
        "containers": [client],
        "volumes": [_socket_volume("buildkit-socket"), _socket_volume("buildkit-state")],
    }
    comments = (
        "Rootless BuildKit: no privileged; seccomp and AppArmor Unconfined (the namespace must allow them).",
        "Build with: buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. \\",
        "  --output type=image,name=REGISTRY/IMAGE:TAG,push=true",
    )
    return _yaml(_pod("buildkit-build", spec), comments)


def sysbox_pod(images: Mapping[str, str] | None = None) -> str:
    """The dind sidecar under the sysbox runtime: no privileged, and sysbox provides /var/lib/docker itself."""
    resolved = resolve_images(images)
    spec = {
        "runtimeClassName": SYSBOX_RUNTIME_CLASS,
        "initContainers": [_dind_sidecar(resolved["dind"], privileged=False, docker_data_volume=False)],
        "containers": [_docker_client(resolved["job"])],
        "volumes": [_socket_volume("docker-run")],
    }
    comments = (
        f"Sysbox: dockerd without privileged under RuntimeClass {SYSBOX_RUNTIME_CLASS} (nodes need sysbox installed).",
        "The annotation asks CRI-O for a user namespace, as sysbox's Kubernetes guide does.",
    )
    annotations = {"io.kubernetes.cri-o.userns-mode": "auto:size=65536"}
    return _yaml(_pod("sysbox-build", spec, annotations), comments)


def host_socket_pod(images: Mapping[str, str] | None = None) -> str:
    """The node's own docker.sock in a job: shown only when it is the one thing that works, and marked as such."""
    resolved = resolve_images(images)
    spec = {
        "containers": [
            {
                "name": "job",
                "image": resolved["job"],
                "command": list(PAUSE_COMMAND),
                "env": [{"name": "DOCKER_HOST", "value": DOCKER_SOCKET}],
                "volumeMounts": [{"name": "host-docker-socket", "mountPath": "/var/run/docker.sock"}],
            },
        ],
        "volumes": [
            {"name": "host-docker-socket", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}},
        ],
    }
    comments = (
        "DISCOURAGED: the node's Docker socket is root on the node; any job can take over the node.",
        "Use it only for trusted jobs on dedicated nodes.",
    )
    return _yaml(_pod("host-socket-build", spec), comments)


POD_SNIPPETS = {
    Mode.DIND: dind_pod,
    Mode.BUILDKIT_ROOTLESS: buildkit_rootless_pod,
    Mode.SYSBOX: sysbox_pod,
    Mode.HOST_SOCKET: host_socket_pod,
}


def build_snippets(
    *,
    full_docker: Mode,
    build_only: Mode,
    usable: frozenset[Mode],
    cache: CacheClass | None = None,
    images: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """'skypilot' always (a CONTRACT key), plus a pod spec keyed by mode id for each recommended mode."""
    config = {
        "skypilot": skypilot_config(
            usable=usable,
            full_docker=full_docker,
            cache=cache,
        ),
    }
    for mode in dict.fromkeys((full_docker, build_only)):
        if mode in POD_SNIPPETS:
            config[mode.value] = POD_SNIPPETS[mode](images)
    return config
