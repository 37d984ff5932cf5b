#!/usr/bin/env bash
# Builds the Docker 29 engine for the testbed's default dind image from the pinned wrapper modules into
# $1/docker-engine (a cache directory that survives fresh clones):
#   dockerd, docker-proxy  testbed/go/dockerd   github.com/moby/moby/v2 (v2.0.0-beta.N tags = docker-v29.x.y commits)
#   docker                 testbed/go/dockercli github.com/docker/cli (the CLI release of the same engine version;
#                          compiled as its own main module, see below)
#   docker-buildx          testbed/go/buildx    github.com/docker/buildx (CLI plugin)
# Static (CGO_ENABLED=0, upstream's static build tags) so they drop into any rootfs; version strings set at link time
# as upstream's build scripts do, so `dockerd --version`, `docker version` and `docker buildx version` report the
# release. Each component is skipped when its binaries for its pin exist (stamp .<component>-<module version>).
# containerd, runc and docker-init (tini) are not built: the image takes Debian's.
set -euo pipefail
out=${1:?usage: build-docker.sh OUTDIR}/docker-engine
gomods=$(cd "$(dirname "$0")/../go" && pwd)

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

pin() { # pin DIR MODULE: the version the wrapper module DIR requires of MODULE
  local v
  v=$(awk -v m="$2" '($1 == "require" && $2 == m) || ($1 == m && NF >= 2) { print ($1 == m ? $2 : $3); exit }' \
    "$gomods/$1/go.mod")
  [[ -n $v ]] || {
    echo "build-docker: no $2 pin in $gomods/$1/go.mod" >&2
    exit 1
  }
  echo "$v"
}

mod_field() { # mod_field DIR MODULE@VERSION FIELD: a field (Dir, Time) of the module's `go list -m -json`
  (cd "$gomods/$1" && go mod download "$2" && go list -m -json "$2") |
    awk -v f="\"$3\":" '$1 == f { gsub(/[",]/, "", $2); print $2; exit }'
}

cached() { # cached STAMP BINARY...
  local stamp=$1 b
  shift
  [[ -f $out/$stamp ]] || return 1
  for b in "$@"; do [[ -x $out/$b ]] || return 1; done
}

build() { # build DIR LDFLAGS TAGS PKG... (into $out)
  local dir=$1 ldflags=$2 tags=$3
  shift 3
  (cd "$gomods/$dir" && go build -trimpath -buildvcs=false -tags "$tags" -ldflags "-s -w $ldflags" -o "$out/" "$@")
}

mkdir -p "$out"
moby=$(pin dockerd github.com/moby/moby/v2)
cli=$(pin dockercli github.com/docker/cli)
buildx=$(pin buildx github.com/docker/buildx)
version=${cli#v}
version=${version%+incompatible} # the engine release, e.g. 29.8.1

# ----------------------------------------------------------------------------------------------- dockerd
if cached ".dockerd-$moby" dockerd docker-proxy; then
  echo "docker $version: dockerd ($moby) cached in $out"
else
  # The moby module carries no version of its own: releases/versions.yaml's `next:` names the docker-vX.Y.Z release
  # the tag was cut for (checked on the tags held in moby's repository). The daemon and the CLI must be one release.
  dir=$(mod_field dockerd "github.com/moby/moby/v2@$moby" Dir)
  engine=$(awk '$1 == "next:" { gsub(/"/, "", $2); print $2 }' "$dir/releases/versions.yaml")
  if [[ $engine != "$version" ]]; then
    echo "build-docker: github.com/moby/moby/v2@$moby is Docker ${engine:-?} but the CLI pin is $cli: pin one release" >&2
    exit 1
  fi
  when=$(mod_field dockerd "github.com/moby/moby/v2@$moby" Time)
  vpkg=github.com/moby/moby/v2/dockerversion
  echo "docker $version: building dockerd and docker-proxy from github.com/moby/moby/v2@$moby (cold: about 2 minutes on 2 cores once modules are downloaded)"
  build dockerd "-X $vpkg.Version=$version -X $vpkg.GitCommit=$moby -X $vpkg.BuildTime=$when" \
    "netgo osusergo static_build nri_no_wasm" \
    github.com/moby/moby/v2/cmd/dockerd github.com/moby/moby/v2/cmd/docker-proxy
  rm -f "$out"/.dockerd-*
  touch "$out/.dockerd-$moby"
  echo "docker $version: dockerd built into $out"
fi

# ----------------------------------------------------------------------------------------------- docker CLI
if cached ".docker-$cli" docker; then
  echo "docker $version: docker CLI ($cli) cached in $out"
else
  # The CLI has no go.mod (upstream keeps vendor.mod and builds in GOPATH mode), so as a dependency of the wrapper it
  # is compiled at language version go1.16, and cmd/docker no longer compiles that way ("implicit function
  # instantiation requires go1.18 or later"). So, as upstream's scripts/with-go-mod.sh does, the downloaded source
  # (checked against the wrapper's go.sum) becomes its own main module: go.mod = vendor.mod, go.sum = vendor.sum,
  # i.e. exactly the dependency versions upstream vendors (the module zip carries no vendored code, only the list).
  dir=$(mod_field dockercli "github.com/docker/cli@$cli" Dir)
  when=$(mod_field dockercli "github.com/docker/cli@$cli" Time)
  src=$(mktemp -d "${TMPDIR:-/tmp}/build-docker-cli.XXXXXX")
  trap 'rm -rf "$src"' EXIT
  cp -r "$dir/." "$src/"
  chmod -R u+w "$src"
  rm -rf "$src/vendor"
  cp "$src/vendor.mod" "$src/go.mod"
  cp "$src/vendor.sum" "$src/go.sum"
  vpkg=github.com/docker/cli/cli/version
  echo "docker $version: building the docker CLI from github.com/docker/cli@$cli (cold: about 1 minute)"
  (cd "$src" && go build -trimpath -buildvcs=false -tags "grpcnotrace osusergo netgo" \
    -ldflags "-s -w -X $vpkg.Version=$version -X $vpkg.GitCommit=v$version -X $vpkg.BuildTime=$when" \
    -o "$out/docker" ./cmd/docker)
  rm -rf "$src"
  rm -f "$out"/.docker-*
  touch "$out/.docker-$cli"
  echo "docker $version: docker CLI built into $out"
fi

# ----------------------------------------------------------------------------------------------- buildx plugin
if cached ".buildx-$buildx" docker-buildx; then
  echo "docker $version: buildx $buildx cached in $out"
else
  vpkg=github.com/docker/buildx/version
  echo "docker $version: building the buildx plugin from github.com/docker/buildx@$buildx (cold: about 2 minutes)"
  build buildx "-X $vpkg.Version=$buildx -X $vpkg.Revision=$buildx -X $vpkg.Package=github.com/docker/buildx" "" \
    github.com/docker/buildx/cmd/buildx
  mv -f "$out/buildx" "$out/docker-buildx"
  rm -f "$out"/.buildx-*
  touch "$out/.buildx-$buildx"
  echo "docker $version: buildx built into $out"
fi
