# shellcheck shell=bash
# Host settings the testbed changes, recorded before the first change so testbed/down can put them back:
# sysctls ($TB_STATE/host/sysctl: "name value" lines) and host paths that the components create outside our own
# directories ($TB_STATE/host/paths: the paths that did NOT exist before the first `up`).

TB_HOST=$TB_STATE/host

# Host paths that containerd, the CNI plugins and the kubelet create outside the directories we configure.
# (/var/lib/kubelet: the kubelet's device-plugin socket dir is hard-coded there whatever --root-dir says;
# /usr/libexec/kubernetes: its FlexVolume plugin dir, created when missing.)
TB_FOREIGN_PATHS=(/var/lib/cni /var/log/containers /var/lib/kubelet /run/containerd /var/run/netns /run/netns /opt/cni
  /etc/cni /usr/libexec/kubernetes /var/run/nri /etc/cdi /var/run/cdi)

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
  # Top-level cgroups: a dockerd in a privileged pod on cgroup v1 sees the host hierarchies and creates /docker in
  # each of them (as DinD does on real cgroup v1 nodes); down removes the empty ones that were not there before.
  [[ -f $TB_HOST/cgroups ]] || _top_cgroups >"$TB_HOST/cgroups"
  local s
  for s in "${TB_TRACKED_SYSCTLS[@]}"; do sysctl_record "$s"; done
}

_top_cgroups() { find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d 2>/dev/null | sort; }

# host_cgroups_cleanup: removes (deepest first) top-level cgroups that appeared since the baseline; a cgroup that
# still has processes cannot be removed and is reported.
host_cgroups_cleanup() {
  local f=$TB_HOST/cgroups d
  [[ -f $f ]] || return 0
  for d in $(_top_cgroups | comm -13 "$f" -); do
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    if [[ -d $d ]]; then
      warn "cgroup $d is still in use: $(tr '\n' ' ' <"$d/cgroup.procs" 2>/dev/null)"
    else
      log "removed cgroup $d"
    fi
  done
  rm -f "$f"
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
  local old; old=$(sysctl -n "$1")
  sysctl -q -w "$1=$2" >/dev/null || return 1
  log "sysctl $1=$2 (was $old)"
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
  while read -r name _; do sysctl_restore "$name"; done < <(awk '{print $1}' "$f")
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
    if mountpoint -q "$p" 2>/dev/null || findmnt -rn -o TARGET | grep "^$p/" >/dev/null; then
      warn "$p still has mounts; leaving it"
      continue
    fi
    log "removing $p (created by the testbed's components)"
    rm -rf "$p"
  done <"$f"
  rm -f "$f"
}
