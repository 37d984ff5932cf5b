"""A tiny dynamic provisioner for the testbed: hostPath PersistentVolumes under a StorageClass's backing root.

It serves every StorageClass whose provisioner is ``dindcheck.testbed/hostpath``; the class parameter ``root`` names the
host directory that holds its volumes (the node disk, a tmpfs mount or a FUSE mount, see testbed/lib/profile.sh), and
a parameter ``root.<node>`` another one for volumes of pods on that node (the second node's FUSE root).

- A pending claim of such a class gets a directory ``<root>/<namespace>-<claim>-<uid>`` and a hostPath PV bound to it
  (claimRef, the class's reclaimPolicy, annotation pv.kubernetes.io/provisioned-by).
- In a WaitForFirstConsumer class, a claim waits for the scheduler's choice of node (annotation
  volume.kubernetes.io/selected-node); its directory is then under that node's root, and the PV gets a nodeAffinity
  for the node (label kubernetes.io/hostname), as a real node-local volume.
- A PV of ours with reclaimPolicy Delete that is Released (its claim was deleted) loses its directory, then the PV
  itself is deleted. One with Retain keeps both, as a cloud disk outlives its claim.

Level-triggered: watches on claims and volumes only wake the reconcile loop, which also runs every few seconds.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

if TYPE_CHECKING:
    from collections.abc import Callable

PROVISIONER = "dindcheck.testbed/hostpath"
ANNOTATION = "pv.kubernetes.io/provisioned-by"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
HOSTNAME_LABEL = "kubernetes.io/hostname"
ALLOWED_PREFIX = Path("/var/lib/dindcheck-testbed")
RESYNC_S = 5.0

log = logging.getLogger("provisioner")


@dataclass(frozen=True)
class ClassRoots:
    """Where one StorageClass keeps its volumes: a root, roots for particular nodes, its binding mode and reclaim.

    A remote node (parameter ``remote.<node>: "true"``, the --node-vm guest) has a filesystem of its own: its
    directory cannot be made from here, so its kubelet makes it (hostPath type DirectoryOrCreate).
    """

    root: Path
    node_roots: dict[str, Path] = field(default_factory=dict)
    wait_for_consumer: bool = False
    reclaim_policy: str = "Delete"
    remote_nodes: frozenset[str] = frozenset()

    def for_node(self, node: str) -> Path:
        """The backing root for a volume of a pod on NODE ("": no node chosen)."""
        return self.node_roots.get(node, self.root)


def _allowed(class_name: str, key: str, value: str) -> Path | None:
    root = Path(value)
    if root.is_absolute() and root.is_relative_to(ALLOWED_PREFIX):
        return root
    log.error("StorageClass %s: parameter %s=%r is not under %s; ignored", class_name, key, value, ALLOWED_PREFIX)
    return None


def class_roots(storage: client.StorageV1Api) -> dict[str, ClassRoots]:
    """StorageClass name -> where its volumes go, for the classes this provisioner serves."""
    roots: dict[str, ClassRoots] = {}
    for sc in storage.list_storage_class().items:
        if sc.provisioner != PROVISIONER:
            continue
        name = sc.metadata.name
        params = sc.parameters or {}
        root = _allowed(name, "root", params.get("root", ""))
        if root is None:
            continue
        node_roots = {}
        for key, value in params.items():
            if key.startswith("root.") and (node_root := _allowed(name, key, value)) is not None:
                node_roots[key.removeprefix("root.")] = node_root
        remote = frozenset(
            key.removeprefix("remote.") for key, flag in params.items() if key.startswith("remote.") and flag == "true"
        )
        roots[name] = ClassRoots(
            root, node_roots, sc.volume_binding_mode == "WaitForFirstConsumer", sc.reclaim_policy or "Delete", remote
        )
    return roots


def provision(core: client.CoreV1Api, pvc: Any, roots: ClassRoots) -> None:
    """Creates the directory and the bound hostPath PV for one pending claim (on its selected node, if any)."""
    meta = pvc.metadata
    node = (meta.annotations or {}).get(SELECTED_NODE, "")
    name = f"pvc-{meta.uid}"
    path = roots.for_node(node) / f"{meta.namespace}-{meta.name}-{meta.uid}"
    remote = node in roots.remote_nodes
    if not remote:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
    size = ((pvc.spec.resources and pvc.spec.resources.requests) or {}).get("storage", "1Gi")
    affinity = None
    if node:
        term = client.V1NodeSelectorTerm(
            match_expressions=[client.V1NodeSelectorRequirement(key=HOSTNAME_LABEL, operator="In", values=[node])]
        )
        affinity = client.V1VolumeNodeAffinity(required=client.V1NodeSelector(node_selector_terms=[term]))
    pv = client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(
            name=name,
            annotations={ANNOTATION: PROVISIONER},
            labels={"app.kubernetes.io/managed-by": "dindcheck-testbed"},
        ),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": size},
            access_modes=pvc.spec.access_modes or ["ReadWriteOnce"],
            persistent_volume_reclaim_policy=roots.reclaim_policy,
            storage_class_name=pvc.spec.storage_class_name,
            volume_mode=pvc.spec.volume_mode or "Filesystem",
            host_path=client.V1HostPathVolumeSource(
                path=str(path), type="DirectoryOrCreate" if remote else "Directory"
            ),
            node_affinity=affinity,
            claim_ref=client.V1ObjectReference(
                api_version="v1", kind="PersistentVolumeClaim", namespace=meta.namespace, name=meta.name, uid=meta.uid
            ),
        ),
    )
    try:
        core.create_persistent_volume(pv)
    except ApiException as exc:
        if exc.status != 409:
            raise
        return
    where = f" for node {node}" if node else ""
    log.info("provisioned %s for %s/%s at %s%s", name, meta.namespace, meta.name, path, where)


def reclaim(core: client.CoreV1Api, pv: Any) -> None:
    """Deletes the directory and the PV of a released volume of ours."""
    host_path = pv.spec.host_path.path if pv.spec.host_path else ""
    path = Path(host_path)
    if host_path and path.is_relative_to(ALLOWED_PREFIX) and path.exists():
        shutil.rmtree(path, ignore_errors=True)
    try:
        core.delete_persistent_volume(pv.metadata.name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    log.info("reclaimed %s (%s)", pv.metadata.name, host_path)


def reconcile(core: client.CoreV1Api, storage: client.StorageV1Api) -> None:
    roots = class_roots(storage)
    pvs = core.list_persistent_volume().items
    bound_uids = {pv.spec.claim_ref.uid for pv in pvs if pv.spec.claim_ref is not None}
    for pvc in core.list_persistent_volume_claim_for_all_namespaces().items:
        where = roots.get(pvc.spec.storage_class_name or "")
        if where is None or pvc.spec.volume_name or pvc.metadata.deletion_timestamp:
            continue
        if pvc.metadata.uid in bound_uids:
            continue
        if where.wait_for_consumer and SELECTED_NODE not in (pvc.metadata.annotations or {}):
            continue  # no pod scheduled with it yet
        provision(core, pvc, where)
    for pv in pvs:
        ours = (pv.metadata.annotations or {}).get(ANNOTATION) == PROVISIONER
        deleted_with_its_claim = pv.spec.persistent_volume_reclaim_policy == "Delete"
        released = pv.status and pv.status.phase in {"Released", "Failed"}
        if ours and deleted_with_its_claim and not pv.metadata.deletion_timestamp and released:
            reclaim(core, pv)


def watch_forever(wake: threading.Event, lister: Callable[..., Any]) -> None:
    """Sets WAKE on every event of LISTER's watch; reconnects on errors."""
    while True:
        try:
            for _ in watch.Watch().stream(lister, timeout_seconds=60):
                wake.set()
        except Exception:
            log.debug("watch on %s ended; retrying", getattr(lister, "__name__", lister), exc_info=True)
            time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    config.load_kube_config(config_file=args.kubeconfig)
    core = client.CoreV1Api()
    storage = client.StorageV1Api()
    wake = threading.Event()
    for lister in (core.list_persistent_volume_claim_for_all_namespaces, core.list_persistent_volume):
        threading.Thread(target=watch_forever, args=(wake, lister), daemon=True).start()
    log.info("serving provisioner %s", PROVISIONER)
    while True:
        try:
            reconcile(core, storage)
        except Exception:
            log.exception("reconcile failed; retrying")
        wake.wait(RESYNC_S)
        wake.clear()


if __name__ == "__main__":
    sys.exit(main())
