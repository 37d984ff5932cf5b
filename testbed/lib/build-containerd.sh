#!/usr/bin/env bash
# Builds containerd 2 (containerd, containerd-shim-runc-v2, ctr) for the testbed's second node (`up --nodes 2`) from
# the pinned wrapper module (testbed/go/containerd) into $1/containerd2 (a cache directory that survives fresh
# clones). Static (CGO_ENABLED=0, which also leaves out the cgo-only btrfs snapshotter; no_btrfs says so explicitly)
# with upstream's Makefile tags (urfave_cli_no_docs; the shim also no_grpc) and version strings set at link time as
# upstream does, so `containerd --version` and the CRI's runtime version report the release. The shim sits next to
# containerd, where containerd 2 looks for it first. Skips the build when the binaries for this pin exist (stamp
# .containerd-<version>).
set -euo pipefail
out=${1:?usage: build-containerd.sh OUTDIR}/containerd2
here=$(cd "$(dirname "$0")/../go/containerd" && pwd)
module=github.com/containerd/containerd/v2
version=$(awk -v m="$module" '$1 == "require" && $2 == m { print $3 }' "$here/go.mod")
[[ -n $version ]] || { echo "build-containerd: no $module pin in $here/go.mod" >&2; exit 1; }
stamp="$out/.containerd-$version"
if [[ -f $stamp && -x $out/containerd && -x $out/containerd-shim-runc-v2 && -x $out/ctr ]]; then
  echo "containerd $version: cached in $out"
  exit 0
fi
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
mkdir -p "$out"
echo "containerd $version: building containerd, containerd-shim-runc-v2 and ctr (cold: about 3 minutes on 2 cores once modules are downloaded)"
cd "$here"
when=$(go list -m -json "$module" | awk '$1 == "\"Time\":" { gsub(/[",]/, "", $2); print $2; exit }')
ldflags="-s -w -X $module/version.Version=$version -X $module/version.Revision=$version"
ldflags+=" -X $module/version.Package=$module"
tags="urfave_cli_no_docs no_btrfs osusergo netgo static_build"
go build -trimpath -buildvcs=false -tags "$tags" -ldflags "$ldflags" -o "$out/" \
  "$module/cmd/containerd" "$module/cmd/ctr"
go build -trimpath -buildvcs=false -tags "$tags no_grpc" -ldflags "$ldflags -extldflags -static" \
  -o "$out/containerd-shim-runc-v2" "$module/cmd/containerd-shim-runc-v2"
rm -f "$out"/.containerd-*
echo "$when" >"$stamp"
echo "containerd $version: built into $out"
