"""Pod specs of each mode, as users deploy them: the same specs are dry-run for admission and run for real.

Keeping one source means the admission verdict is about the spec the other probes exercise, not a look-alike.
"""

from __future__ import annotations

from typing import Any

DOCKER_SOCKET = "unix:///var/run/docker.sock"
BUILDKIT_STATE = "/home/user/.local/share/buildkit"
BUILDKIT_SOCKET = "unix:///run/user/1000/buildkit/buildkitd.sock"
SLEEP = ["sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 1; done"]


def dind_container(image: str, *, name: str = "dind") -> dict[str, Any]:
    """The privileged dockerd sidecar, socket-only (no TCP, no TLS: the socket never leaves the pod).

    args start with `dockerd`: docker:dind's entrypoint adds a TCP listener when the first arg is an option.
    """
    return {
        "name": name,
        "image": image,
        "args": ["dockerd", f"--host={DOCKER_SOCKET}"],
        "env": [{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
        "securityContext": {"privileged": True},
        "volumeMounts": [
            {"name": "docker-run", "mountPath": "/var/run"},
            {"name": "docker-data", "mountPath": "/var/lib/docker"},
        ],
    }


def docker_client_container(image: str, *, name: str = "client") -> dict[str, Any]:
    """An unprivileged job container that talks to the sidecar through the shared socket."""
    return {
        "name": name,
        "image": image,
        "command": SLEEP,
        "env": [{"name": "DOCKER_HOST", "value": DOCKER_SOCKET}],
        "volumeMounts": [{"name": "docker-run", "mountPath": "/var/run"}],
    }


DIND_VOLUMES: list[dict[str, Any]] = [
    {"name": "docker-run", "emptyDir": {}},
    {"name": "docker-data", "emptyDir": {}},
]


def dind_pod_spec(dind_image: str, client_image: str) -> dict[str, Any]:
    """Classic sidecar layout (ARC containerMode dind, GitLab, Buildkite): dockerd + job in one pod."""
    return {
        "containers": [dind_container(dind_image), docker_client_container(client_image)],
        "volumes": [dict(v) for v in DIND_VOLUMES],
    }


def dind_native_sidecar_spec(dind_image: str, client_image: str) -> dict[str, Any]:
    """Native sidecar layout (initContainers restartPolicy: Always): the job starts only once dockerd answers."""
    sidecar = dind_container(dind_image)
    sidecar["restartPolicy"] = "Always"
    sidecar["startupProbe"] = {
        "exec": {"command": ["docker", "--host", DOCKER_SOCKET, "info"]},
        "periodSeconds": 1,
        "failureThreshold": 120,
    }
    return {
        "initContainers": [sidecar],
        "containers": [docker_client_container(client_image)],
        "volumes": [dict(v) for v in DIND_VOLUMES],
    }


def buildkit_container(image: str, *, registry_secret: str | None = None) -> dict[str, Any]:
    """BuildKit's rootless reference container (examples/kubernetes/*.rootless.yaml)."""
    container: dict[str, Any] = {
        "name": "buildkitd",
        "image": image,
        "args": [f"--addr={BUILDKIT_SOCKET}", "--oci-worker-no-process-sandbox"],
        "securityContext": {
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
            "runAsUser": 1000,
            "runAsGroup": 1000,
        },
        "volumeMounts": [{"name": "buildkitd", "mountPath": BUILDKIT_STATE}],
    }
    if registry_secret:
        container["env"] = [{"name": "DOCKER_CONFIG", "value": "/home/user/.docker"}]
        container["volumeMounts"].append({"name": "registry-auth", "mountPath": "/home/user/.docker"})
    return container


def buildkit_pod_spec(image: str, *, registry_secret: str | None = None) -> dict[str, Any]:
    """Rootless BuildKit pod: no privileged, but Unconfined seccomp/AppArmor (so not PSA baseline)."""
    volumes: list[dict[str, Any]] = [{"name": "buildkitd", "emptyDir": {}}]
    if registry_secret:
        volumes.append(
            {
                "name": "registry-auth",
                "secret": {
                    "secretName": registry_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
    return {"containers": [buildkit_container(image, registry_secret=registry_secret)], "volumes": volumes}


SYSBOX_RUNTIME_CLASS = "sysbox-runc"


def sysbox_pod_spec(image: str) -> dict[str, Any]:
    """A sysbox pod: no privileged at all, the runtime provides the isolation (nestybox docs)."""
    return {
        "runtimeClassName": SYSBOX_RUNTIME_CLASS,
        "containers": [{"name": "sysbox", "image": image, "command": SLEEP}],
    }


HOST_DOCKER_SOCKET = "/var/run/docker.sock"


def host_socket_pod_spec(client_image: str) -> dict[str, Any]:
    """The discouraged layout: the node's own docker.sock through hostPath (root on the node)."""
    return {
        "containers": [
            {
                "name": "client",
                "image": client_image,
                "command": SLEEP,
                "env": [{"name": "DOCKER_HOST", "value": f"unix://{HOST_DOCKER_SOCKET}"}],
                "volumeMounts": [{"name": "docker-sock", "mountPath": HOST_DOCKER_SOCKET}],
            }
        ],
        "volumes": [{"name": "docker-sock", "hostPath": {"path": HOST_DOCKER_SOCKET, "type": "Socket"}}],
    }


def tools_pod_spec(image: str, *, privileged: bool = False) -> dict[str, Any]:
    """A tools container that only sleeps; probes exec their scripts into it."""
    container: dict[str, Any] = {"name": "tools", "image": image, "command": SLEEP}
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {"containers": [container]}
