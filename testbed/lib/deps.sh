# shellcheck shell=bash
# What `up` installs or builds when it is missing: Debian packages (apt-get), the Kubernetes, BuildKit, Docker 29 and
# Kaniko binaries and, for `--nodes 2`, containerd 2 (Go module proxy, cached in $TB_BIN), and the provisioner's venv.

TB_PACKAGES=(containerd runc etcd-server containernetworking-plugins docker.io docker-registry debootstrap uidmap
  rootlesskit bindfs iptables openssl curl iproute2 ethtool python3-venv util-linux)

deps_ensure() {
  local missing=() p
  for p in "${TB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]} (apt-get update first; a few minutes)"
  run_logged apt env DEBIAN_FRONTEND=noninteractive apt-get update
  run_logged apt env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# run_with_progress NAME WHAT CMD...: runs a long build with its output in $TB_LOGS/NAME.log, echoing its own
# progress lines (those matching $TB_PROGRESS_RE) and a heartbeat every minute.
TB_PROGRESS_RE='^(kubernetes|buildkit|docker|kaniko|containerd|images?|testbed|step|building|==>)'
run_with_progress() {
  local name=$1 what=$2; shift 2
  local logf=$TB_LOGS/$name.log start=$SECONDS
  mkdir -p "$TB_LOGS"
  : >"$logf"
  "$@" >"$logf" 2>&1 &
  local pid=$! shown=0 next=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    local lines; lines=$(wc -l <"$logf")
    if ((lines > shown)); then
      sed -n "$((shown + 1)),${lines}p" "$logf" | grep -E "$TB_PROGRESS_RE" \
        | sed 's/^/testbed:   /' >&2 || true
      shown=$lines
    fi
    if ((SECONDS >= next)); then
      log "$what: still running ($(( (SECONDS - start) / 60 )) min so far; log: $logf)"
      next=$((SECONDS + 60))
    fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$logf" | sed 's/^/testbed:   | /' >&2
    die "$what failed (log: $logf)"
  fi
  sed -n "$((shown + 1)),\$p" "$logf" | grep -E "$TB_PROGRESS_RE" \
    | sed 's/^/testbed:   /' >&2 || true
}

builds_ensure() {
  run_with_progress build-kubernetes "kubernetes build (cold: ~25 min on 2 cores)" \
    "$TB_LIB/build-kubernetes.sh" "$TB_BIN"
  run_with_progress build-buildkit "buildkit build (cold: a few minutes)" "$TB_LIB/build-buildkit.sh" "$TB_BIN"
  run_with_progress build-docker "docker 29 build (cold: about 5 minutes)" "$TB_LIB/build-docker.sh" "$TB_BIN"
  run_with_progress build-kaniko "kaniko build (cold: about 2 minutes)" "$TB_LIB/build-kaniko.sh" "$TB_BIN"
  run_with_progress build-lifecycle "CNB lifecycle build (cold: about 1.5 minutes)" "$TB_LIB/build-lifecycle.sh" "$TB_BIN"
  run_with_progress build-tekton "Tekton CRDs (cold: a module download)" "$TB_LIB/build-tekton.sh" "$TB_BIN"
  if [[ ${NODES:-1} == 2 ]]; then
    run_with_progress build-containerd "containerd 2 build (cold: a few minutes)" "$TB_LIB/build-containerd.sh" "$TB_BIN"
  fi
  venv_ensure
}

# images_ensure: builds the testbed images (cached by images.sh) and reads their refs into TESTBED_IMAGE_* variables.
images_ensure() {
  [[ -x $TB_LIB/images.sh ]] || die "$TB_LIB/images.sh is missing (the image builder); cannot build the images"
  local out=$TB_STATE/images.refs
  # shellcheck disable=SC2016  # $0/$1 are expanded by the inner bash
  TB_PROGRESS_RE='^(images:|buildkit |docker |kaniko |lifecycle |kubernetes )' run_with_progress images-build "image build (cold: several minutes)" \
    bash -c '"$0" build >"$1"' "$TB_LIB/images.sh" "$out"
  local key
  for key in PAUSE DIND DIND_LEGACY BUILDKIT REGISTRY TOOLS DINDCHECK KANIKO BUILDER_RUN BUILDER; do
    local v; v=$(sed -n "s/^TESTBED_IMAGE_$key=//p" "$out" | tail -n1)
    [[ -n $v ]] || die "images.sh build printed no TESTBED_IMAGE_$key line (output: $out, log: $TB_LOGS/images-build.log)"
    printf -v "TESTBED_IMAGE_$key" '%s' "$v"
  done
}

_image_refs() { printf '%s\n' "$TESTBED_IMAGE_PAUSE" "$TESTBED_IMAGE_DIND" "$TESTBED_IMAGE_DIND_LEGACY" \
  "$TESTBED_IMAGE_BUILDKIT" "$TESTBED_IMAGE_REGISTRY" "$TESTBED_IMAGE_TOOLS" "$TESTBED_IMAGE_DINDCHECK" \
  "$TESTBED_IMAGE_KANIKO" "$TESTBED_IMAGE_BUILDER_RUN" "$TESTBED_IMAGE_BUILDER"; }

# images_import [SOCKET CTR_DIR NAME]: imports the images into one of our containerds (k8s.io namespace) unless all
# are there; images.sh runs the ctr found first in CTR_DIR (the second node's containerd 2 gets its own ctr). Default:
# the first node's containerd with Debian's ctr.
images_import() {
  local sock=${1:-$TB_SOCK} ctr_dir=${2:-} name=${3:-containerd}
  local -a ctr=(ctr --address "$sock" -n k8s.io) path=()
  if [[ -n $ctr_dir ]]; then ctr[0]=$ctr_dir/ctr; path=(env "PATH=$ctr_dir:$PATH"); fi
  local have ref absent=0
  have=$("${ctr[@]}" images ls -q 2>/dev/null || true)
  for ref in $(_image_refs); do grep -qxF "$ref" <<<"$have" || absent=1; done
  ((absent)) || return 0
  log "images: importing into $name (k8s.io)"
  TB_PROGRESS_RE='^(images:|buildkit |docker |kaniko |lifecycle |kubernetes )' run_with_progress "images-import-$name" \
    "image import ($name)" "${path[@]}" "$TB_LIB/images.sh" import "$sock"
  have=$("${ctr[@]}" images ls -q 2>/dev/null || true)
  for ref in $(_image_refs); do
    grep -qxF "$ref" <<<"$have" || die "image $ref is not in $name after images.sh import (was the image cache rebuilt meanwhile? re-run testbed/up; log: $TB_LOGS/images-import-$name.log)"
  done
}

# images_push: pushes the images to the testbed registry unless all manifests are there.
images_push() {
  local ref absent=0 repo tag
  for ref in $(_image_refs); do
    repo=${ref#*/}; tag=${repo##*:}; repo=${repo%:*}
    curl -fsS -o /dev/null -I \
      -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
      "http://$TB_REGISTRY/v2/$repo/manifests/$tag" 2>/dev/null || absent=1
  done
  ((absent)) || return 0
  log "images: pushing to $TB_REGISTRY"
  TB_PROGRESS_RE='^(images:|buildkit |docker |kaniko |lifecycle |kubernetes )' run_with_progress images-push "image push" "$TB_LIB/images.sh" push "$TB_SOCK"
}
