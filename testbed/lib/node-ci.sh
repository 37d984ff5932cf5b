# shellcheck shell=bash
# The second node, `testbed/up --nodes 2`: a dedicated, tainted CI pool node with another runtime and another disk,
# as real clusters run CI. Node dindcheck-ci, IP 10.88.0.2 on dcbr0, its own kubelet and its own containerd 2
# (built from Go modules by build-containerd.sh), each with its own root, state, socket, config, CNI config + IPAM
# range, runc root, cgroup root and kubelet root dir; labelled dindcheck.io/pool=ci and tainted dedicated=ci:NoSchedule.
# Shared with the first node: the bridge, the registry, the control plane, lib/runc-wrapper (so the userns-off
# emulation applies here too), the host's /var/lib/kubelet/device-plugins (hard-coded in the kubelet; unused here).
# ci_node_ensure starts it (after the control plane); ci_node_remove stops it and deletes its Node object.

TB_CI_CONTAINERD_ROOT=$TB_CI_VARLIB/containerd
TB_CI_CONTAINERD_STATE=$TB_CI_RUN/containerd
TB_CI_KUBELET_ROOT=$TB_CI_VARLIB/kubelet
TB_CI_POD_LOGS=$TB_CI_VARLIB/pod-logs
TB_CI_CGROUP_PARENT=dindcheck-testbed-ci
TB_CI_REGISTRY_HOSTS=$TB_CONF/containerd-ci-certs.d
TB_CI_HEALTHZ_PORT=10348 # the first kubelet has 127.0.0.1:10248; 10250 is bound per node IP
TB_CI_TAINT=dedicated=ci:NoSchedule

ctr_ci() { "$TB_CI_BIN/ctr" --address "$TB_CI_SOCK" "$@"; }

# ci_containerd_ensure PAUSE_IMAGE: containerd 2 for the second node. Config version 3 (containerd 2.x's CRI plugins:
# io.containerd.cri.v1.images / io.containerd.cri.v1.runtime, the CRI server io.containerd.grpc.v1.cri; 2.4 migrates
# it to its version 4 at start). Same settings as the first node's (lib/components.sh explains them:
# restrict_oom_score_adj, runc-wrapper, netns under the state dir, no SELinux/AppArmor); the registry as a plain-HTTP
# host in hosts.toml (config_path); NRI off (its default socket is /var/run/nri/nri.sock on the host); CDI spec dirs
# and shim sockets under our state dir; its own shim (runtime_path).
ci_containerd_ensure() {
  local pause=$1 conf=$TB_CONF/containerd-ci.toml
  mkdir -p "$TB_CONF" "$TB_CI_CONTAINERD_ROOT" "$TB_CI_CONTAINERD_STATE" "$TB_CI_REGISTRY_HOSTS/$TB_REGISTRY"
  write_if_changed "$TB_CI_REGISTRY_HOSTS/$TB_REGISTRY/hosts.toml" <<TOML
server = "http://$TB_REGISTRY"

[host."http://$TB_REGISTRY"]
  capabilities = ["pull", "resolve", "push"]
TOML
  write_if_changed "$conf" <<TOML
version = 3
root = "$TB_CI_CONTAINERD_ROOT"
state = "$TB_CI_CONTAINERD_STATE"

[grpc]
  address = "$TB_CI_SOCK"

[ttrpc]
  address = "$TB_CI_SOCK.ttrpc"

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "$TB_CI_CONTAINERD_ROOT/opt"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = "$TB_CI_RUN/s"
  [plugins.'io.containerd.transfer.v1.local']
    config_path = "$TB_CI_REGISTRY_HOSTS"
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$pause"
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "$TB_CI_REGISTRY_HOSTS"
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    enable_selinux = false
    disable_apparmor = true
    restrict_oom_score_adj = true
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    cdi_spec_dirs = ["$TB_CI_RUN/cdi"]
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = "$TB_CI_CNI_CONF_DIR"
      max_conf_num = 1
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        # Its own shim: by name, containerd 2 takes the first containerd-shim-runc-v2 in PATH (Debian's 1.6 one,
        # which cannot start its tasks: "type with url <id>: not found") before the one next to its binary.
        runtime_path = "$TB_CI_BIN/containerd-shim-runc-v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$TB_CI_RUN/runc"
          BinaryName = "$TB_LIB/runc-wrapper"
TOML
  local hash; hash=$(hash_of containerd-ci "$conf" "$TB_CI_REGISTRY_HOSTS/$TB_REGISTRY/hosts.toml" "$TB_CI_BIN/.containerd-"*)
  if daemon_start containerd-ci "$hash" "$TB_CI_BIN/containerd" --config "$conf"; then
    log "containerd-ci: started ($("$TB_CI_BIN/containerd" --version | awk '{print $3}'), socket $TB_CI_SOCK)"
    wait_for "containerd-ci socket" 60 "$TB_LOGS/containerd-ci.log" ctr_ci version
  fi
}

# ci_kubelet_ensure: the second kubelet (lib/components.sh's kubelet_start). Differs from the first in node name and
# IP, healthz port (127.0.0.1:$TB_CI_HEALTHZ_PORT; 10250 is on its own IP), serving and client certs, runtime socket,
# cgroup root, root dir and pod log dir, and it registers with the pool label and the taint.
ci_kubelet_ensure() {
  kubelet_start kubelet-ci "$TB_CI_NODE_NAME" "$TB_CI_NODE_IP" "$TB_CI_HEALTHZ_PORT" "$TB_CI_SOCK" \
    "$TB_CI_CGROUP_PARENT" "$TB_CI_KUBELET_ROOT" "$TB_CI_POD_LOGS" ci \
    $'registerWithTaints:\n- {key: dedicated, value: ci, effect: NoSchedule}\n'
}

# ci_node_ensure PAUSE_IMAGE: starts (or keeps) the second node's containerd and kubelet, with the images imported.
ci_node_ensure() {
  [[ -x $TB_CI_BIN/containerd ]] || die "containerd 2 is not built ($TB_CI_BIN; lib/build-containerd.sh)"
  ci_containerd_ensure "$1"
  images_import "$TB_CI_SOCK" "$TB_CI_BIN" containerd-ci
  ci_kubelet_ensure
}

# nodes_label: the pool labels and the ci node's taint on the Node objects. The kubelets register with them, but a
# kubelet never updates them on a Node that already exists; this makes them right on every up.
nodes_label() {
  kctl label node "$TB_NODE_NAME" "$TB_POOL_LABEL=default" --overwrite >/dev/null
  [[ $NODES == 2 ]] || return 0
  kctl label node "$TB_CI_NODE_NAME" "$TB_POOL_LABEL=ci" --overwrite >/dev/null
  kctl taint node "$TB_CI_NODE_NAME" "$TB_CI_TAINT" --overwrite >/dev/null
}

# ci_node_stop: stops the second node's kubelet and containerd and removes what they left on the host (pod
# containers and shims, mounts, cgroups); its images stay in its containerd root. Needs no API server.
ci_node_stop() {
  daemon_stop kubelet-ci
  ctr_cleanup containerd-ci "$TB_CI_SOCK" "$TB_CI_BIN/ctr"
  daemon_stop containerd-ci
  runc_cleanup "$TB_CI_RUN/runc"
  local pids pid
  pids=$(our_shim_pids "$TB_CI_SOCK")
  if [[ -n $pids ]]; then
    for pid in $pids; do
      log "stopping leftover shim pid $pid (containerd-ci)"
      kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 1
    for pid in $(our_shim_pids "$TB_CI_SOCK"); do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  unmount_under "$TB_CI_KUBELET_ROOT" "$TB_CI_RUN" "$TB_CI_VARLIB"
  cgroups_remove "$TB_CI_CGROUP_PARENT"
  rm -rf "$TB_CI_KUBELET_ROOT" "$TB_CI_POD_LOGS" "$TB_CI_RUN" \
    "$TB_CI_CONTAINERD_ROOT/io.containerd.grpc.v1.cri/sandboxes" \
    "$TB_CI_CONTAINERD_ROOT/io.containerd.grpc.v1.cri/containers"
  if [[ -d /var/log/containers ]]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$TB_CI_POD_LOGS/*" -delete 2>/dev/null || true
  fi
}

# ci_node_remove: `up` without --nodes 2 after a two-node up: its pods deleted through the API (its kubelet tears
# their sandboxes down), the node stopped, its Node object deleted, its address and CNI config removed.
ci_node_remove() {
  local running=0
  daemon_pid kubelet-ci >/dev/null && running=1
  daemon_pid containerd-ci >/dev/null && running=1
  if ((running)); then
    log "stopping node $TB_CI_NODE_NAME (--nodes 1)"
    kctl delete pods -A --field-selector "spec.nodeName=$TB_CI_NODE_NAME" --grace-period=0 --force --wait=false \
      >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)) && [[ -n $(ctr_ci -n k8s.io tasks ls -q 2>/dev/null) ]]; do sleep 1; done
    ci_node_stop
  fi
  if kctl get node "$TB_CI_NODE_NAME" >/dev/null 2>&1; then
    kctl delete pods -A --field-selector "spec.nodeName=$TB_CI_NODE_NAME" --grace-period=0 --force \
      >/dev/null 2>&1 || true
    kctl delete node "$TB_CI_NODE_NAME" >/dev/null
    log "deleted node $TB_CI_NODE_NAME"
  fi
  network_ci_down
}
