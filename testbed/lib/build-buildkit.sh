#!/usr/bin/env bash
# Builds buildkitd and buildctl from the pinned wrapper module (testbed/go/buildkit) into $1 (a cache directory that
# survives fresh clones). Static (CGO_ENABLED=0) so the binaries drop into any rootfs. Skips the build when the
# binaries for this pin exist.
set -euo pipefail
out=${1:?usage: build-buildkit.sh OUTDIR}
here=$(cd "$(dirname "$0")/../go/buildkit" && pwd)
version=$(awk '$1=="require" && $2=="github.com/moby/buildkit" {print $3}' "$here/go.mod")
[[ -n $version ]] || { echo "build-buildkit: no github.com/moby/buildkit pin in $here/go.mod" >&2; exit 1; }
stamp="$out/.buildkit-$version"
components=(buildkitd buildctl)
if [[ -f $stamp ]] && [[ -x $out/buildkitd && -x $out/buildctl ]]; then
  echo "buildkit $version: cached in $out"
  exit 0
fi
vpkg=github.com/moby/buildkit/version
ldflags="-s -w -X $vpkg.Version=$version -X $vpkg.Package=github.com/moby/buildkit"
mkdir -p "$out"
echo "buildkit $version: building ${components[*]} (cold: about 1.5 minutes on 2 cores once modules are downloaded)"
cd "$here"
pkgs=()
for c in "${components[@]}"; do pkgs+=("github.com/moby/buildkit/cmd/$c"); done
CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}"
touch "$stamp"
echo "buildkit $version: built into $out"
