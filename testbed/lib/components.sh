# shellcheck shell=bash
# The node's daemons, each a background process with a pid file and a log under $TB_STATE:
# containerd (our own instance), the registry, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet
# and the hostPath provisioner. Each *_ensure function (re)starts its daemon only when its config changed.

TB_CONTAINERD_ROOT=$TB_VARLIB/containerd
TB_CONTAINERD_STATE=$TB_RUN/containerd
TB_ETCD_DATA=$TB_VARLIB/etcd
TB_KUBELET_ROOT=$TB_VARLIB/kubelet
TB_POD_LOGS=$TB_VARLIB/pod-logs
TB_REGISTRY_DATA=$TB_VARLIB/registry
TB_CGROUP_PARENT=dindcheck-testbed
TB_CGROUP_CONTROLLERS=(cpu cpuacct cpuset memory devices freezer blkio pids systemd)

ctr_() { ctr --address "$TB_SOCK" "$@"; }

# ---------------------------------------------------------------------------------------------------- containerd
containerd_ensure() {
  local pause=$1 conf=$TB_CONF/containerd.toml
  mkdir -p "$TB_CONF" "$TB_CONTAINERD_ROOT" "$TB_CONTAINERD_STATE"
  write_if_changed "$conf" <<TOML
version = 2
root = "$TB_CONTAINERD_ROOT"
state = "$TB_CONTAINERD_STATE"

[grpc]
  address = "$TB_SOCK"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$TB_CONTAINERD_ROOT/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$pause"
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    # The kubelet asks for negative oom_score_adj (pause -998, Guaranteed pods -997). Lowering it needs
    # CAP_SYS_RESOURCE, which this VM's capability bounding set lacks (runc then fails with "can't get final child's
    # PID from pipe: EOF"); clamp it to containerd's own score instead.
    restrict_oom_score_adj = true
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$TB_CNI_CONF_DIR"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$TB_RUN/runc"
          BinaryName = "$TB_LIB/runc-wrapper"
    [plugins."io.containerd.grpc.v1.cri".registry]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
        [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$TB_REGISTRY"]
          endpoint = ["http://$TB_REGISTRY"]
TOML
  if daemon_start containerd "$(hash_of containerd "$conf")" /usr/bin/containerd --config "$conf"; then
    log "containerd: started (socket $TB_SOCK)"
    wait_for "containerd socket" 60 "$TB_LOGS/containerd.log" ctr_ version
  fi
}

# ctr_cleanup [DAEMON SOCKET CTR]: kills and deletes every task and container of one of our containerds (all
# namespaces), so the shims exit. Default: the first node's (Debian's ctr on $TB_SOCK).
ctr_cleanup() {
  local daemon=${1:-containerd} sock=${2:-$TB_SOCK} ctr=${3:-ctr}
  daemon_pid "$daemon" >/dev/null && [[ -S $sock ]] || return 0
  local -a c=("$ctr" --address "$sock")
  "${c[@]}" version >/dev/null 2>&1 || return 0
  local ns id
  for ns in $("${c[@]}" namespaces ls -q 2>/dev/null); do
    for id in $("${c[@]}" -n "$ns" tasks ls -q 2>/dev/null); do
      "${c[@]}" -n "$ns" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $("${c[@]}" -n "$ns" tasks ls -q 2>/dev/null); do
      local _
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        "${c[@]}" -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 && break
        sleep 0.5
      done
    done
    for id in $("${c[@]}" -n "$ns" containers ls -q 2>/dev/null); do
      "${c[@]}" -n "$ns" containers delete "$id" >/dev/null 2>&1 || warn "could not delete container $ns/$id"
    done
  done
}

# runc_cleanup [RUNC_ROOT]: force-deletes containers runc still knows under one of our runc roots (the fallback when
# containerd is already gone and cannot delete its tasks). Default: the first node's.
runc_cleanup() {
  local root id
  for root in "${1:-$TB_RUN/runc}"/*/; do
    [[ -d $root ]] || continue
    for id in $(runc --root "$root" list -q 2>/dev/null); do
      log "force-deleting leftover container $id"
      runc --root "$root" delete --force "$id" >/dev/null 2>&1 || warn "runc could not delete container $id"
    done
  done
}

# our_shim_pids [SOCKET]: shims started by one of our containerds (their command line names its socket).
our_shim_pids() {
  local p sock=${1:-$TB_SOCK}
  for p in /proc/[0-9]*; do
    [[ -r $p/cmdline ]] || continue
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep "containerd-shim.* -address $sock " >/dev/null; then
      echo "${p#/proc/}"
    fi
  done
}

# ------------------------------------------------------------------------------------------------------ registry
registry_ensure() {
  local conf=$TB_CONF/registry.yml
  mkdir -p "$TB_REGISTRY_DATA"
  write_if_changed "$conf" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $TB_REGISTRY_DATA
  delete:
    enabled: true
http:
  addr: $TB_REGISTRY
YAML
  if daemon_start registry "$(hash_of registry "$conf")" /usr/bin/docker-registry serve "$conf"; then
    log "registry: started on http://$TB_REGISTRY"
    wait_for "registry" 30 "$TB_LOGS/registry.log" curl -fsS "http://$TB_REGISTRY/v2/"
  fi
}

# unmount_under DIR...: unmounts every mount point below (and at) the given directories, deepest first.
unmount_under() {
  local d m
  for d in "$@"; do
    [[ -e $d ]] || continue
    d=$(readlink -f "$d")
    while read -r m; do
      [[ -n $m ]] || continue
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || warn "could not unmount $m"
    done < <(awk -v d="$d" '{ p=$5; gsub(/\\040/, " ", p); if (p == d || index(p, d "/") == 1) print p }' \
      /proc/self/mountinfo | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-)
  done
}

# ---------------------------------------------------------------------------------------------------------- etcd
etcd_ensure() {
  mkdir -p "$TB_ETCD_DATA"
  chmod 700 "$TB_ETCD_DATA"
  local args=(--name dindcheck --data-dir "$TB_ETCD_DATA"
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380
    --initial-cluster dindcheck=http://127.0.0.1:2380
    --quota-backend-bytes 2147483648 --snapshot-count 10000 --logger zap --log-level warn)
  if daemon_start etcd "$(hash_of "${args[*]}")" /usr/bin/etcd "${args[@]}"; then
    log "etcd: started on 127.0.0.1:2379"
    wait_for "etcd" 60 "$TB_LOGS/etcd.log" curl -fsS http://127.0.0.1:2379/health
  fi
}

# ------------------------------------------------------------------------------------------------ kube-apiserver
# apiserver_ensure ADMISSION_CONFIG_FILE: returns 0 when it (re)started the apiserver, 1 when it was current.
apiserver_ensure() {
  local admission=$1 p=$TB_PKI
  # shellcheck disable=SC2054  # the commas are inside flag values (Node,RBAC)
  local args=(--etcd-servers=http://127.0.0.1:2379
    --bind-address="$TB_NODE_IP" --advertise-address="$TB_NODE_IP" --secure-port=6443
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt"
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt"
    --kubelet-client-key="$p/apiserver-kubelet-client.key"
    --kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key"
    --service-cluster-ip-range=10.96.0.0/16 --authorization-mode=Node,RBAC
    --enable-admission-plugins=NodeRestriction --admission-control-config-file="$admission"
    --allow-privileged=true --profiling=false --v=1)
  daemon_start kube-apiserver "$(hash_of "${args[*]}" "$admission")" "$TB_BIN/kube-apiserver" "${args[@]}" || return 1
  log "kube-apiserver: started on $TB_APISERVER (waiting for /readyz)"
  wait_for "kube-apiserver /readyz" 180 "$TB_LOGS/kube-apiserver.log" kctl get --raw=/readyz
}

controller_manager_ensure() {
  local p=$TB_PKI k=$TB_STATE/controller-manager.kubeconfig
  local args=(--kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k"
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt"
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key"
    --service-cluster-ip-range=10.96.0.0/16 --allocate-node-cidrs=false
    --controllers='*,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' --v=1)
  if daemon_start kube-controller-manager "$(hash_of "${args[*]}" "$k")" "$TB_BIN/kube-controller-manager" "${args[@]}"; then
    log "kube-controller-manager: started"
  fi
}

scheduler_ensure() {
  local k=$TB_STATE/scheduler.kubeconfig
  local args=(--kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k"
    --bind-address=127.0.0.1 --leader-elect=false --v=1)
  if daemon_start kube-scheduler "$(hash_of "${args[*]}" "$k")" "$TB_BIN/kube-scheduler" "${args[@]}"; then
    log "kube-scheduler: started"
  fi
}

# ------------------------------------------------------------------------------------------------------- kubelet
# The kubelet's pods live in the cgroup /dindcheck-testbed (cgroupRoot), the second node's in /dindcheck-testbed-ci;
# created here and removed by testbed/down.
# cgroups_ensure [PARENT]
cgroups_ensure() {
  local c parent=${1:-$TB_CGROUP_PARENT}
  for c in "${TB_CGROUP_CONTROLLERS[@]}"; do
    [[ -d /sys/fs/cgroup/$c ]] || continue
    mkdir -p "/sys/fs/cgroup/$c/$parent"
    if [[ $c == cpuset ]]; then
      local d=/sys/fs/cgroup/cpuset/$parent
      [[ -s $d/cpuset.cpus ]] || cat /sys/fs/cgroup/cpuset/cpuset.cpus >"$d/cpuset.cpus"
      [[ -s $d/cpuset.mems ]] || cat /sys/fs/cgroup/cpuset/cpuset.mems >"$d/cpuset.mems"
    fi
  done
}

# cgroups_remove [PARENT]: removes one of our cgroup trees (deepest first); it must be empty of processes by now.
cgroups_remove() {
  local d parent=${1:-$TB_CGROUP_PARENT}
  # Every hierarchy, including the cgroup2 "unified" one the kubelet also populates on hybrid hosts.
  for d in /sys/fs/cgroup/*/"$parent"; do
    [[ -d $d ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [[ -d $d ]] && warn "cgroup $d is still busy: $(tr '\n' ' ' <"$d/cgroup.procs" 2>/dev/null)"
  done
  return 0
}

kubelet_ensure() {
  kubelet_start kubelet "$TB_NODE_NAME" "$TB_NODE_IP" 10248 "$TB_SOCK" "$TB_CGROUP_PARENT" "$TB_KUBELET_ROOT" \
    "$TB_POD_LOGS" default ""
}

# kubelet_start NAME NODE IP HEALTHZ_PORT RUNTIME_SOCK CGROUP_PARENT ROOT_DIR POD_LOGS POOL EXTRA_YAML: starts (or
# keeps) one kubelet; every node's kubelet is this one configuration, apart in the arguments and EXTRA_YAML (the ci
# node's taint). NAME names its config, its certs (pki.sh: NAME-serving), its kubeconfig, its log and its daemon.
kubelet_start() {
  local name=$1 node=$2 ip=$3 healthz=$4 sock=$5 cgroup_parent=$6 root=$7 pod_logs=$8 pool=$9 extra=${10}
  local conf=$TB_CONF/$name.yaml p=$TB_PKI
  mkdir -p "$root" "$pod_logs"
  write_if_changed "$conf" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $p/ca.crt}
authorization:
  mode: Webhook
tlsCertFile: $p/$name-serving.crt
tlsPrivateKeyFile: $p/$name-serving.key
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_parent
failCgroupV1: false
failSwapOn: false
seccompDefault: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
podLogsDir: $pod_logs
clusterDomain: cluster.local
maxPods: 110
serializeImagePulls: false
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
${extra}evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  nodefs.inodesFree: 2%
  imagefs.available: 2%
YAML
  cgroups_ensure "$cgroup_parent"
  local args=(--config="$conf" --kubeconfig="$TB_STATE/$name.kubeconfig" --root-dir="$root"
    --hostname-override="$node" --node-ip="$ip" --node-labels="$TB_POOL_LABEL=$pool" --v=1)
  if daemon_start "$name" "$(hash_of "${args[*]}" "$conf")" "$TB_BIN/kubelet" "${args[@]}"; then
    log "$name: started (node $node, $ip)"
  fi
}

# node_ready [NODE]
node_ready() {
  [[ $(kctl get node "${1:-$TB_NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# --------------------------------------------------------------------------------------------------- provisioner
provisioner_ensure() {
  local script=$TB_LIB/provisioner.py
  local args=(--kubeconfig "$TB_KUBECONFIG" --log-level INFO)
  if daemon_start provisioner "$(hash_of "${args[*]}" "$script")" "$TB_VENV/bin/python" "$script" "${args[@]}"; then
    log "provisioner: started (hostPath volumes for provisioner dindcheck.testbed/hostpath)"
  fi
}

# venv_ensure: the provisioner's Python environment (official kubernetes client from PyPI).
venv_ensure() {
  if [[ -x $TB_VENV/bin/python ]] && "$TB_VENV/bin/python" -c 'import kubernetes' 2>/dev/null; then return 0; fi
  log "venv: creating $TB_VENV with the kubernetes client (pip, about a minute)"
  mkdir -p "$TB_CACHE"
  run_logged venv /usr/bin/python3 -m venv "$TB_VENV"
  run_logged venv "$TB_VENV/bin/pip" install --quiet 'kubernetes>=29'
}
