"""Connecting to the cluster and checking, before any pod is made, that the run can work at all.

Bad input must end in one clear line within seconds (docs/contracts.md: exit code 4), so every failure here raises
UsageError with a message written for the person at the terminal, never a traceback.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from probes.api import api_call
from probes.api import wait_until_answering as answering
from probes.exceptions import ClusterUnreachableError, UsageError
from probes.model import ClusterInfo, NodeInfo
from probes.targets import NodeView, node_view

CONNECT_TIMEOUT_S = 5.0
LEASE_GROUP = "coordination.k8s.io"


@dataclass(frozen=True)
class Connection:
    """An API client plus where it came from, so pods can be exec'd into with the same kubeconfig."""

    api_client: client.ApiClient
    kubeconfig: str
    context: str | None
    server: str
    context_namespace: str = ""
    """The namespace the kubeconfig's context names ('' for none): a fleet run probes there unless --namespace."""

    @property
    def core(self) -> client.CoreV1Api:
        """The core API (pods, namespaces, PVCs, events)."""
        return client.CoreV1Api(self.api_client)

    @property
    def coordination(self) -> client.CoordinationV1Api:
        """The coordination API (the run's Lease)."""
        return client.CoordinationV1Api(self.api_client)


def _default_kubeconfig() -> str:
    env = os.environ.get("KUBECONFIG", "")
    first = env.split(os.pathsep)[0] if env else ""
    return first or str(Path.home() / ".kube" / "config")


IN_CLUSTER = "in-cluster"


def _in_cluster(kubeconfig: str | None) -> bool:
    """Inside a pod (a CronJob) with no kubeconfig given or found: use the pod's ServiceAccount."""
    return (
        kubeconfig is None
        and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and not os.environ.get("KUBECONFIG")
        and not (Path.home() / ".kube" / "config").is_file()
    )


API_CLASSES = ("CoreV1Api", "StorageV1Api", "AuthorizationV1Api", "NodeV1Api", "VersionApi", "CoordinationV1Api")
"""The client's API classes a run uses (the client imports each on first use)."""


def load_client_apis() -> None:
    """Import the client's API classes with the garbage collector paused, then move them to its permanent generation.

    The client builds a pydantic validator for every API method when a class is first used (CoreV1Api: about
    0.5 s of a run's start). A run keeps them until it exits, yet the collector would rescan them on every later
    collection and once more at interpreter exit: frozen, they cost nothing after loading.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in API_CLASSES:
            getattr(client, name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def connect(kubeconfig: str | None, context: str | None) -> Connection:
    """Load the kubeconfig (or the pod's ServiceAccount) and prove the API server answers; UsageError otherwise."""
    load_client_apis()
    if _in_cluster(kubeconfig):
        return _connect_in_cluster(context)
    path, loaded = _read_kubeconfig(kubeconfig)
    names = [c.get("name") for c in loaded["contexts"] if isinstance(c, dict)]
    if context is not None and context not in names:
        raise UsageError(f"context {context!r} not found in {path} (it has: {', '.join(map(str, names))})")
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        raise UsageError(f"kubeconfig {path} cannot be used: {exc}") from exc
    configuration.retries = client_retries()
    api_client = client.ApiClient(configuration)
    connection = Connection(api_client, path, context, str(configuration.host), _context_namespace(loaded, context))
    _check_reachable(connection)
    return connection


def _read_kubeconfig(kubeconfig: str | None) -> tuple[str, dict[str, Any]]:
    """The kubeconfig's path and content, checked to be one (UsageError naming the file otherwise)."""
    path = kubeconfig or _default_kubeconfig()
    if not Path(path).is_file():
        raise UsageError(f"kubeconfig not found: {path} (pass --kubeconfig PATH or set KUBECONFIG)")
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"kubeconfig {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(loaded, dict) or not loaded.get("contexts"):
        raise UsageError(f"kubeconfig {path} has no contexts: is it a kubeconfig file?")
    return path, loaded


def context_names(kubeconfig: str | None) -> tuple[str, ...]:
    """Every context of the kubeconfig, in file order (--all-contexts)."""
    if _in_cluster(kubeconfig):
        raise UsageError("--all-contexts needs a kubeconfig: inside a pod there is only the pod's ServiceAccount")
    _, loaded = _read_kubeconfig(kubeconfig)
    return tuple(str(c["name"]) for c in loaded["contexts"] if isinstance(c, dict) and c.get("name"))


def _context_namespace(loaded: dict[str, Any], context: str | None) -> str:
    """The namespace a context names (kubectl's default for it), '' when it names none."""
    name = context or loaded.get("current-context")
    entry = next((c for c in loaded["contexts"] if isinstance(c, dict) and c.get("name") == name), {})
    found = (entry.get("context") or {}).get("namespace") if isinstance(entry, dict) else None
    return str(found) if found else ""


def client_retries() -> urllib3.Retry:
    """The HTTP client's own retries: one quick reconnect, and never on a status.

    api_call rides out 429s and 503s itself, so that it counts them (the report says the run was throttled) and
    honours Retry-After within its bound.
    """
    return urllib3.Retry(
        total=1,
        connect=1,
        read=0,
        status=0,
        backoff_factor=0.2,
        respect_retry_after_header=False,
        raise_on_status=False,
    )


def _connect_in_cluster(context: str | None) -> Connection:
    if context is not None:
        raise UsageError("--context needs a kubeconfig; in a pod without one the ServiceAccount is used")
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException as exc:
        raise UsageError(f"no kubeconfig and the pod's ServiceAccount cannot be used: {exc}") from exc
    configuration.retries = client_retries()
    connection = Connection(client.ApiClient(configuration), IN_CLUSTER, None, str(configuration.host))
    _check_reachable(connection)
    return connection


def _check_reachable(connection: Connection) -> None:
    try:
        api_call(
            client.VersionApi(connection.api_client).get_code, deadline_s=CONNECT_TIMEOUT_S, timeout_s=CONNECT_TIMEOUT_S
        )
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


def wait_until_answering(connection: Connection, wait_s: float) -> bool:
    """Wait (at most wait_s) until the API server answers again; whether it did (cleanup needs it)."""
    return answering(connection.core.get_api_resources, wait_s)


NODE_PAGE_SIZE = 500
"""Nodes per list request: a cluster of thousands of nodes is read in a few pages, never a request per node."""


def list_nodes(connection: Connection) -> tuple[Any, ...]:
    """Every Node object, a page at a time (limit/continue): a big cluster's list in a few requests.

    A continue token that expired mid-list (410 Gone) restarts the list once.
    """
    for attempt in range(2):
        items: list[Any] = []
        token: str | None = None
        try:
            while True:
                page = api_call(
                    connection.core.list_node, limit=NODE_PAGE_SIZE, _continue=token, timeout_s=CONNECT_TIMEOUT_S
                )
                items += page.items
                token = page.metadata._continue  # noqa: SLF001  # the client's name for "continue"
                if not token:
                    return tuple(items)
        except ApiException as exc:
            if exc.status != 410 or attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


UNREPORTED_NODE_INFO = (
    "architecture",
    "boot_id",
    "container_runtime_version",
    "kernel_version",
    "kube_proxy_version",
    "kubelet_version",
    "machine_id",
    "operating_system",
    "os_image",
    "system_uuid",
)


def describe_cluster(
    connection: Connection,
    namespace: str,
    namespace_labels: dict[str, str],
    listed_nodes: tuple[Any, ...] | None = None,
) -> ClusterInfo:
    """Server, version and nodes for the report; node listing may be forbidden, which is noted, not fatal.

    listed_nodes: the Node objects targeting already read, so a big cluster is listed once per run.
    """
    version = api_call(client.VersionApi(connection.api_client).get_code, timeout_s=CONNECT_TIMEOUT_S)
    notes: list[str] = []
    nodes: list[NodeInfo] = []
    try:
        for node in list_nodes(connection) if listed_nodes is None else listed_nodes:
            info = (
                node.status.node_info
                if node.status and node.status.node_info
                else client.V1NodeSystemInfo(**dict.fromkeys(UNREPORTED_NODE_INFO, "unknown"))
            )  # a Node whose kubelet never reported (a registered, never-started node) has no nodeInfo
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
class NodeListing:
    """The Node objects as read (for the report's node facts) and as targeting sees them: one list per run."""

    objects: tuple[Any, ...]
    views: tuple[NodeView, ...]


def node_listing(connection: Connection) -> NodeListing:
    """Every node, for targeting: a refusal is the run's RBAC, said in one line (exit 4)."""
    try:
        objects = list_nodes(connection)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise UsageError(
                f"RBAC: the run may not list nodes ({exc.status}), which --node-selector, --node and --each-pool "
                "need (deploy/rbac.yaml's ClusterRole grants it)"
            ) from None
        raise
    return NodeListing(objects=objects, views=tuple(node_view(node) for node in objects))


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


def required_permissions(
    *,
    borrowed_namespace: bool,
    label_namespace: bool,
    copy_registry_secret: bool,
    throwaway_registry: bool,
    list_nodes: bool = False,
    sweep: bool = False,
) -> tuple[Permission, ...]:
    """Every permission the run will use with these options (deploy/rbac.yaml grants exactly these).

    Exec goes through the API server's websocket: Kubernetes >= 1.31 checks `create` on pods/exec for it as
    well as `get`. Cleanup deletes by label (deletecollection). Node listing and PV cleanup are optional (see
    OPTIONAL_PERMISSIONS): without them the report says what is missing. The run's Lease (probes/lease.py) is made,
    renewed, read back and deleted; the sweep also lists Leases (probes/sweep.py). Without them a run could not
    protect its objects from other runs' sweeps, so they are required, not optional.
    """
    needed = [
        Permission("create", "pods"),
        Permission("get", "pods"),
        Permission("list", "pods"),
        Permission("delete", "pods"),
        Permission("deletecollection", "pods"),
        Permission("get", "pods", subresource="exec"),
        Permission("create", "pods", subresource="exec"),
        Permission("get", "pods", subresource="log"),
        Permission("list", "events"),
        Permission("create", "persistentvolumeclaims"),
        Permission("get", "persistentvolumeclaims"),
        Permission("list", "persistentvolumeclaims"),
        Permission("delete", "persistentvolumeclaims"),
        Permission("deletecollection", "persistentvolumeclaims"),
        Permission("get", "storageclasses", group="storage.k8s.io", cluster_scoped=True),
        Permission("list", "storageclasses", group="storage.k8s.io", cluster_scoped=True),
        Permission("get", "runtimeclasses", group="node.k8s.io", cluster_scoped=True),
        *(Permission(verb, "leases", group=LEASE_GROUP) for verb in ("create", "get", "update", "delete")),
    ]
    if sweep:
        needed.append(Permission("list", "leases", group=LEASE_GROUP))
    if throwaway_registry:
        needed.append(Permission("get", "pods", subresource="proxy"))
    if list_nodes:  # --node-selector, --node, --each-pool: where to probe is decided from the Node objects
        needed.append(Permission("list", "nodes", cluster_scoped=True))
    if copy_registry_secret:
        needed += [
            Permission("create", "secrets"),
            Permission("list", "secrets"),
            Permission("deletecollection", "secrets"),
        ]
    if borrowed_namespace:
        needed.append(Permission("get", "namespaces", cluster_scoped=True))
        if label_namespace:
            needed.append(Permission("patch", "namespaces", cluster_scoped=True))
    else:
        needed += [
            Permission("create", "namespaces", cluster_scoped=True),
            Permission("get", "namespaces", cluster_scoped=True),
            Permission("delete", "namespaces", cluster_scoped=True),
        ]
    return tuple(needed)


OPTIONAL_PERMISSIONS: tuple[tuple[Permission, str], ...] = (
    (Permission("list", "nodes", cluster_scoped=True), "nodes are not listed: per-node facts are missing"),
    (
        Permission("get", "nodes", cluster_scoped=True),
        "a probe node that stops answering (a stopped kubelet) cannot be named in an inconclusive check",
    ),
    (
        Permission("get", "persistentvolumes", cluster_scoped=True),
        "the cache PVC's volume cannot be read: a Retain volume would not be named",
    ),
)


def missing_permissions(connection: Connection, namespace: str, permissions: tuple[Permission, ...]) -> list[str]:
    """Ask SelfSubjectAccessReview for each permission; return the ones denied, as kubectl would name them."""
    authz = client.AuthorizationV1Api(connection.api_client)
    missing: list[str] = []
    for perm in dict.fromkeys(permissions):
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
        # a review changes nothing: repeating it after any failure is safe
        result = api_call(authz.create_self_subject_access_review, review, timeout_s=CONNECT_TIMEOUT_S)
        if not result.status.allowed:
            missing.append(perm.describe())
    return missing


def preflight(
    connection: Connection,
    *,
    namespace: str | None,
    storage_class: str | None,
    permissions: tuple[Permission, ...],
) -> tuple[str | None, tuple[str, ...]]:
    """Before anything is created: the cache StorageClass to test and the run's permissions.

    Returns (storage class, notes for the report); raises UsageError naming what is wrong or missing.
    """
    notes: list[str] = []
    missing = missing_permissions(connection, namespace or "default", permissions)
    if missing:
        raise UsageError(
            f"RBAC: the run may not {', '.join(missing)} (deploy/rbac.yaml has the Role and ClusterRole it needs)"
        )
    optional = tuple(perm for perm, _ in OPTIONAL_PERMISSIONS)
    denied = set(missing_permissions(connection, namespace or "default", optional))
    notes += [
        f"RBAC: may not {perm.describe()}: {why}" for perm, why in OPTIONAL_PERMISSIONS if perm.describe() in denied
    ]
    if storage_class and not storage_class_exists(connection, storage_class):
        raise UsageError(f"StorageClass {storage_class!r} not found (kubectl get storageclass lists them)")
    if storage_class is None:
        storage_class = default_storage_class(connection)
        if storage_class is None:
            notes.append("no --storage-class and no default StorageClass: overlay tested on emptyDir only")
    return storage_class, tuple(notes)


def storage_class_exists(connection: Connection, name: str) -> bool:
    """Whether a StorageClass of that name exists (an unknown one is a usage error, caught before probing)."""
    try:
        api_call(client.StorageV1Api(connection.api_client).read_storage_class, name, timeout_s=CONNECT_TIMEOUT_S)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def default_storage_class(connection: Connection) -> str | None:
    """The cluster's default StorageClass, used for the cache PVC when --storage-class is not given."""
    try:
        classes = api_call(client.StorageV1Api(connection.api_client).list_storage_class, timeout_s=CONNECT_TIMEOUT_S)
    except ApiException:
        return None
    for item in classes.items:
        annotations = item.metadata.annotations or {}
        if annotations.get("storageclass.kubernetes.io/is-default-class") == "true":
            return str(item.metadata.name)
    return None
