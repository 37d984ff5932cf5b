#!/usr/bin/env bash
# Builds the Kaniko executor from the pinned wrapper module (testbed/go/kaniko) into $1/kaniko (a cache directory
# that survives fresh clones), with upstream's files/nsswitch.conf next to it for the image. Static (CGO_ENABLED=0)
# like upstream's image, version set at link time as upstream's Makefile does. Skips the build when the executor
# for this pin exists (stamp .kaniko-<version>).
set -euo pipefail
out=${1:?usage: build-kaniko.sh OUTDIR}/kaniko
here=$(cd "$(dirname "$0")/../go/kaniko" && pwd)
module=github.com/chainguard-dev/kaniko
version=$(awk -v m="$module" '$1 == "require" && $2 == m { print $3 }' "$here/go.mod")
[[ -n $version ]] || { echo "build-kaniko: no $module pin in $here/go.mod" >&2; exit 1; }
stamp="$out/.kaniko-$version"
if [[ -f $stamp && -x $out/executor && -f $out/nsswitch.conf ]]; then
  echo "kaniko $version: cached in $out"
  exit 0
fi
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
mkdir -p "$out"
echo "kaniko $version: building the executor (cold: about 1.5 minutes on 2 cores once modules are downloaded)"
cd "$here"
go build -trimpath -buildvcs=false -ldflags "-s -w -X $module/pkg/version.version=$version" -o "$out/executor" \
  "$module/cmd/executor"
# The image's /etc/nsswitch.conf is upstream's: without one, name lookups ask DNS before /etc/hosts (pod hostAliases
# would not take effect).
dir=$(go mod download -json "$module@$version" | awk '$1 == "\"Dir\":" { gsub(/[",]/, "", $2); print $2 }')
install -m 0644 "$dir/files/nsswitch.conf" "$out/nsswitch.conf"
rm -f "$out"/.kaniko-*
touch "$stamp"
echo "kaniko $version: built into $out"
