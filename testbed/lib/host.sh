# shellcheck shell=bash
# Host settings the testbed changes, recorded before the first change so testbed/down can put them back:
# sysctls ($TB_STATE/host/sysctl: "name value" lines) and host paths that the components create outside our own
# directories ($TB_STATE/host/paths: the paths that did NOT exist before the first `up`).

TB_HOST=$TB_STATE/host

# Host paths that containerd, the CNI plugins and the kubelet create outside the directories we configure.
TB_FOREIGN_PATHS=(/var/lib/cni /var/log/containers /run/containerd /var/run/netns /run/netns /opt/cni /etc/cni)

# Sysctls the kubelet (protectKernelDefaults: false) and the CNI bridge plugin (isGateway: true) set.
TB_TRACKED_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.ip_forward)

host_record_baseline() {
  mkdir -p "$TB_HOST"
  if [[ ! -f $TB_HOST/paths ]]; then
    local p
    : >"$TB_HOST/paths.tmp"
    for p in "${TB_FOREIGN_PATHS[@]}"; do
      [[ -e $p ]] || echo "$p" >>"$TB_HOST/paths.tmp"
    done
    mv "$TB_HOST/paths.tmp" "$TB_HOST/paths"
  fi
  local s
  for s in "${TB_TRACKED_SYSCTLS[@]}"; do sysctl_record "$s"; done
}

# sysctl_record NAME: remembers the current value once (the value before the testbed touched it).
sysctl_record() {
  local name=$1 f=$TB_HOST/sysctl
  mkdir -p "$TB_HOST"
  touch "$f"
  grep -q "^$name " "$f" && return 0
  echo "$name $(sysctl -n "$name")" >>"$f"
}

# sysctl_set NAME VALUE: records the old value, then sets it.
sysctl_set() {
  sysctl_record "$1"
  [[ $(sysctl -n "$1") == "$2" ]] && return 0
  log "sysctl $1=$2 (was $(sysctl -n "$1"))"
  sysctl -q -w "$1=$2" >/dev/null
}

# sysctl_restore NAME: puts the recorded value back and forgets it.
sysctl_restore() {
  local name=$1 f=$TB_HOST/sysctl old
  [[ -f $f ]] || return 0
  old=$(awk -v n="$name" '$1==n {sub(/^[^ ]+ /, ""); print; exit}' "$f")
  if grep -q "^$name " "$f"; then
    if [[ $(sysctl -n "$name") != "$old" ]]; then
      log "sysctl $name=$old (restored)"
      sysctl -q -w "$name=$old" >/dev/null || warn "could not restore sysctl $name=$old"
    fi
    grep -v "^$name " "$f" >"$f.tmp" || true
    mv "$f.tmp" "$f"
  fi
}

sysctl_restore_all() {
  local f=$TB_HOST/sysctl name
  [[ -f $f ]] || return 0
  for name in $(awk '{print $1}' "$f"); do sysctl_restore "$name"; done
  rm -f "$f"
}

# host_paths_cleanup: removes what our components left in host paths that did not exist before the testbed.
host_paths_cleanup() {
  local f=$TB_HOST/paths p
  [[ -f $f ]] || return 0
  while read -r p; do
    [[ -e $p ]] || continue
    case $p in
      /run/containerd)
        # Shim sockets of our containerd live in /run/containerd/s; never touch a running system containerd.
        if [[ -S /run/containerd/containerd.sock ]]; then
          warn "/run/containerd now holds a system containerd socket; leaving it"
          continue
        fi ;;
    esac
    if mountpoint -q "$p" 2>/dev/null || findmnt -rn -o TARGET | grep -q "^$p/"; then
      warn "$p still has mounts; leaving it"
      continue
    fi
    log "removing $p (created by the testbed's components)"
    rm -rf "$p"
  done <"$f"
  rm -f "$f"
}
