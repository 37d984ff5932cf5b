#!/usr/bin/env bash
# Builds the Cloud Native Buildpacks lifecycle from the pinned wrapper module (testbed/go/lifecycle) into
# $1/lifecycle (a cache directory that survives fresh clones): the lifecycle binary with its phase names as symlinks
# (creator, detector, analyzer, restorer, builder, exporter, rebaser, extender) and the launcher the exporter puts
# into every app image, as upstream's lifecycle.mk and launcher.mk lay them out. Static (CGO_ENABLED=0), version set
# at link time as upstream's Makefile does. Skips the build when the binaries for this pin exist (stamp
# .lifecycle-<version>).
set -euo pipefail
out=${1:?usage: build-lifecycle.sh OUTDIR}/lifecycle
here=$(cd "$(dirname "$0")/../go/lifecycle" && pwd)
module=github.com/buildpacks/lifecycle
version=$(awk -v m="$module" '$1 == "require" && $2 == m { print $3 }' "$here/go.mod")
[[ -n $version ]] || { echo "build-lifecycle: no $module pin in $here/go.mod" >&2; exit 1; }
stamp="$out/.lifecycle-$version"
phases=(detector analyzer restorer builder exporter rebaser creator extender)
if [[ -f $stamp && -x $out/lifecycle && -x $out/launcher ]]; then
  echo "lifecycle $version: cached in $out"
  exit 0
fi
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
mkdir -p "$out"
echo "lifecycle $version: building lifecycle and launcher (cold: about 2.5 minutes on 2 cores once modules are downloaded)"
cd "$here"
ldflags="-s -w -X '$module/cmd.SCMRepository=$module' -X '$module/cmd.Version=${version#v}'"
go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out/lifecycle" "$module/cmd/lifecycle"
go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out/launcher" "$module/cmd/launcher"
for p in "${phases[@]}"; do ln -sfn lifecycle "$out/$p"; done
rm -f "$out"/.lifecycle-*
touch "$stamp"
echo "lifecycle $version: built into $out"
