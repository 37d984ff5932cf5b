"""Overlay on the cache filesystem: does an actual overlay mount work where /var/lib/docker would live?

The definitive test is what moby and containerd do: mount an overlay with two lowers, write, delete a lower file
(a whiteout), unmount. Done on an emptyDir (node disk) and on a PVC of the cache StorageClass; the rootless
variant (user namespace + userxattr) too, because rootless BuildKit needs that one.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from probes import specs
from probes.api import api_call
from probes.engine import CommandResult, Outcome, ProbeContext, compact, key_values
from probes.exceptions import PodNotRunningError, ProbeError
from probes.model import Facts, OverlayResult, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "Keep /var/lib/docker (DinD) and BuildKit's state on block storage: an emptyDir on node disk, or a PVC of an "
    "ext4/xfs/btrfs-backed class. NFS, EFS, Filestore, CephFS and FUSE filesystems cannot be an overlay upperdir."
)

# Provisioners whose volumes are network or FUSE filesystems: an [inferred] flag, the mount test is the proof.
NFS_LIKE_PROVISIONERS = (
    "nfs",
    "efs.csi.aws.com",
    "filestore",
    "cephfs",
    "file.csi.azure.com",
    "azurefile",
    "smb",
    "glusterfs",
    "juicefs",
    "fuse",
    "s3",
)

OVERLAY_SCRIPT = r"""
probe() {
  label=$1; base=$2
  echo "$label.fs_type=$(stat -f -c %T "$base" 2>&1)"
  echo "$label.findmnt=$(findmnt -no FSTYPE,OPTIONS -T "$base" 2>/dev/null | head -n 1)"
  d="$base/.dindcheck-overlay"; rm -rf "$d"; mkdir -p "$d/l1" "$d/l2" "$d/up" "$d/work" "$d/merged"
  echo one > "$d/l1/one"; echo two > "$d/l2/two"
  if err=$(mount -t overlay overlay -o "lowerdir=$d/l2:$d/l1,upperdir=$d/up,workdir=$d/work" "$d/merged" 2>&1); then
    if echo three > "$d/merged/three" && rm "$d/merged/one" && [ ! -e "$d/merged/one" ] && [ -c "$d/up/one" ]; then
      echo "$label.overlay=ok"
    else
      echo "$label.overlay=io-failed"; echo "$label.error=write or whiteout failed on the merged dir"
    fi
    umount "$d/merged" 2>/dev/null
  else
    echo "$label.overlay=failed"; echo "$label.error=$(echo "$err" | tr '\n' ' ')"
    echo "$label.kernel=$(dmesg 2>/dev/null | grep -i 'overlayfs' | tail -n 3 | sed 's/^\[[^]]*\] *//' | tr '\n' ';')"
  fi
  u="$base/.dindcheck-userns"; rm -rf "$u"; mkdir -p "$u/l" "$u/up" "$u/work" "$u/merged"; echo x > "$u/l/x"
  if uerr=$(unshare -Urm sh -c "mount -t overlay overlay -o lowerdir=$u/l,upperdir=$u/up,workdir=$u/work,userxattr \
      $u/merged && echo y > $u/merged/y && umount $u/merged" 2>&1); then
    echo "$label.userns_overlay=ok"
  else
    echo "$label.userns_overlay=failed"; echo "$label.userns_error=$(echo "$uerr" | tr '\n' ' ')"
  fi
  rm -rf "$d" "$u"
}
probe "$1" "$2"
"""


def _measure(ctx: ProbeContext, pod_name: str, label: str, path: str) -> dict[str, Any]:
    """Run the overlay script on one directory and return its findings."""
    ctx.say(f"overlay mount on {label} ({path})")
    result: CommandResult = ctx.exec(pod_name, "tools", f"set -- {label} {path}\n{OVERLAY_SCRIPT}", timeout_s=60)
    values = key_values(result.stdout)
    if f"{label}.overlay" not in values:
        raise ProbeError(f"overlay script did not run in {pod_name}: rc={result.rc} {result.tail()}")
    mount = values.get(f"{label}.findmnt", "")
    found: dict[str, Any] = {
        "path": path,
        "fs_type": mount.split()[0] if mount else values.get(f"{label}.fs_type", ""),
        "statfs_type": values.get(f"{label}.fs_type", ""),
        "mount": mount,
        "overlay": values.get(f"{label}.overlay") == "ok",
        "userns_overlay": values.get(f"{label}.userns_overlay") == "ok",
    }
    kernel = "; ".join(line.strip() for line in values.get(f"{label}.kernel", "").split(";") if line.strip())
    mount_error = " ".join(values.get(f"{label}.error", "").split())
    if kernel:
        found["kernel"] = kernel
    if mount_error:
        found["mount_error"] = mount_error
    found["reason"] = overlay_reason(mount_error, kernel)
    if values.get(f"{label}.userns_error"):
        found["userns_reason"] = " ".join(values[f"{label}.userns_error"].split())
    return found


def overlay_reason(mount_error: str, kernel: str) -> str:
    """The mount's own error first, then the node's kernel log, marked as such.

    The kernel log is node-wide (it may be another pod's line), but it often says why where mount(8) only says
    that it failed.
    """
    if mount_error and kernel:
        return f"{mount_error} (kernel log on the node: {kernel})"
    return mount_error or (f"kernel log on the node: {kernel}" if kernel else "")


def _pod_spec(settings: ProbeSettings, volume: dict[str, Any]) -> dict[str, Any]:
    spec = specs.tools_pod_spec(settings.images.tools, settings.resources, privileged=True)
    spec["containers"][0]["volumeMounts"] = [{"name": "cache", "mountPath": "/cache"}]
    spec["volumes"] = [{"name": "cache", **volume}]
    return spec


def _class_facts(ctx: ProbeContext, name: str) -> dict[str, Any]:
    try:
        storage_class = api_call(client.StorageV1Api(ctx.connection.api_client).read_storage_class, name)
    except ApiException as exc:
        return {"storage_class": name, "provisioner": f"unknown ({exc.status})", "rwx_capable": False}
    provisioner = str(storage_class.provisioner)
    nfs_like = any(marker in provisioner.lower() for marker in NFS_LIKE_PROVISIONERS)
    return {"storage_class": name, "provisioner": provisioner, "rwx_capable": nfs_like}


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Overlay on an emptyDir and on a PVC of the cache class, in two privileged tools pods at once."""
    evidence: dict[str, Any] = {}
    empty_manifest = ctx.pod_manifest("emptydir", _pod_spec(settings, {"emptyDir": {}}))
    storage_class = settings.storage_class
    class_manifest = None
    pvc = ""
    if storage_class:
        evidence["cache_class"] = _class_facts(ctx, storage_class)
        pvc = ctx.create_pvc("cache", storage_class)
        class_manifest = ctx.pod_manifest("pvc", _pod_spec(settings, {"persistentVolumeClaim": {"claimName": pvc}}))
    ctx.create_pod(empty_manifest)
    if class_manifest is not None:
        ctx.create_pod(class_manifest)
    empty_name = empty_manifest["metadata"]["name"]
    try:
        ctx.wait_running(empty_name)
        evidence["emptydir"] = _measure(ctx, empty_name, "emptydir", "/cache")
    finally:
        ctx.delete_pod(empty_name)
    class_error = ""
    if class_manifest is not None:
        class_name = class_manifest["metadata"]["name"]
        try:
            ctx.wait_running(class_name)
            evidence["cache_class"].update(_measure(ctx, class_name, "cache", "/cache"))
            evidence["cache_class"]["pv"] = _volume(ctx, pvc)
        except PodNotRunningError as exc:
            class_error = compact(exc.reason)
            evidence["cache_class"]["overlay"] = None
            evidence["cache_class"]["reason"] = f"pod with the PVC did not run: {exc.reason}"
        finally:
            ctx.delete_pod(class_name)
    outcome = verdict(evidence, storage_class, class_error)
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, overlay_facts(evidence))


def _volume(ctx: ProbeContext, pvc: str) -> dict[str, str]:
    """The PV behind the cache PVC and its reclaim policy (a Retain volume outlives the run: cleanup names it)."""
    try:
        claim = api_call(ctx.core.read_namespaced_persistent_volume_claim, pvc, ctx.scope.namespace)
        volume_name = str(claim.spec.volume_name or "")
        if not volume_name:
            return {}
        volume = api_call(ctx.core.read_persistent_volume, volume_name)
    except ApiException:
        return {}
    return {"name": volume_name, "reclaim_policy": str(volume.spec.persistent_volume_reclaim_policy or "")}


def overlay_facts(evidence: dict[str, Any]) -> Facts:
    """The typed overlay results the recommendation reads, from this probe's evidence (one place for the keys)."""
    results = []
    empty = evidence.get("emptydir")
    if empty:
        results.append(OverlayResult("", str(empty.get("fs_type", "")), empty.get("overlay"), empty.get("reason", "")))
    cache = evidence.get("cache_class")
    if cache:
        results.append(
            OverlayResult(
                storage_class=str(cache["storage_class"]),
                fs_type=str(cache.get("fs_type", "")),
                overlay=cache.get("overlay"),
                reason=str(cache.get("reason", "")),
                nfs_like=bool(cache.get("rwx_capable")),
            )
        )
    return Facts(overlay=tuple(results))


def verdict(evidence: dict[str, Any], storage_class: str | None, class_error: str) -> Outcome:
    """Pass when overlay works where the mode keeps its layers (pure, over the recorded evidence)."""
    empty = evidence["emptydir"]
    if not empty["overlay"]:
        return Outcome(
            Status.FAIL,
            f"overlay mount fails even on an emptyDir ({empty['fs_type']}): {empty.get('reason', '')}".strip(),
            evidence,
        )
    empty_note = f"overlay works on emptyDir ({empty['fs_type']})"
    if storage_class is None:
        return Outcome(
            Status.PASS,
            f"{empty_note}; no cache StorageClass given or default: only emptyDir tested",
            evidence,
            remediation="",
        )
    cache = evidence["cache_class"]
    if class_error:
        return Outcome(
            Status.INCONCLUSIVE, f"{empty_note}; StorageClass {storage_class} not tested: {class_error}", evidence
        )
    flag = " (provisioner looks NFS-like [inferred])" if cache.get("rwx_capable") else ""
    if not cache["overlay"]:
        return Outcome(
            Status.FAIL,
            f"overlay fails on StorageClass {storage_class} ({cache['fs_type']}){flag}: "
            f"{cache.get('reason', '')}; {empty_note}",
            evidence,
        )
    return Outcome(
        Status.PASS,
        f"overlay works on StorageClass {storage_class} ({cache['fs_type']}){flag} and on emptyDir "
        f"({empty['fs_type']})",
        evidence,
        remediation="",
    )


PROBE = ProbeDefinition(
    id="overlay-cache",
    capability="overlay-cache",
    title="overlayfs works on the build cache volume",
    remediation=REMEDIATION,
    run=run,
)
