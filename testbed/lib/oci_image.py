#!/usr/bin/env python3
"""Turn a rootfs (directory or tar) plus an image config into a single-layer OCI image archive.

Why: the testbed cannot pull images (no registry is reachable), so it builds them from debootstrap rootfs trees and
imports them with `ctr -n k8s.io images import`. This tool writes an OCI image layout tar whose index.json carries
the image name annotations that containerd's importer uses to name the image. Output is deterministic for the same
input tree: entries sorted, owner names dropped, mtimes clamped, gzip header without name or time.

Stdlib only (Python 3.11) so the testbed needs no extra packages on the host.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANN_CONTAINERD_NAME = "io.containerd.image.name"
ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_CREATED = "org.opencontainers.image.created"
# xattrs that mean something inside a container image (file capabilities, user data). Others (selinux labels,
# POSIX ACLs stored as system.*) are host-specific and would make the layer depend on the build host.
XATTR_PREFIXES = ("security.capability", "user.", "trusted.")
CHUNK = 1 << 20


class HashingWriter(io.RawIOBase):
    """Write-through file object that hashes and counts what passes, so digests come out of a single pass."""

    def __init__(self, sink: IO[bytes]) -> None:
        """Wrap sink; nothing is buffered here."""
        super().__init__()
        self._sink = sink
        self._hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        """Report write support (io machinery asks)."""
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        """Hash, count and forward one chunk."""
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self._sink.write(view)
        self.size += len(view)
        return len(view)

    @property
    def digest(self) -> str:
        """Digest of everything written so far, in OCI form."""
        return "sha256:" + self._hash.hexdigest()


@dataclass
class Entry:
    """One layer member: a normalized TarInfo plus where its bytes come from (regular files only)."""

    info: tarfile.TarInfo
    opener: Callable[[], IO[bytes]] | None = None
    link_key: object = None  # entries sharing a key are hard links of one another


def _norm_name(name: str) -> str:
    """Layer paths are relative with no './' prefix, like the ones docker and containerd write."""
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def _normalize(info: tarfile.TarInfo, name: str, mtime: int | None) -> tarfile.TarInfo:
    """Drop build-host details (owner names, newer mtimes) that would make identical trees hash differently."""
    info.name = name
    info.uname = ""
    info.gname = ""
    if mtime is not None:
        info.mtime = min(int(info.mtime), mtime)
    else:
        info.mtime = int(info.mtime)
    return info


def _xattrs(path: str) -> dict[str, str]:
    """Read the xattrs worth carrying as PAX SCHILY.xattr records (e.g. file capabilities)."""
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for key in sorted(names):
        if not key.startswith(XATTR_PREFIXES):
            continue
        try:
            value = os.getxattr(path, key, follow_symlinks=False)
        except OSError:
            continue
        # tarfile encodes PAX values as UTF-8; surrogateescape round-trips arbitrary bytes.
        out["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    return out


def entries_from_dir(root: Path, mtime: int | None) -> Iterator[Entry]:
    """Walk a rootfs directory in sorted order; sockets are skipped (tar cannot hold them)."""
    probe = tarfile.TarFile(fileobj=io.BytesIO(), mode="w")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISSOCK(st.st_mode):
                continue
            rel = _norm_name(f"{rel_dir}/{name}")
            info = probe.gettarinfo(path, arcname=rel)
            info = _normalize(info, rel, mtime)
            xattrs = _xattrs(str(path))
            if xattrs:
                info.pax_headers = xattrs
            entry = Entry(info)
            if info.isreg() or info.islnk():
                info.type = tarfile.REGTYPE
                info.linkname = ""
                info.size = st.st_size
                entry.opener = _file_opener(path)
                if st.st_nlink > 1:
                    entry.link_key = (st.st_dev, st.st_ino)
            yield entry


def _file_opener(path: Path) -> Callable[[], IO[bytes]]:
    """Defer opening until the entry is written, so a large tree never holds many open files."""
    return lambda: path.open("rb")


def entries_from_tar(tar: tarfile.TarFile, mtime: int | None) -> list[Entry]:
    """Read a rootfs tar; hard links are re-resolved after sorting so a link never precedes its target."""
    members = tar.getmembers()
    by_name = {_norm_name(m.name): m for m in members}
    out: list[Entry] = []
    for member in members:
        name = _norm_name(member.name)
        if not name:
            continue
        info = _normalize(copy.copy(member), name, mtime)
        info.pax_headers = {k: v for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        entry = Entry(info)
        if member.isreg() or member.islnk():
            target_name = name
            target = member
            seen: set[str] = set()
            while target.islnk() and target_name not in seen:
                seen.add(target_name)
                target_name = _norm_name(target.linkname)
                target = by_name[target_name]
            info.type = tarfile.REGTYPE
            info.linkname = ""
            info.size = target.size
            entry.opener = _tar_opener(tar, target)
            entry.link_key = target_name
        out.append(entry)
    out.sort(key=lambda e: e.info.name)
    return out


def _tar_opener(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    """Open a member of the source tar lazily (tarfile seeks back to it)."""

    def opener() -> IO[bytes]:
        handle = tar.extractfile(member)
        if handle is None:
            msg = f"{member.name}: no data in source tar"
            raise ValueError(msg)
        return handle

    return opener


def write_layer(entries: Iterator[Entry] | list[Entry], sink: IO[bytes], level: int) -> tuple[str, str, int]:
    """Stream entries into a gzip tar; returns (diff_id, blob digest, blob size) from the same pass."""
    compressed = HashingWriter(sink)
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=level) as gz:
        plain = HashingWriter(gz)  # type: ignore[arg-type]
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            first_of: dict[object, str] = {}
            for entry in entries:
                info = entry.info
                if entry.link_key is not None and entry.link_key in first_of:
                    info.type = tarfile.LNKTYPE
                    info.linkname = first_of[entry.link_key]
                    info.size = 0
                    tar.addfile(info)
                    continue
                if entry.link_key is not None:
                    first_of[entry.link_key] = info.name
                if entry.opener is None:
                    tar.addfile(info)
                    continue
                with entry.opener() as handle:
                    tar.addfile(info, handle)
    return plain.digest, compressed.digest, compressed.size


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_config(args: argparse.Namespace, diff_id: str, created: str) -> dict[str, Any]:
    """Build the OCI image config: runtime defaults (Entrypoint, Env, User...) plus the layer's diff_id."""
    cfg: dict[str, Any] = {}
    if args.entrypoint is not None:
        cfg["Entrypoint"] = args.entrypoint
    if args.cmd is not None:
        cfg["Cmd"] = args.cmd
    if args.env:
        cfg["Env"] = args.env
    if args.user:
        cfg["User"] = args.user
    if args.workdir:
        cfg["WorkingDir"] = args.workdir
    if args.volume:
        cfg["Volumes"] = {v: {} for v in args.volume}
    if args.expose:
        cfg["ExposedPorts"] = {p if "/" in p else p + "/tcp": {} for p in args.expose}
    if args.label:
        cfg["Labels"] = dict(kv.split("=", 1) for kv in args.label)
    if args.stop_signal:
        cfg["StopSignal"] = args.stop_signal
    return {
        "created": created,
        "architecture": args.arch,
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "dindcheck testbed/lib/oci_image.py"}],
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = mtime
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = mtime
    tar.addfile(info)


def build(args: argparse.Namespace) -> str:
    """Write the OCI archive to args.out atomically; returns the manifest digest (what `ctr images ls` shows)."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mtime: int | None = args.mtime
    created = _rfc3339(mtime if mtime is not None else 0)
    src = Path(args.rootfs)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".oci-") as tmp:
        layer_path = Path(tmp) / "layer"
        with layer_path.open("wb") as sink:
            if src.is_dir():
                diff_id, layer_digest, layer_size = write_layer(entries_from_dir(src, mtime), sink, args.level)
            else:
                with tarfile.open(src) as rootfs_tar:
                    entries = entries_from_tar(rootfs_tar, mtime)
                    diff_id, layer_digest, layer_size = write_layer(entries, sink, args.level)
        config = _json_bytes(image_config(args, diff_id, created))
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = _json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer_digest, "size": layer_size}],
            }
        )
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        # OCI says ref.name is the tag only; containerd's exporter does the same and keeps the full name in its
        # own annotation, which its importer prefers.
        tag = args.ref.rsplit(":", 1)[1] if ":" in args.ref.rsplit("/", 1)[-1] else "latest"
        index = _json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_INDEX,
                "manifests": [
                    {
                        "mediaType": MEDIA_MANIFEST,
                        "digest": manifest_digest,
                        "size": len(manifest),
                        "platform": {"architecture": args.arch, "os": "linux"},
                        "annotations": {
                            ANN_CONTAINERD_NAME: args.ref,
                            ANN_REF_NAME: tag,
                            ANN_CREATED: created,
                        },
                    }
                ],
            }
        )
        fixed = mtime if mtime is not None else 0
        tmp_out = Path(tmp) / "image.tar"
        with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}), fixed)
            _add_bytes(tar, "index.json", index, fixed)
            _add_dir(tar, "blobs", fixed)
            _add_dir(tar, "blobs/sha256", fixed)
            blobs: list[tuple[str, bytes | Path]] = [
                (config_digest, config),
                (manifest_digest, manifest),
                (layer_digest, layer_path),
            ]
            for digest, blob in sorted(blobs, key=lambda b: b[0]):
                name = "blobs/sha256/" + digest.split(":", 1)[1]
                if isinstance(blob, bytes):
                    _add_bytes(tar, name, blob, fixed)
                    continue
                info = tarfile.TarInfo(name)
                info.size = blob.stat().st_size
                info.mode = 0o644
                info.mtime = fixed
                with blob.open("rb") as handle:
                    tar.addfile(info, handle)
        tmp_out.replace(out)
    return manifest_digest


def _json_list(text: str) -> list[str]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        msg = f"expected a JSON list of strings, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line; list-valued config fields are JSON so bash can pass them verbatim."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rootfs", required=True, help="rootfs directory or tar (any compression tarfile reads)")
    p.add_argument("--ref", required=True, help="full image reference, e.g. 10.88.0.1:5000/dindcheck/tools:abc")
    p.add_argument("--out", required=True, help="output OCI archive tar")
    p.add_argument("--entrypoint", type=_json_list, help='JSON list, e.g. ["/pause"]')
    p.add_argument("--cmd", type=_json_list, help='JSON list, e.g. ["sleep","infinity"]')
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE (repeatable)")
    p.add_argument("--user", default="")
    p.add_argument("--workdir", default="")
    p.add_argument("--volume", action="append", default=[], help="path (repeatable)")
    p.add_argument("--expose", action="append", default=[], help="PORT[/PROTO] (repeatable)")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE (repeatable)")
    p.add_argument("--stop-signal", default="")
    p.add_argument("--arch", default="amd64")
    p.add_argument(
        "--mtime",
        type=int,
        default=int(os.environ["SOURCE_DATE_EPOCH"]) if os.environ.get("SOURCE_DATE_EPOCH") else None,
        help="clamp file mtimes to this epoch and use it as the created time (default: $SOURCE_DATE_EPOCH)",
    )
    p.add_argument("--level", type=int, default=6, help="gzip level (6 is the speed/size sweet spot)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build the archive and print the manifest digest (images.sh records it to skip re-imports)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.stdout.write(build(args) + "\n")  # the digest on stdout is the interface
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
