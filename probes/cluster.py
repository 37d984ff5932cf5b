"""Connecting to the cluster and checking, before any pod is made, that the run can work at all.

Bad input must end in one clear line within seconds (design.md: exit code 4), so every failure here raises
UsageError with a message written for the person at the terminal, never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from probes.exceptions import ClusterUnreachableError, UsageError
from probes.model import ClusterInfo, NodeInfo

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Connection:
    """An API client plus where it came from, so pods can be exec'd into with the same kubeconfig."""

    api_client: client.ApiClient
    kubeconfig: str
    context: str | None
    server: str

    @property
    def core(self) -> client.CoreV1Api:
        """The core API (pods, namespaces, PVCs, events)."""
        return client.CoreV1Api(self.api_client)


def _default_kubeconfig() -> str:
    env = os.environ.get("KUBECONFIG", "")
    first = env.split(os.pathsep)[0] if env else ""
    return first or str(Path.home() / ".kube" / "config")


def connect(kubeconfig: str | None, context: str | None) -> Connection:
    """Load the kubeconfig and prove the API server answers; UsageError with one line otherwise."""
    path = kubeconfig or _default_kubeconfig()
    if not Path(path).is_file():
        raise UsageError(f"kubeconfig not found: {path} (pass --kubeconfig PATH or set KUBECONFIG)")
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"kubeconfig {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(loaded, dict) or not loaded.get("contexts"):
        raise UsageError(f"kubeconfig {path} has no contexts: is it a kubeconfig file?")
    names = [c.get("name") for c in loaded["contexts"] if isinstance(c, dict)]
    if context is not None and context not in names:
        raise UsageError(f"context {context!r} not found in {path} (it has: {', '.join(map(str, names))})")
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        raise UsageError(f"kubeconfig {path} cannot be used: {exc}") from exc
    configuration.retries = urllib3.Retry(total=1, connect=1, read=0, backoff_factor=0.2)
    api_client = client.ApiClient(configuration)
    connection = Connection(api_client, path, context, str(configuration.host))
    _check_reachable(connection)
    return connection


def _check_reachable(connection: Connection) -> None:
    try:
        client.VersionApi(connection.api_client).get_code(_request_timeout=CONNECT_TIMEOUT_S)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise UsageError(
                f"API server {connection.server} refused our credentials ({exc.status} {exc.reason}): "
                "check the kubeconfig user"
            ) from exc
        raise ClusterUnreachableError(f"API server {connection.server} answered {exc.status} {exc.reason}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClusterUnreachableError(f"API server {connection.server} is unreachable: {reason}") from exc


def describe_cluster(connection: Connection, namespace: str, namespace_labels: dict[str, str]) -> ClusterInfo:
    """Server, version and nodes for the report; node listing may be forbidden, which is noted, not fatal."""
    version = client.VersionApi(connection.api_client).get_code(_request_timeout=CONNECT_TIMEOUT_S)
    notes: list[str] = []
    nodes: list[NodeInfo] = []
    try:
        for node in connection.core.list_node(_request_timeout=CONNECT_TIMEOUT_S).items:
            info = node.status.node_info
            nodes.append(
                NodeInfo(
                    name=node.metadata.name,
                    kubelet_version=info.kubelet_version,
                    container_runtime=info.container_runtime_version,
                    kernel=info.kernel_version,
                    os_image=info.os_image,
                    architecture=info.architecture,
                    labels=dict(node.metadata.labels or {}),
                )
            )
    except ApiException as exc:
        notes.append(f"nodes not listed ({exc.status} {exc.reason}): per-node facts are missing from this report")
    return ClusterInfo(
        server=connection.server,
        version=str(version.git_version),
        nodes=tuple(nodes),
        namespace=namespace,
        namespace_labels=namespace_labels,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class Permission:
    """One RBAC permission the run needs, asked of the API server before any probing."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    cluster_scoped: bool = False

    def describe(self) -> str:
        """kubectl-style 'verb resource' for the error message."""
        name = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {name}" + (f".{self.group}" if self.group else "")


REQUIRED_PERMISSIONS: tuple[Permission, ...] = (
    Permission("create", "pods"),
    Permission("get", "pods"),
    Permission("list", "pods"),
    Permission("delete", "pods"),
    Permission("create", "pods", subresource="exec"),
    Permission("get", "pods", subresource="log"),
    Permission("list", "events"),
    Permission("create", "persistentvolumeclaims"),
    Permission("delete", "persistentvolumeclaims"),
    Permission("get", "persistentvolumeclaims"),
)
NAMESPACE_PERMISSIONS: tuple[Permission, ...] = (
    Permission("create", "namespaces", cluster_scoped=True),
    Permission("delete", "namespaces", cluster_scoped=True),
)


def missing_permissions(connection: Connection, namespace: str, permissions: tuple[Permission, ...]) -> list[str]:
    """Ask SelfSubjectAccessReview for each permission; return the ones denied, as kubectl would name them."""
    authz = client.AuthorizationV1Api(connection.api_client)
    missing: list[str] = []
    for perm in permissions:
        attributes: dict[str, Any] = {
            "verb": perm.verb,
            "resource": perm.resource,
            "group": perm.group,
            "subresource": perm.subresource,
        }
        if not perm.cluster_scoped:
            attributes["namespace"] = namespace
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        result = authz.create_self_subject_access_review(review, _request_timeout=CONNECT_TIMEOUT_S)
        if not result.status.allowed:
            missing.append(perm.describe())
    return missing


def storage_class_exists(connection: Connection, name: str) -> bool:
    """Whether a StorageClass of that name exists (an unknown one is a usage error, caught before probing)."""
    try:
        client.StorageV1Api(connection.api_client).read_storage_class(name, _request_timeout=CONNECT_TIMEOUT_S)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def default_storage_class(connection: Connection) -> str | None:
    """The cluster's default StorageClass, used for the cache PVC when --storage-class is not given."""
    try:
        classes = client.StorageV1Api(connection.api_client).list_storage_class(_request_timeout=CONNECT_TIMEOUT_S)
    except ApiException:
        return None
    for item in classes.items:
        annotations = item.metadata.annotations or {}
        if annotations.get("storageclass.kubernetes.io/is-default-class") == "true":
            return str(item.metadata.name)
    return None
