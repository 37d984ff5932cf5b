"""Pod specs of each mode, as users deploy them: the one source for dry-run, probe pods and the config to paste.

The config the report prints comes from the TestedSpec each probe records, so it is what was submitted and run.

Containers are named as users name them: `dind` or `buildkitd` for the daemon, `job` for the CI job that uses it.
The job container only sleeps here; in a user's pod it runs the job.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from probes.model import Mode, TestedSpec
from probes.settings import Images, ProbeSettings, Resources

DOCKER_SOCKET = "unix:///var/run/docker.sock"
BUILDKIT_STATE = "/home/user/.local/share/buildkit"
BUILDKIT_SOCKET = "unix:///run/user/1000/buildkit/buildkitd.sock"
SLEEP = ["sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 1; done"]
"""What the job container runs while probed; users put their job's command here."""
SYSBOX_RUNTIME_CLASS = "sysbox-runc"
SYSBOX_ANNOTATIONS = {"io.kubernetes.cri-o.userns-mode": "auto:size=65536"}
"""CRI-O gives the pod a user namespace from this annotation (sysbox's Kubernetes guide)."""
HOST_DOCKER_SOCKET = "/var/run/docker.sock"
KANIKO_WORKSPACE = "/workspace"
KANIKO_DOCKER_CONFIG = "/kaniko/.docker"
REGISTRY_AUTH_VOLUME = "registry-auth"
CLASSIC = "classic"
NATIVE = "native"
TLS = "tls"
"""The DinD layout of GitLab's Kubernetes executor: dockerd as a service container, TLS on tcp 2376, certs shared."""
DOCKER_TLS_HOST = "tcp://docker:2376"
DOCKER_TLS_ALIAS = "docker"
"""GitLab's service alias: the Kubernetes executor puts it in the pod's hostAliases (127.0.0.1)."""
DOCKER_TLS_CERTDIR = "/certs"
DOCKER_CLIENT_CERTS = "/certs/client"


def _container(name: str, image: str, resources: Resources, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **fields, "resources": resources.to_spec()}


Env = tuple[tuple[str, str], ...]


def dind_container(
    image: str, resources: Resources, *, privileged: bool = True, job_gid: int = 0, env: Env = ()
) -> dict[str, Any]:
    """The dockerd sidecar, socket-only (no TCP, no TLS: the socket never leaves the pod).

    args start with `dockerd`: docker:dind's entrypoint adds a TCP listener when the first arg is an option.
    `--group` gives the job's gid the socket, so a non-root job can use it. env: the user's own (--dind-env).
    """
    mounts = [{"name": "docker-run", "mountPath": "/var/run"}]
    if privileged:  # under sysbox the runtime provides /var/lib/docker itself
        mounts.append({"name": "docker-data", "mountPath": "/var/lib/docker"})
    container = _container(
        "dind",
        image,
        resources,
        args=["dockerd", f"--host={DOCKER_SOCKET}", *([f"--group={job_gid}"] if job_gid else [])],
        env=[{"name": "DOCKER_TLS_CERTDIR", "value": ""}, *({"name": k, "value": v} for k, v in env)],
        volumeMounts=mounts,
    )
    if privileged:
        container["securityContext"] = {"privileged": True}
    return container


def docker_job_container(image: str, resources: Resources, *, uid: int = 0) -> dict[str, Any]:
    """An unprivileged job container that talks to the sidecar through the shared socket, as the runner's uid."""
    env = [{"name": "DOCKER_HOST", "value": DOCKER_SOCKET}]
    container = _container("job", image, resources, command=list(SLEEP), env=env)
    container["volumeMounts"] = [{"name": "docker-run", "mountPath": "/var/run"}]
    if uid:
        env.append({"name": "HOME", "value": "/tmp"})  # noqa: S108 - the docker CLI keeps its config under $HOME
        container["securityContext"] = {"runAsUser": uid, "runAsGroup": uid}
    return container


def dind_pod_spec(
    images: Images,
    resources: Resources,
    *,
    layout: str = CLASSIC,
    privileged: bool = True,
    job_uid: int = 0,
    dind_env: Env = (),
) -> dict[str, Any]:
    """DinD as ARC, GitLab, Buildkite and SkyPilot deploy it: dockerd sidecar + job container, one pod.

    classic: both in `containers` (the job must wait for the socket); native: dockerd in `initContainers` with
    restartPolicy Always and a startupProbe, so the job starts only once the daemon answers (Kubernetes >= 1.29).
    """
    sidecar = dind_container(images.dind, resources, privileged=privileged, job_gid=job_uid, env=dind_env)
    volumes: list[dict[str, Any]] = [{"name": "docker-run", "emptyDir": {}}]
    if privileged:
        volumes.append({"name": "docker-data", "emptyDir": {}})
    job = docker_job_container(images.job_or_dind, resources, uid=job_uid)
    if layout == NATIVE:
        sidecar["restartPolicy"] = "Always"
        sidecar["startupProbe"] = {
            "exec": {"command": ["docker", "--host", DOCKER_SOCKET, "info"]},
            "periodSeconds": 1,
            "failureThreshold": 120,
        }
        return {"initContainers": [sidecar], "containers": [job], "volumes": volumes}
    return {"containers": [sidecar, job], "volumes": volumes}


def dind_tls_pod_spec(images: Images, resources: Resources, *, job_uid: int = 0, dind_env: Env = ()) -> dict[str, Any]:
    """DinD as GitLab's Kubernetes executor runs a `docker:dind` service: TLS over TCP, not a shared socket.

    The sidecar gets no args: with DOCKER_TLS_CERTDIR set, docker:dind's entrypoint writes a CA, server and client
    certs and listens on tcp 2376 with --tlsverify. Only /certs/client is shared (GitLab's `empty_dir` docker-certs,
    medium Memory); the job dials `docker` (the service alias, 127.0.0.1 through hostAliases) with
    DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, as GitLab's documented variables say.
    """
    certs = {"name": "docker-certs", "mountPath": DOCKER_CLIENT_CERTS}
    sidecar = _container(
        "dind",
        images.dind,
        resources,
        env=[
            {"name": "DOCKER_TLS_CERTDIR", "value": DOCKER_TLS_CERTDIR},
            *({"name": k, "value": v} for k, v in dind_env),
        ],
        securityContext={"privileged": True},
        volumeMounts=[certs, {"name": "docker-data", "mountPath": "/var/lib/docker"}],
    )
    env = [
        {"name": "DOCKER_HOST", "value": DOCKER_TLS_HOST},
        {"name": "DOCKER_TLS_CERTDIR", "value": DOCKER_TLS_CERTDIR},
        {"name": "DOCKER_TLS_VERIFY", "value": "1"},
        {"name": "DOCKER_CERT_PATH", "value": DOCKER_CLIENT_CERTS},
    ]
    job = _container("job", images.job_or_dind, resources, command=list(SLEEP), env=env, volumeMounts=[dict(certs)])
    if job_uid:
        env.append({"name": "HOME", "value": "/tmp"})  # noqa: S108 - the docker CLI keeps its config under $HOME
        job["securityContext"] = {"runAsUser": job_uid, "runAsGroup": job_uid}
    return {
        "hostAliases": [{"ip": "127.0.0.1", "hostnames": [DOCKER_TLS_ALIAS]}],
        "containers": [sidecar, job],
        "volumes": [
            {"name": "docker-certs", "emptyDir": {"medium": "Memory"}},
            {"name": "docker-data", "emptyDir": {}},
        ],
    }


def _mount_registry_auth(
    container: dict[str, Any], volumes: list[dict[str, Any]], secret_name: str, docker_config: str
) -> None:
    """Push credentials where the builder looks: the Secret's .dockerconfigjson as $DOCKER_CONFIG/config.json."""
    container["env"] = [*container.get("env", []), {"name": "DOCKER_CONFIG", "value": docker_config}]
    container["volumeMounts"].append({"name": REGISTRY_AUTH_VOLUME, "mountPath": docker_config})
    volumes.append(
        {
            "name": REGISTRY_AUTH_VOLUME,
            "secret": {"secretName": secret_name, "items": [{"key": ".dockerconfigjson", "path": "config.json"}]},
        }
    )


def buildkit_pod_spec(images: Images, resources: Resources, *, registry_secret: str | None = None) -> dict[str, Any]:
    """BuildKit's rootless reference pod (examples/kubernetes/*.rootless.yaml), no privileged.

    It needs Unconfined seccomp/AppArmor (so not PSA baseline). Builds run in this container (buildctl, local socket).
    One addition to the reference: runAsNonRoot, which changes nothing for uid 1000 but is what the common "pods must
    not run as root" policies look for (Kyverno's require-run-as-nonroot, the runAsNonRoot check of PSA restricted).
    """
    container = _container(
        "buildkitd",
        images.buildkit,
        resources,
        args=[f"--addr={BUILDKIT_SOCKET}", "--oci-worker-no-process-sandbox"],
        securityContext={
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "runAsNonRoot": True,
        },
        volumeMounts=[{"name": "buildkitd", "mountPath": BUILDKIT_STATE}],
    )
    volumes: list[dict[str, Any]] = [{"name": "buildkitd", "emptyDir": {}}]
    if registry_secret:
        _mount_registry_auth(container, volumes, registry_secret, "/home/user/.docker")
    return {"containers": [container], "volumes": volumes}


def kaniko_pod_spec(
    images: Images,
    resources: Resources,
    *,
    destination: str = "REGISTRY/IMAGE:TAG",
    insecure_registries: tuple[str, ...] = (),
    registry_secret: str | None = None,
    context_dir: str = KANIKO_WORKSPACE,
) -> dict[str, Any]:
    """The Kaniko executor as CI systems run it in a pod: root, but not privileged, no user namespace.

    allowPrivilegeEscalation false and the RuntimeDefault seccomp profile: what Pod Security baseline allows.
    Kaniko unpacks the base image over its own root filesystem, so that root stays writable. The build context and
    Dockerfile are in /workspace; the pushed digest lands in the termination message.
    """
    args = [
        f"--dockerfile={context_dir}/Dockerfile",
        f"--context=dir://{context_dir}",
        f"--destination={destination}",
        "--digest-file=/dev/termination-log",
        *(f"--insecure-registry={registry}" for registry in insecure_registries),
    ]
    container = _container(
        "kaniko",
        images.kaniko,
        resources,
        args=args,
        securityContext={
            "runAsUser": 0,
            "allowPrivilegeEscalation": False,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        volumeMounts=[{"name": "workspace", "mountPath": KANIKO_WORKSPACE}],
    )
    volumes: list[dict[str, Any]] = [{"name": "workspace", "emptyDir": {}}]
    if registry_secret:
        _mount_registry_auth(container, volumes, registry_secret, KANIKO_DOCKER_CONFIG)
    return {"containers": [container], "volumes": volumes}


CNB_WORKSPACE = "/workspace"
CNB_LAYERS = "/layers"
CNB_CREATOR = "/cnb/lifecycle/creator"
CNB_PLATFORM_API = "0.13"
"""The platform API the creator is asked for: 0.13 is the oldest with -insecure-registry (lifecycle 0.18 and newer)."""
CNB_DOCKER_CONFIG = "/home/cnb/.docker"


def restricted_context() -> dict[str, Any]:
    """What Pod Security restricted requires of every container; no uid: the image's own non-root user runs."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def buildpacks_pod_spec(
    images: Images,
    resources: Resources,
    *,
    image: str = "REGISTRY/IMAGE:TAG",
    insecure_registries: tuple[str, ...] = (),
    registry_secret: str | None = None,
) -> dict[str, Any]:
    """The CNB lifecycle's creator in the builder image, as kpack and Tekton's buildpacks task run it: no daemon.

    The Pod Security restricted shape: runAsNonRoot (the builder image's own CNB user runs, so a root builder is
    refused by the kubelet), all capabilities dropped, RuntimeDefault seccomp, no privilege escalation. The source
    is in /workspace, the layers on an emptyDir; the creator detects, builds and exports to `image`, and its report
    (with the pushed digest) lands in the termination message.
    """
    args = [
        f"-app={CNB_WORKSPACE}",
        f"-layers={CNB_LAYERS}",
        "-report=/dev/termination-log",
        "-log-level=info",
        "-no-color",
        *(f"-insecure-registry={registry}" for registry in insecure_registries),
        image,
    ]
    container = _container(
        "creator",
        images.builder,
        resources,
        command=[CNB_CREATOR],
        args=args,
        env=[{"name": "CNB_PLATFORM_API", "value": CNB_PLATFORM_API}],
        securityContext=restricted_context(),
        volumeMounts=[
            {"name": "workspace", "mountPath": CNB_WORKSPACE},
            {"name": "layers", "mountPath": CNB_LAYERS},
        ],
    )
    volumes: list[dict[str, Any]] = [{"name": "workspace", "emptyDir": {}}, {"name": "layers", "emptyDir": {}}]
    if registry_secret:
        _mount_registry_auth(container, volumes, registry_secret, CNB_DOCKER_CONFIG)
    return {"containers": [container], "volumes": volumes}


def sysbox_pod_spec(images: Images, resources: Resources, *, job_uid: int = 0, dind_env: Env = ()) -> dict[str, Any]:
    """DinD under sysbox: the same sidecar layout, no privileged at all; the runtime provides the isolation."""
    layout = dind_pod_spec(images, resources, privileged=False, job_uid=job_uid, dind_env=dind_env)
    return {"runtimeClassName": SYSBOX_RUNTIME_CLASS, **layout}


def host_socket_pod_spec(images: Images, resources: Resources) -> dict[str, Any]:
    """The discouraged layout: the node's own docker.sock through hostPath (root on the node)."""
    job = _container(
        "job",
        images.job_or_dind,
        resources,
        command=list(SLEEP),
        env=[{"name": "DOCKER_HOST", "value": f"unix://{HOST_DOCKER_SOCKET}"}],
        volumeMounts=[{"name": "docker-sock", "mountPath": HOST_DOCKER_SOCKET}],
    )
    return {
        "containers": [job],
        "volumes": [{"name": "docker-sock", "hostPath": {"path": HOST_DOCKER_SOCKET, "type": "Socket"}}],
    }


def tools_pod_spec(image: str, resources: Resources, *, privileged: bool = False) -> dict[str, Any]:
    """A tools container that only sleeps; probes exec their scripts into it."""
    container = _container("tools", image, resources, command=list(SLEEP))
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {"containers": [container]}


def mode_specs(
    images: Images, resources: Resources, *, job_uid: int = 0, dind_env: Env = ()
) -> dict[Mode, dict[str, Any]]:
    """Every mode's pod spec as the other probes run it: what privileged-admission dry-runs."""
    return {
        Mode.DIND: dind_pod_spec(images, resources, job_uid=job_uid, dind_env=dind_env),
        Mode.BUILDKIT_ROOTLESS: buildkit_pod_spec(images, resources),
        Mode.KANIKO: kaniko_pod_spec(images, resources),
        Mode.SYSBOX: sysbox_pod_spec(images, resources, job_uid=job_uid, dind_env=dind_env),
        Mode.HOST_SOCKET: host_socket_pod_spec(images, resources),
        Mode.BUILDPACKS: buildpacks_pod_spec(images, resources),
    }


def record(
    mode: Mode,
    layout: str,
    spec: dict[str, Any],
    *,
    proven: bool,
    annotations: dict[str, str] | None = None,
    notes: tuple[str, ...] = (),
) -> TestedSpec:
    """Record a spec as submitted, for the report's config to paste (the engine adds the probe pod's pod fields)."""
    return TestedSpec(mode=mode, layout=layout, spec=spec, proven=proven, annotations=annotations or {}, notes=notes)


def record_builder(mode: Mode, spec: dict[str, Any], settings: ProbeSettings, *, proven: bool) -> TestedSpec:
    """A builder's spec as submitted, naming the user's push-credentials Secret where the run mounted its copy.

    With --registry-secret NS/NAME the probe pod mounts a copy in the run's namespace, which cleanup deletes; the
    pasted pod mounts NAME (the user's Secret) and says where it must exist. Nothing else changes.
    """
    if not settings.registry_secret:
        return record(mode, mode.value, spec, proven=proven)
    source = settings.registry_secret_source or settings.registry_secret
    namespace, _, name = source.rpartition("/")
    pasted = copy.deepcopy(spec)
    for volume in pasted.get("volumes", []):
        secret = volume.get("secret") or {}
        if volume["name"] == REGISTRY_AUTH_VOLUME and secret.get("secretName") == settings.registry_secret:
            secret["secretName"] = name
    copied = ", through a copy in its own namespace that it deleted after the run" if namespace else ""
    note = (
        f"Push credentials: the Secret {name} (type kubernetes.io/dockerconfigjson) must exist in the namespace this "
        f"pod runs in; dindcheck used --registry-secret {source}{copied}."
    )
    return record(mode, mode.value, pasted, proven=proven, notes=(note,))


@dataclass(frozen=True)
class RemediedSpec(TestedSpec):
    """A tested DinD spec plus remedies a probe proved on this cluster (e.g. a dockerd --mtu that fixed a stall).

    The spec stays as submitted; the report prints the remedies as comments next to it, never inside it.
    """

    remedies: tuple[str, ...] = ()


def record_remedied(
    mode: Mode, layout: str, spec: dict[str, Any], *, proven: bool, remedies: tuple[str, ...]
) -> TestedSpec:
    """Record a spec as submitted, with the remedies the probe proved (a plain TestedSpec when there are none)."""
    if not remedies:
        return record(mode, layout, spec, proven=proven)
    return RemediedSpec(mode=mode, layout=layout, spec=spec, proven=proven, annotations={}, remedies=remedies)
