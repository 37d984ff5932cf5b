#!/usr/bin/env bash
# images.sh: builds the testbed's container images locally (no registry is reachable, nothing is ever pulled) and
# loads them into containerd.
#   images.sh build          build every image into $CACHE/images/<name>.tar (OCI archive); print TESTBED_IMAGE_* refs
#   images.sh import SOCKET  import the built archives into containerd's k8s.io namespace (skips same digest)
#   images.sh push SOCKET    push them to the testbed registry over plain http (skips what the registry already has)
#   images.sh refs           print the TESTBED_IMAGE_* lines of the last build without building
# Every image starts from ONE cached debootstrap --variant=minbase bookworm rootfs, copied and extended with apt
# inside a chroot. Image refs are $REGISTRY/dindcheck/<name>:<tag>, the tag being a hash of the image's inputs (this
# script, the packages, the files it copies in), so a changed image gets a new ref and kubelet's IfNotPresent picks
# it up. An image whose input hash is unchanged is not rebuilt.
set -euo pipefail

CACHE=${TESTBED_CACHE:-/var/cache/dindcheck-testbed}
REGISTRY=${TESTBED_REGISTRY_ADDR:-10.88.0.1:5000}
SUITE=bookworm
MIRROR=${TESTBED_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${TESTBED_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Fixed timestamp for image layers and configs (file mtimes are clamped to it) so rebuilds are reproducible.
export SOURCE_DATE_EPOCH=1704067200 # 2024-01-01T00:00:00Z

LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$LIB/../images" && pwd)
BIN=$CACHE/bin
DOCKER_BIN=$BIN/docker-engine # build-docker.sh's output
KANIKO_BIN=$BIN/kaniko         # build-kaniko.sh's output
LIFECYCLE_BIN=$BIN/lifecycle   # build-lifecycle.sh's output
IMAGES=$CACHE/images
ROOTFS=$CACHE/rootfs
APT_ARCHIVES=$CACHE/apt-archives # .deb files shared by all image builds (bind-mounted into the chroot)
BASE=$ROOTFS/base
LOG=$IMAGES/build.log # debootstrap/apt output; its tail is shown when a build fails
# Everything that decides the base rootfs; changing it rebuilds the base (and so every image).
BASE_SPEC="v1 $SUITE minbase $MIRROR $SECURITY_MIRROR"

NAMES=(pause tools dind dind-legacy buildkit registry dindcheck kaniko builder-run builder) # builder names builder-run
# dind: Docker 29 (dockerd, docker-proxy, docker CLI, buildx plugin built by build-docker.sh) on Debian's containerd,
# runc and tini; dind-legacy: Debian's docker.io (Docker 20.10, API 1.41), the dind image every earlier verdict used.
DIND_COMMON="iptables ca-certificates busybox-static procps openssl xz-utils pigz"
declare -A PACKAGES=(
  [pause]=""
  [tools]="" # minbase already has sh, coreutils, util-linux (findmnt, unshare, mount), grep
  [dind]="containerd runc tini nftables $DIND_COMMON" # nft: Docker 29's --firewall-backend=nftables (and its cleanup)
  [dind-legacy]="docker.io $DIND_COMMON"
  [buildkit]="uidmap libcap2-bin rootlesskit runc fuse-overlayfs ca-certificates pigz xz-utils"
  [registry]="docker-registry ca-certificates"
  [dindcheck]="python3 python3-venv ca-certificates"
  [kaniko]="ca-certificates" # only lends its CA bundle: the image itself is FROM scratch like upstream's
  [builder-run]="ca-certificates" # the CNB run image: what the app image is built on
  [builder]="ca-certificates"     # the CNB build image plus the lifecycle, a buildpack and the CNB metadata
)
REPO=$(cd "$LIB/../.." && pwd)
# What the dindcheck image is built from: the package, its suite included (a change to any rebuilds it).
DINDCHECK_SOURCES=(pyproject.toml probes reports dindcheck suites)
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

T0=$SECONDS
say() { echo "images: $*" >&2; }
die() {
  echo "images: error: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------------------------
# Mounts inside build chroots. Every mount is recorded; the EXIT trap unmounts whatever is still mounted, on every
# path (success, error, Ctrl-C), so a failed build never leaves /proc or the apt cache mounted under the cache dir.
MOUNTS=()
WORKDIRS=()

cleanup() {
  local rc=$? i
  if [[ $rc != 0 && ${BUILDING:-} == 1 && -s $LOG ]]; then
    echo "images: build failed (exit $rc); last lines of $LOG:" >&2
    tail -n 25 "$LOG" | sed 's/^/  | /' >&2
  fi
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || echo "images: could not unmount ${MOUNTS[i]}" >&2
  done
  MOUNTS=()
  for i in "${WORKDIRS[@]+"${WORKDIRS[@]}"}"; do
    safe_rm "$i" || true
  done
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mounted_under() { # true when anything is mounted at or below $1
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

safe_rm() { # rm -rf that refuses to descend into mounts (a leftover bind of /dev must never be emptied)
  [[ -e $1 ]] || return 0
  if mounted_under "$1"; then
    echo "images: refusing to delete $1: something is still mounted below it" >&2
    return 1
  fi
  rm -rf --one-file-system "$1"
}

untrack() { # forget a work dir once it is finished (moved or deleted)
  local d keep=()
  for d in "${WORKDIRS[@]}"; do [[ $d == "$1" ]] || keep+=("$d"); done
  WORKDIRS=("${keep[@]+"${keep[@]}"}")
}

do_mount() { # do_mount TARGET MOUNT-ARGS...
  local target=$1
  shift
  mount "$@" "$target"
  MOUNTS+=("$target")
}

chroot_enter() { # mount what apt and maintainer scripts need
  local root=$1
  do_mount "$root/proc" -t proc proc
  mkdir -p "$root/dev/pts" "$APT_ARCHIVES/partial" "$root/var/cache/apt/archives"
  do_mount "$root/dev/pts" -t devpts -o newinstance,ptmxmode=0666 devpts
  do_mount "$root/var/cache/apt/archives" --bind "$APT_ARCHIVES"
  rm -f "$root/etc/resolv.conf"
  cp /etc/resolv.conf "$root/etc/resolv.conf" # apt needs DNS; removed again before the rootfs is packed
}

chroot_leave() {
  local root=$1 i keep=()
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    if [[ ${MOUNTS[i]} == "$root"/* ]]; then
      umount "${MOUNTS[i]}" || umount -l "${MOUNTS[i]}"
    fi
  done
  for i in "${MOUNTS[@]}"; do [[ $i == "$root"/* ]] || keep+=("$i"); done
  MOUNTS=("${keep[@]+"${keep[@]}"}")
  mounted_under "$root" && die "mounts left under $root"
  return 0
}

in_chroot() { # in_chroot ROOT CMD... with a clean environment
  local root=$1
  shift
  chroot "$root" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    DEBCONF_NONINTERACTIVE_SEEN=true "$@"
}

apt_install() { # apt_install ROOT PKG... (retries once after apt-get update: cached package lists may be stale)
  local root=$1
  shift
  in_chroot "$root" apt-get install -y -q "$@" >>"$LOG" 2>&1 && return 0
  say "apt-get install failed; refreshing package lists and retrying"
  in_chroot "$root" apt-get update -q >>"$LOG" 2>&1
  in_chroot "$root" apt-get install -y -q "$@" >>"$LOG" 2>&1
}

# ---------------------------------------------------------------------------------------------------------------
build_base() {
  if [[ -f $BASE/.dindcheck-base && $(<"$BASE/.dindcheck-base") == "$BASE_SPEC" ]]; then
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
  local t=$SECONDS tmp=$ROOTFS/base.tmp
  say "debootstrap $SUITE minbase base rootfs (about 35 s; output in $LOG)..."
  safe_rm "$tmp"
  safe_rm "$BASE"
  mkdir -p "$ROOTFS" "$APT_ARCHIVES"
  WORKDIRS+=("$tmp")
  debootstrap --variant=minbase --cache-dir="$APT_ARCHIVES" "$SUITE" "$tmp" "$MIRROR" >>"$LOG" 2>&1
  # apt: sources incl. updates and security; no recommends; no docs/man/locales (as Debian's slim images).
  rm -f "$tmp/etc/apt/sources.list"
  cat >"$tmp/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$tmp/etc/apt/apt.conf.d/90dindcheck" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::Retries "3";
EOF
  cat >"$tmp/etc/dpkg/dpkg.cfg.d/90dindcheck-excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  echo force-unsafe-io >"$tmp/etc/dpkg/dpkg.cfg.d/90dindcheck-unsafe-io" # build speed; removed from images
  # No service may start inside a build chroot.
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
  chmod 0755 "$tmp/usr/sbin/policy-rc.d"
  chroot_enter "$tmp"
  in_chroot "$tmp" apt-get update -q >>"$LOG" 2>&1
  in_chroot "$tmp" apt-get dist-upgrade -y -q >>"$LOG" 2>&1
  chroot_leave "$tmp"
  find "$tmp/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$tmp/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$tmp/usr/share/man"/* "$tmp/usr/share/info"/* "$tmp/usr/share/locale"/*
  echo "$BASE_SPEC" >"$tmp/.dindcheck-base"
  mv "$tmp" "$BASE"
  untrack "$tmp"
  say "base rootfs ready ($((SECONDS - t)) s)"
}

# ---------------------------------------------------------------------------------------------------------------
# Per-image customization, run on a copy of the base after its packages are installed. $1 = rootfs.

custom_tools() { :; }

custom_dind() { # Docker 29: the built engine (static binaries) where docker:dind has them, then the common setup
  local root=$1
  install -m 0755 "$DOCKER_BIN/dockerd" "$DOCKER_BIN/docker-proxy" "$DOCKER_BIN/docker" "$root/usr/local/bin/"
  mkdir -p "$root/usr/local/libexec/docker/cli-plugins"
  install -m 0755 "$DOCKER_BIN/docker-buildx" "$root/usr/local/libexec/docker/cli-plugins/docker-buildx"
  dind_setup "$root"
}

custom_dind_legacy() { dind_setup "$1"; }

dind_setup() { # entrypoint, iptables-legacy PATH override, docker-init, /certs: the same in both dind variants
  local root=$1 t
  install -m 0755 "$SRC/dind/dockerd-entrypoint.sh" "$root/usr/local/bin/dockerd-entrypoint.sh"
  install -m 0755 "$SRC/dind/dind" "$root/usr/local/bin/dind"
  # PATH override dir the entrypoint prepends for the iptables-legacy fallback (as docker:dind does).
  mkdir -p "$root/usr/local/sbin/.iptables-legacy"
  for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf "/usr/sbin/${t/tables/tables-legacy}" "$root/usr/local/sbin/.iptables-legacy/$t"
  done
  # docker-init (tini): for reaping when dockerd is PID 1, and what `docker run --init` runs.
  if [[ ! -e $root/usr/local/bin/docker-init ]]; then
    for t in usr/bin/tini-static usr/bin/tini usr/sbin/docker-init usr/libexec/docker/docker-init; do
      if [[ -x $root/$t ]]; then
        ln -s "/$t" "$root/usr/local/bin/docker-init"
        break
      fi
    done
  fi
  mkdir -p "$root/certs/client" "$root/var/lib/docker"
  chmod 1777 "$root/certs" "$root/certs/client"
}

custom_buildkit() {
  local root=$1
  install -m 0755 "$BIN/buildkitd" "$BIN/buildctl" "$root/usr/bin/"
  if ! in_chroot "$root" getent passwd user >/dev/null; then
    in_chroot "$root" groupadd -g 1000 user
    in_chroot "$root" useradd -u 1000 -g 1000 -m -d /home/user -s /bin/sh user
  fi
  echo "user:100000:65536" >"$root/etc/subuid"
  echo "user:100000:65536" >"$root/etc/subgid"
  mkdir -p "$root/run/user/1000" "$root/home/user/.local/tmp" "$root/home/user/.local/share/buildkit"
  chmod 0700 "$root/run/user/1000"
  chown -R 1000:1000 "$root/run/user/1000" "$root/home/user"
  # newuidmap/newgidmap: file capabilities instead of Debian's setuid root. Bookworm's shadow (4.13) run setuid
  # root opens /proc/PID/uid_map with euid 0, and the kernel then wants CAP_SYS_ADMIN over the new user namespace,
  # which a container with the default capability set lacks ("newuidmap: write to uid_map failed: Operation not
  # permitted"; verified with ctr). With file caps the euid stays 1000, the namespace owner, as with the newer
  # setuid shadow in upstream's Alpine image. CAP_SETFCAP: kernels >= 5.12 require it to map uid 0.
  chmod 0755 "$root/usr/bin/newuidmap" "$root/usr/bin/newgidmap"
  in_chroot "$root" setcap cap_setuid,cap_setfcap=ep /usr/bin/newuidmap
  in_chroot "$root" setcap cap_setgid=ep /usr/bin/newgidmap
  [[ $(in_chroot "$root" getcap /usr/bin/newuidmap) == *cap_setuid* ]] || die "setcap on newuidmap did not stick"
}

custom_dindcheck() {
  # The same image the Containerfile describes for users (python slim + the package, the suite inside it), assembled
  # from Debian packages and the wheel built from this checkout, because no base image can be pulled here. The image
  # runs the installed `dindcheck` command: nothing of the checkout is copied beside the wheel.
  local root=$1 wheels wheel
  wheels=$(mktemp -d)
  WORKDIRS+=("$wheels")
  # The host's pip fetches the wheels (it is set up for the package registry; the chroot is not), the image's pip
  # installs them offline. Debian's python3 is 3.11 like the host's, so the wheels' tags fit.
  python3 -m pip wheel --quiet --wheel-dir "$wheels" "$REPO" >>"$LOG" 2>&1
  wheel=$(cd "$wheels" && ls -- dindcheck-*.whl)
  [[ -n $wheel ]] || die "dindcheck: no wheel built (log: $LOG)"
  mkdir -p "$root/tmp/wheels"
  cp "$wheels"/*.whl "$root/tmp/wheels/"
  in_chroot "$root" python3 -m venv /opt/dindcheck >>"$LOG" 2>&1
  in_chroot "$root" /opt/dindcheck/bin/pip install --quiet --no-cache-dir --no-index --find-links /tmp/wheels \
    "/tmp/wheels/$wheel" >>"$LOG" 2>&1
  rm -rf "$root/tmp/wheels" "$wheels"
  untrack "$wheels"
  if ! in_chroot "$root" getent passwd dindcheck >/dev/null; then
    in_chroot "$root" useradd -u 1000 -U -m -d /work -s /bin/sh dindcheck
  fi
}

custom_kaniko() { :; }

kaniko_scratch() { # kaniko_scratch ROOT: replace the Debian tree by upstream's FROM-scratch executor layout
  # Kaniko unpacks the FROM image over its own container's root and snapshots it, so its image must hold nothing
  # outside /kaniko (an ignored path) but what upstream's kaniko-executor target has: the executor, the CA bundle,
  # /kaniko/.docker (DOCKER_CONFIG), /etc/nsswitch.conf, the /workspace workdir. No credential helpers (gcr, ecr,
  # acr): the testbed has no cloud registries.
  local root=$1 full=$1.full
  WORKDIRS+=("$full")
  mv "$root" "$full"
  mkdir -p "$root/kaniko/ssl/certs" "$root/kaniko/.docker" "$root/etc" "$root/workspace"
  chmod 0777 "$root/kaniko" # as upstream: non-root runs write there
  install -m 0755 "$KANIKO_BIN/executor" "$root/kaniko/executor"
  install -m 0644 "$KANIKO_BIN/nsswitch.conf" "$root/etc/nsswitch.conf"
  install -m 0644 "$full/etc/ssl/certs/ca-certificates.crt" "$root/kaniko/ssl/certs/ca-certificates.crt"
  safe_rm "$full"
  untrack "$full"
}

# The CNB builder, laid out as `pack builder create` lays it out: the build image with the lifecycle in
# /cnb/lifecycle, the buildpack in /cnb/buildpacks/<id with / as _>/<version>, /cnb/order.toml, the run image in
# /cnb/run.toml (platform API >= 0.12) and /cnb/stack.toml (older), user cnb 1000:1000 named by CNB_USER_ID and
# CNB_GROUP_ID (image_config). builder-run is the run image: the same Debian base and user.
CNB_UID=1000
CNB_BUILDPACK_ID=dindcheck/procfile
CNB_BUILDPACK_VERSION=0.1.0
LIFECYCLE_VERSION=$(awk '$1 == "require" && $2 == "github.com/buildpacks/lifecycle" { print substr($3, 2) }' \
  "$LIB/../go/lifecycle/go.mod")

cnb_user() { # cnb_user ROOT: the CNB user and group 1000:1000, home /home/cnb (the lifecycle looks the uid up)
  in_chroot "$1" getent passwd cnb >/dev/null && return 0
  in_chroot "$1" groupadd -g "$CNB_UID" cnb
  in_chroot "$1" useradd -u "$CNB_UID" -g "$CNB_UID" -m -d /home/cnb -s /bin/bash cnb
}

custom_builder_run() { cnb_user "$1"; }

custom_builder() {
  local root=$1 run_ref bp
  run_ref=$(<"$IMAGES/builder-run.ref")
  cnb_user "$root"
  mkdir -p "$root/cnb/lifecycle"
  cp -a "$LIFECYCLE_BIN"/. "$root/cnb/lifecycle/"
  rm -f "$root"/cnb/lifecycle/.lifecycle-*
  bp="$root/cnb/buildpacks/${CNB_BUILDPACK_ID//\//_}/$CNB_BUILDPACK_VERSION"
  mkdir -p "$bp/bin"
  install -m 0644 "$SRC/builder/buildpack.toml" "$bp/buildpack.toml"
  install -m 0755 "$SRC/builder/detect" "$SRC/builder/build" "$bp/bin/"
  printf '[[order]]\n  [[order.group]]\n    id = "%s"\n    version = "%s"\n' "$CNB_BUILDPACK_ID" \
    "$CNB_BUILDPACK_VERSION" >"$root/cnb/order.toml"
  printf '[[images]]\n  image = "%s"\n' "$run_ref" >"$root/cnb/run.toml"
  printf '[run-image]\n  image = "%s"\n' "$run_ref" >"$root/cnb/stack.toml"
  mkdir -p "$root/layers" "$root/workspace" "$root/platform"
  chown "$CNB_UID:$CNB_UID" "$root/layers" "$root/workspace"
}

cnb_builder_labels() { # cnb_builder_labels RUN_REF: the labels `pack builder create` writes for platforms to read
  local apis='"buildpack":{"supported":["0.7","0.8","0.9","0.10","0.11"]},"platform":{"supported":["0.7","0.8","0.9","0.10","0.11","0.12","0.13","0.14"]}'
  printf 'io.buildpacks.builder.metadata={"description":"dindcheck testbed builder","buildpacks":[{"id":"%s","version":"%s"}],"stack":{"runImage":{"image":"%s"}},"lifecycle":{"version":"%s","apis":{%s}},"createdBy":{"name":"dindcheck testbed images.sh"}}\n' \
    "$CNB_BUILDPACK_ID" "$CNB_BUILDPACK_VERSION" "$1" "$LIFECYCLE_VERSION" "$apis"
  printf 'io.buildpacks.buildpack.order=[{"group":[{"id":"%s","version":"%s"}]}]\n' "$CNB_BUILDPACK_ID" \
    "$CNB_BUILDPACK_VERSION"
}

custom_registry() {
  local root=$1
  mkdir -p "$root/etc/docker/registry" "$root/var/lib/registry"
  cat >"$root/etc/docker/registry/config.yml" <<'EOF'
version: 0.1
log:
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
}

# Image config per image, as oci_image.py flags in the global array CFG.
image_config() {
  local path=PATH=$CHROOT_PATH
  case $1 in
  pause) CFG=(--entrypoint '["/pause"]') ;;
  tools) CFG=(--env "$path" --cmd '["sleep","infinity"]') ;;
  dind | dind-legacy)
    # As docker:dind: TLS on by default (pods set DOCKER_TLS_CERTDIR="" for socket-only), data volume, 2375/2376.
    CFG=(--env "$path" --env DOCKER_TLS_CERTDIR=/certs --entrypoint '["dockerd-entrypoint.sh"]'
      --volume /var/lib/docker --expose 2375/tcp --expose 2376/tcp)
    # Debian's dockerd 20.10 would see AppArmor through securityfs (no container=docker gate) and then fail every
    # docker run for want of apparmor_parser; docker:20.10-dind's dockerd applied no profile: the dind script skips
    # the mount for it (testbed/images/README.md, AppArmor).
    if [[ $1 == dind-legacy ]]; then CFG+=(--env DIND_SECURITYFS=skip); fi
    ;;
  buildkit)
    # As moby/buildkit:rootless (numeric USER so runAsNonRoot accepts it).
    CFG=(--env "$path" --env USER=user --env HOME=/home/user --env XDG_RUNTIME_DIR=/run/user/1000
      --env TMPDIR=/home/user/.local/tmp --env BUILDKIT_HOST=unix:///run/user/1000/buildkit/buildkitd.sock
      --user 1000:1000 --entrypoint '["rootlesskit","buildkitd"]' --volume /home/user/.local/share/buildkit)
    ;;
  registry)
    CFG=(--env "$path" --entrypoint '["docker-registry","serve","/etc/docker/registry/config.yml"]'
      --volume /var/lib/registry --expose 5000/tcp)
    ;;
  dindcheck)
    CFG=(--env "PATH=/opt/dindcheck/bin:$CHROOT_PATH" --user 1000:1000 --workdir /work
      --entrypoint '["dindcheck"]')
    ;;
  kaniko)
    # As upstream's kaniko-executor target (deploy/Dockerfile), without DOCKER_CREDENTIAL_GCR_CONFIG (no helpers).
    CFG=(--env HOME=/root --env USER=root --env PATH=/usr/local/bin:/kaniko --env SSL_CERT_DIR=/kaniko/ssl/certs
      --env DOCKER_CONFIG=/kaniko/.docker/ --workdir /workspace --entrypoint '["/kaniko/executor"]')
    ;;
  builder-run)
    CFG=(--env "$path" --env "CNB_USER_ID=$CNB_UID" --env "CNB_GROUP_ID=$CNB_UID" --user "$CNB_UID:$CNB_UID"
      --label io.buildpacks.base.distro.name=debian --label io.buildpacks.base.distro.version=12)
    ;;
  builder)
    CFG=(--env "$path" --env "CNB_USER_ID=$CNB_UID" --env "CNB_GROUP_ID=$CNB_UID" --user "$CNB_UID:$CNB_UID"
      --workdir /layers)
    local label
    while IFS= read -r label; do CFG+=(--label "$label"); done < <(cnb_builder_labels "$(<"$IMAGES/builder-run.ref")")
    ;;
  esac
}

# ---------------------------------------------------------------------------------------------------------------
input_hash() { # hash of everything that decides image $1's content
  local name=$1
  {
    echo "name=$name base=$BASE_SPEC packages=${PACKAGES[$name]}"
    sha256sum "${BASH_SOURCE[0]}" "$LIB/oci_image.py"
    case $name in
    pause) sha256sum "$SRC/pause.c" ;;
    dind) sha256sum "$SRC/dind/dockerd-entrypoint.sh" "$SRC/dind/dind" "$DOCKER_BIN"/{dockerd,docker-proxy,docker,docker-buildx} ;;
    dind-legacy) sha256sum "$SRC/dind/dockerd-entrypoint.sh" "$SRC/dind/dind" ;;
    kaniko) sha256sum "$KANIKO_BIN/executor" "$KANIKO_BIN/nsswitch.conf" ;;
    builder)
      echo "run=$(<"$IMAGES/builder-run.ref")"
      sha256sum "$LIFECYCLE_BIN/lifecycle" "$LIFECYCLE_BIN/launcher" "$SRC/builder"/{buildpack.toml,detect,build}
      ;;
    buildkit) sha256sum "$BIN/buildkitd" "$BIN/buildctl" ;;
    dindcheck) (cd "$REPO" && find "${DINDCHECK_SOURCES[@]}" -type f ! -path '*__pycache__*' -print0 | sort -z |
      xargs -0 sha256sum) ;;
    esac
  } | sed 's|  /.*/|  |' | sha256sum | cut -c1-64
}

ref_of() { # ref_of NAME HASH
  echo "$REGISTRY/dindcheck/$1:${2:0:12}"
}

clean_rootfs() { # shrink and de-host a finished rootfs before packing
  local root=$1
  in_chroot "$root" apt-get clean >>"$LOG" 2>&1
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
    "$root"/var/lib/dpkg/*-old "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache \
    "$root"/etc/dpkg/dpkg.cfg.d/90dindcheck-unsafe-io "$root"/.dindcheck-base "$root"/var/cache/ldconfig/aux-cache
  # The runtime provides these; a build host's copies must not leak into images.
  rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
  : >"$root/etc/machine-id"
  find "$root/dev" -mindepth 1 -delete # runtimes populate /dev
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
}

build_image() { # build_image NAME HASH
  local name=$1 hash=$2 t ref digest work
  work=$ROOTFS/$name.work
  ref=$(ref_of "$name" "$hash")
  [[ $name == pause ]] || build_base
  t=$SECONDS
  safe_rm "$work"
  WORKDIRS+=("$work")
  if [[ $name == pause ]]; then
    command -v gcc >/dev/null || die "gcc missing (apt-get install gcc libc6-dev)"
    say "pause: compiling static pause binary..."
    mkdir -p "$work"
    gcc -static -Os -s -Wall -Wextra -o "$work/pause" "$SRC/pause.c"
  else
    say "$name: copying base rootfs, installing: ${PACKAGES[$name]:-nothing} (about ${ESTIMATE[$name]})..."
    cp -a "$BASE" "$work"
    if [[ -n ${PACKAGES[$name]} ]]; then
      chroot_enter "$work"
      # shellcheck disable=SC2086 # word splitting of the package list is intended
      apt_install "$work" ${PACKAGES[$name]}
      "custom_${name//-/_}" "$work"
      chroot_leave "$work"
    else
      "custom_${name//-/_}" "$work"
    fi
    clean_rootfs "$work"
    if [[ $name == kaniko ]]; then kaniko_scratch "$work"; fi
  fi
  say "$name: packing OCI archive..."
  local CFG=()
  image_config "$name"
  digest=$(python3 "$LIB/oci_image.py" --rootfs "$work" --ref "$ref" --out "$IMAGES/$name.tar" "${CFG[@]}")
  echo "$ref" >"$IMAGES/$name.ref"
  echo "$digest" >"$IMAGES/$name.digest"
  echo "$hash" >"$IMAGES/$name.inputs"
  safe_rm "$work"
  untrack "$work"
  say "$name: built $ref ($(du -h "$IMAGES/$name.tar" | cut -f1), $((SECONDS - t)) s)"
}

declare -A ESTIMATE=([tools]="5 s" [dind]="25 s" [dind-legacy]="25 s" [buildkit]="15 s" [registry]="10 s" [dindcheck]="40 s" [kaniko]="10 s" [builder-run]="10 s" [builder]="12 s")

print_refs() {
  local name var
  for name in "${NAMES[@]}"; do
    [[ -f $IMAGES/$name.ref ]] || die "$name not built (run: images.sh build)"
    var=TESTBED_IMAGE_${name^^}
    var=${var//-/_}
    echo "$var=$(<"$IMAGES/$name.ref")"
  done
}

cmd_build() {
  mkdir -p "$IMAGES" "$ROOTFS" "$APT_ARCHIVES" "$BIN"
  exec 9>"$IMAGES/.lock"
  flock -w 1800 9 || die "another images.sh build holds $IMAGES/.lock"
  : >"$LOG"
  BUILDING=1
  "$LIB/build-buildkit.sh" "$BIN" >&2
  "$LIB/build-docker.sh" "$BIN" >&2
  "$LIB/build-kaniko.sh" "$BIN" >&2
  "$LIB/build-lifecycle.sh" "$BIN" >&2
  local name hash
  for name in "${NAMES[@]}"; do
    hash=$(input_hash "$name")
    if [[ -f $IMAGES/$name.tar && -f $IMAGES/$name.inputs && $(<"$IMAGES/$name.inputs") == "$hash" ]]; then
      say "$name: up to date ($(<"$IMAGES/$name.ref"))"
      continue
    fi
    build_image "$name" "$hash"
  done
  say "all images ready ($((SECONDS - T0)) s)"
  print_refs
}

ctr_() { ctr --address "$SOCKET" -n k8s.io "$@"; }

image_digest_in_containerd() { # prints the digest containerd has for ref $1 (empty when absent)
  ctr_ images ls 2>/dev/null | awk -v r="$1" 'NR > 1 && $1 == r { print $3 }'
}

cmd_import() {
  local name ref want have
  for name in "${NAMES[@]}"; do
    [[ -f $IMAGES/$name.tar ]] || die "$name not built (run: images.sh build)"
    ref=$(<"$IMAGES/$name.ref")
    want=$(<"$IMAGES/$name.digest")
    have=$(image_digest_in_containerd "$ref")
    if [[ $have == "$want" ]]; then
      say "$name: already in containerd ($ref)"
      continue
    fi
    say "$name: importing $ref..."
    ctr_ images import "$IMAGES/$name.tar" >&2
    have=$(image_digest_in_containerd "$ref")
    [[ $have == "$want" ]] || die "$name: import did not produce $ref@$want (containerd has '${have:-nothing}')"
  done
}

registry_digest() { # prints the manifest digest the registry serves for ref $1 (empty when absent/unreachable)
  local ref=$1 host path tag
  host=${ref%%/*}
  path=${ref#*/}
  tag=${path##*:}
  path=${path%:*}
  curl -fsS -m 10 -o /dev/null -D - -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$host/v2/$path/manifests/$tag" 2>/dev/null |
    awk 'tolower($1) == "docker-content-digest:" { sub(/\r$/, "", $2); print $2 }'
}

cmd_push() {
  cmd_import
  local name ref want
  for name in "${NAMES[@]}"; do
    ref=$(<"$IMAGES/$name.ref")
    want=$(<"$IMAGES/$name.digest")
    if [[ $(registry_digest "$ref") == "$want" ]]; then
      say "$name: already in the registry ($ref)"
      continue
    fi
    say "$name: pushing $ref..."
    ctr_ images push --plain-http "$ref" >&2
  done
}

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case ${1:-} in
build) cmd_build ;;
refs) print_refs ;;
import | push)
  SOCKET=${2:?usage: images.sh $1 SOCKET}
  [[ -S $SOCKET ]] || die "$SOCKET is not a socket"
  "cmd_$1"
  ;;
*) usage ;;
esac
