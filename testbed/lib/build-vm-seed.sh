#!/usr/bin/env bash
# build-vm-seed.sh OUTDIR IMAGES_DIR NAME...: the vm node's image store, pre-filled: an ext4 disk image (OUTDIR/
# seed.img, label dindcheck-ctrd) holding a containerd root (/var/lib/containerd) into which the named testbed images
# (IMAGES_DIR/NAME.tar, as images.sh built them, named with their registry refs) are imported and unpacked for the
# overlayfs snapshotter, in containerd's k8s.io namespace, where the CRI plugin finds them.
# Why: under software emulation a pull costs the guest minutes (gunzip and unpack at 5-20x the host's cost: 73 s for
# the 28 MB tools image, 3 min for BuildKit's 71 MB, all probes pulling at once), which is the testbed's slowness, not
# the cluster's. The host does it in seconds with the same containerd (Debian's 1.6, the guest's own package). The
# guest boots on a fresh copy-on-write overlay of this image every time (lib/vm.sh), so the seed never changes under
# it; pods find their images present (imagePullPolicy IfNotPresent, as for any tagged image) with the digests the
# registry serves. Rebuilt only when an image's digest or this script changes (OUTDIR/.seed-inputs).
# With SELinux (OUTDIR/file_contexts, written by lib/build-vm.sh from the guest's policy) every file of the store is
# labelled as the guest's policy would label /var/lib/containerd (setfiles, as the image itself is): unlabelled, the
# store is unlabeled_t and containerd (dockerd_t) may not read its own metadata or snapshots.
set -euo pipefail
out=${1:?usage: build-vm-seed.sh OUTDIR IMAGES_DIR NAME...}
images=${2:?usage: build-vm-seed.sh OUTDIR IMAGES_DIR NAME...}
shift 2
(($#)) || { echo "usage: build-vm-seed.sh OUTDIR IMAGES_DIR NAME..." >&2; exit 2; }
SEED_SIZE=16G # sparse

say() { echo "vm seed: $*"; }
for name in "$@"; do
  [[ -f $images/$name.tar && -f $images/$name.digest && -f $images/$name.ref ]] ||
    { say "error: image $name not built in $images" >&2; exit 1; }
done
inputs=$({
  sha256sum "$0" | cut -c1-64
  containerd --version
  for name in "$@"; do printf '%s %s %s\n' "$name" "$(<"$images/$name.ref")" "$(<"$images/$name.digest")"; done
  if [[ -f $out/file_contexts ]]; then sha256sum "$out/file_contexts" | cut -c1-64; fi
} | sha256sum | cut -c1-64)
if [[ -f $out/.seed-inputs && $(<"$out/.seed-inputs") == "$inputs" && -f $out/seed.img ]]; then
  say "cached in $out/seed.img (inputs ${inputs:0:12})"
  exit 0
fi

work=$out/seed.work
store=$work/var/lib/containerd # the guest's path, so setfiles -r $work matches the policy's patterns
run=$(mktemp -d /run/dindcheck-vm-seed.XXXXXX)
pid=
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  # the overlayfs snapshotter leaves no mounts after an import (it unpacks with its own temporary mounts)
  if ! grep -q " $work" /proc/self/mountinfo; then rm -rf "$work"; fi
  rm -rf "$run"
}
trap cleanup EXIT
t=$SECONDS
rm -rf "$work"
mkdir -p "$store" "$run/state"
# A containerd of its own (own root, state and socket; no CRI, which would start sandboxes and CNI), only to import.
cat >"$run/config.toml" <<EOF
version = 2
root = "$store"
state = "$run/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$run/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$run/opt"
EOF
containerd --config "$run/config.toml" >"$run/containerd.log" 2>&1 &
pid=$!
ctr_() { ctr --address "$run/containerd.sock" -n k8s.io "$@"; }
for _ in $(seq 1 100); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done
ctr_ version >/dev/null || { tail -n 20 "$run/containerd.log" >&2; say "error: containerd did not start" >&2; exit 1; }
for name in "$@"; do
  ref=$(<"$images/$name.ref")
  want=$(<"$images/$name.digest")
  say "importing $ref"
  ctr_ images import --snapshotter overlayfs "$images/$name.tar" >/dev/null
  have=$(ctr_ images ls 2>/dev/null | awk -v r="$ref" 'NR > 1 && $1 == r { print $3 }')
  [[ $have == "$want" ]] || { say "error: import of $name gave '${have:-nothing}', not $want" >&2; exit 1; }
done
kill -TERM "$pid"
wait "$pid" || true
pid=
if [[ -f $out/file_contexts ]]; then
  say "labelling the store with the guest's SELinux file contexts"
  setfiles -F -r "$work" "$out/file_contexts" "$store"
fi
rm -f "$out/seed.img.tmp"
truncate -s "$SEED_SIZE" "$out/seed.img.tmp"
mkfs.ext4 -q -F -L dindcheck-ctrd -d "$store" "$out/seed.img.tmp"
mv "$out/seed.img.tmp" "$out/seed.img"
echo "$inputs" >"$out/.seed-inputs"
say "built $out/seed.img ($# images, $((SECONDS - t)) s, $(du -h "$out/seed.img" | cut -f1) used)"
