# shellcheck shell=bash
# shellcheck disable=SC2153 # TB_VM_IP, TB_VM_NODE_NAME: lib/common.sh
# The vm node, `testbed/up --node-vm`: node dindcheck-vm, whose containerd and kubelet run as systemd units inside a
# QEMU guest (software emulation, TCG: /dev/kvm here is PVM, under which stock kernels die) on Debian's own kernel,
# with cgroup v2 (systemd cgroup driver) and AppArmor enforcing containerd's default pod profile. The guest is one
# more testbed host: a tap device ($TB_VM_TAP) on the bridge dcbr0, IP $TB_VM_IP; inside, eth0 is enslaved to br0,
# which holds the IP and which its pods join (CNI bridge, host-local IPAM 10.88.0.16-10.88.0.254, default route via
# $TB_NODE_IP like the other nodes' pods), so its pods reach the registry and the API server, and the API server
# reaches its kubelet (10250), on the testbed's one L2 segment. Labelled dindcheck.io/pool=vm and tainted
# dedicated=vm:NoSchedule (a slow pool nothing lands on by accident, as the ci pool); its image store is seeded with
# the testbed's images (lib/build-vm-seed.sh), and an image not in it is pulled from the testbed registry.
# With --vm-lsm selinux the guest runs SELinux enforcing instead (Debian's reference policy with its container modules,
# containerd's enable_selinux: pods run as container_t, privileged ones as spc_t).
# The guest image (lib/build-vm.sh) is cached per kernel and LSM (--vm-kernel, --vm-lsm): $TB_CACHE/vm for 6.1,
# $TB_CACHE/vm-6.12 for 6.12, $TB_CACHE/vm-6.12-selinux for 6.12 with SELinux, each with its own .inputs and
# image-store seed (down removes only state, never these); every (re)start boots
# fresh copy-on-write overlays of the image and the seed, plus a config disk (certificates, kubeconfig,
# containerd/kubelet configs) made here.

TB_VM_DIR=$TB_STATE/vm # overlay, config disk (removed by down)
TB_VM_IMAGE=$TB_CACHE/vm # set per --vm-kernel and --vm-lsm by vm_image_select
TB_VM_TAP=dcvm0
TB_VM_TAINT=dedicated=vm:NoSchedule
TB_VM_CONSOLE=$TB_LOGS/vm-console.log
TB_VM_MEM_MB=4096

# vm_deps_ensure: QEMU (system emulator and qemu-img) from Debian, only for --node-vm; with --vm-lsm selinux also
# setfiles (policycoreutils), which labels the image-store seed offline (lib/build-vm-seed.sh).
vm_deps_ensure() {
  local missing=() p packages=(qemu-system-x86 qemu-utils)
  if [[ ${VM_LSM:-apparmor} == selinux ]]; then packages+=(policycoreutils); fi
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages for --node-vm: ${missing[*]}"
  run_logged apt env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# The images the vm node's store is seeded with (lib/build-vm-seed.sh): every probe image and the sandbox image; not
# the dindcheck image, which changes with every change of the package and only in-cluster runs on the default node use.
TB_VM_SEED_IMAGES=(pause tools dind dind-legacy buildkit registry kaniko builder-run builder)

# vm_image_select: TB_VM_IMAGE for the profile's --vm-kernel and --vm-lsm (6.1 with AppArmor keeps the original
# directory, so its cache stays; another LSM than AppArmor is a suffix).
vm_image_select() {
  if [[ ${VM_KERNEL:-6.1} == 6.1 ]]; then TB_VM_IMAGE=$TB_CACHE/vm; else TB_VM_IMAGE=$TB_CACHE/vm-$VM_KERNEL; fi
  if [[ ${VM_LSM:-apparmor} != apparmor ]]; then TB_VM_IMAGE+=-$VM_LSM; fi
}

# vm_image_ensure: the guest image, built by lib/build-vm.sh unless its inputs are unchanged, and its image-store seed
# (lib/build-vm-seed.sh), rebuilt when an image's digest changes.
vm_image_ensure() {
  vm_image_select
  TB_PROGRESS_RE='^vm image:' run_with_progress build-vm \
    "guest image build, kernel ${VM_KERNEL:-6.1}, ${VM_LSM:-apparmor} (cold: about 3 minutes)" \
    "$TB_LIB/build-vm.sh" "$TB_VM_IMAGE" "$TB_BIN/kubelet" "${VM_KERNEL:-6.1}" "${VM_LSM:-apparmor}"
  TB_PROGRESS_RE='^vm seed:' run_with_progress build-vm-seed "guest image-store seed (about a minute)" \
    "$TB_LIB/build-vm-seed.sh" "$TB_VM_IMAGE" "$TB_CACHE/images" \
    "${TB_VM_SEED_IMAGES[@]}"
}

# vm_config_write PAUSE_IMAGE: the config disk's directory (mounted read-only at /etc/dindcheck in the guest).
vm_config_write() {
  local pause=$1 d=$TB_VM_DIR/config p=$TB_PKI
  mkdir -p "$d/cni"
  cp "$p/ca.crt" "$p/kubelet-vm-serving.crt" "$p/kubelet-vm-serving.key" "$d/"
  cp "$TB_STATE/kubelet-vm.kubeconfig" "$d/kubelet.kubeconfig"
  chmod 600 "$d/kubelet-vm-serving.key" "$d/kubelet.kubeconfig"
  # containerd 1.6 (Debian's, as the first node): CRI with the systemd cgroup driver and AppArmor on (its default
  # profile cri-containerd.apparmor.d for every unprivileged container), or with --vm-lsm selinux SELinux on instead
  # (every container labelled: container_t with its own MCS categories, spc_t if privileged); the registry as a
  # plain-HTTP mirror.
  local selinux=false apparmor_off=false
  if [[ ${VM_LSM:-apparmor} == selinux ]]; then selinux=true apparmor_off=true; fi
  write_if_changed "$d/containerd.toml" <<TOML
version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$pause"
    enable_selinux = $selinux
    disable_apparmor = $apparmor_off
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/dindcheck/cni"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true
    [plugins."io.containerd.grpc.v1.cri".registry]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
        [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$TB_REGISTRY"]
          endpoint = ["http://$TB_REGISTRY"]
TOML
  local mtu=''
  if [[ -n ${POD_MTU:-} ]]; then mtu=$'\n'"      \"mtu\": $POD_MTU,"; fi
  write_if_changed "$d/cni/10-dindcheck-vm.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "dindcheck-vm",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "br0",$mtu
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.88.0.0/16", "rangeStart": "10.88.0.16", "rangeEnd": "10.88.0.254", "gateway": "$TB_NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0", "gw": "$TB_NODE_IP"}]
      }
    }
  ]
}
JSON
  # The kubelet: lib/components.sh's configuration, but with the systemd cgroup driver on cgroup v2 (no cgroupRoot,
  # failCgroupV1 at its default) and the runtime's default socket.
  write_if_changed "$d/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $TB_VM_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: /etc/dindcheck/ca.crt}
authorization:
  mode: Webhook
tlsCertFile: /etc/dindcheck/kubelet-vm-serving.crt
tlsPrivateKeyFile: /etc/dindcheck/kubelet-vm-serving.key
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: systemd
failSwapOn: false
seccompDefault: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
clusterDomain: cluster.local
maxPods: 110
serializeImagePulls: false
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
runtimeRequestTimeout: 10m
registerWithTaints:
- {key: dedicated, value: vm, effect: NoSchedule}
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  nodefs.inodesFree: 2%
  imagefs.available: 2%
YAML
  write_if_changed "$d/kubelet.env" <<ENV
KUBELET_ARGS="--config=/etc/dindcheck/kubelet.yaml --kubeconfig=/etc/dindcheck/kubelet.kubeconfig --hostname-override=$TB_VM_NODE_NAME --node-ip=$TB_VM_IP --node-labels=$TB_POOL_LABEL=vm --v=1"
ENV
}

# vm_tap_ensure: the guest's tap device on the testbed bridge.
vm_tap_ensure() {
  if ! ip link show "$TB_VM_TAP" >/dev/null 2>&1; then
    log "network: creating tap $TB_VM_TAP on $TB_BRIDGE (node $TB_VM_NODE_NAME, $TB_VM_IP)"
    ip tuntap add dev "$TB_VM_TAP" mode tap
  fi
  ip link set dev "$TB_VM_TAP" master "$TB_BRIDGE" mtu "$TB_BRIDGE_MTU"
  ip link set dev "$TB_VM_TAP" up
}

# vm_node_ensure PAUSE_IMAGE: builds the image if needed and boots (or keeps) the guest; a changed image or config
# reboots it on a fresh overlay.
vm_node_ensure() {
  vm_deps_ensure
  vm_image_ensure
  mkdir -p "$TB_VM_DIR"
  vm_config_write "$1"
  vm_tap_ensure
  local cfg=$TB_VM_DIR/config.img
  # --userns off: the guest's kernel has its own switch, set on its command line (sysctl.* boot parameters), so no
  # process of the guest ever sees user namespaces allowed; the container nodes share the host's kernel and emulate it.
  local cmdline="root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.unified_cgroup_hierarchy=1"
  # the image's policy and labels decide the rest (lib/build-vm.sh); enforcing=1 so a boot never silently permits
  # (libselinux's policy load takes the first enforcing= on the command line: an extra one below replaces this one)
  if [[ ${VM_LSM:-apparmor} == selinux ]]; then
    cmdline+=" security=selinux selinux=1"
    if [[ " ${TESTBED_VM_CMDLINE_EXTRA:-} " != *" enforcing="* ]]; then cmdline+=" enforcing=1"; fi
  else cmdline+=" apparmor=1 security=apparmor"; fi
  if [[ ${USERNS:-on} == off ]]; then cmdline+=" sysctl.user.max_user_namespaces=0"; fi
  # A maintainer's aid for writing policy (testbed/README.md): e.g. "enforcing=0 systemd.mask=auditd.service
  # sysctl.kernel.printk_ratelimit=0" boots permissive with every AVC on the console log, once each.
  if [[ -n ${TESTBED_VM_CMDLINE_EXTRA:-} ]]; then cmdline+=" $TESTBED_VM_CMDLINE_EXTRA"; fi
  # shellcheck disable=SC2054 # the commas are inside option values
  local args=(-name "$TB_VM_NODE_NAME" -machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m "$TB_VM_MEM_MB"
    -nodefaults -no-user-config -display none -monitor none -rtc base=utc
    -kernel "$TB_VM_IMAGE/vmlinuz" -initrd "$TB_VM_IMAGE/initrd.img"
    -append "$cmdline"
    -drive "file=$TB_VM_DIR/root.qcow2,if=virtio,format=qcow2,cache=unsafe"
    -drive "file=$cfg,if=virtio,format=raw,readonly=on"
    -drive "file=$TB_VM_DIR/containerd.qcow2,if=virtio,format=qcow2,cache=unsafe"
    -netdev "tap,id=n0,ifname=$TB_VM_TAP,script=no,downscript=no" -device virtio-net-pci,netdev=n0,mac=52:54:00:58:00:03
    -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0
    -serial "file:$TB_VM_CONSOLE")
  local -a files
  mapfile -t files < <(find "$TB_VM_DIR/config" -type f | sort)
  local hash; hash=$(hash_of "${args[*]} $(<"$TB_VM_IMAGE/.inputs") $(<"$TB_VM_IMAGE/.seed-inputs")" "${files[@]}")
  if daemon_pid vm >/dev/null && [[ $(<"$TB_PIDS/vm.hash") == "$hash" ]]; then return 0; fi
  # the Node object outlives a guest: it stays Ready until the node controller notices, so `up` waits for the boot
  # after this one to report itself (vm_node_booted), not for Ready
  TB_VM_PREVIOUS_BOOT=$(vm_boot_id || true)
  daemon_stop vm
  rm -f "$TB_VM_DIR/root.qcow2" "$TB_VM_DIR/containerd.qcow2" "$cfg"
  run_logged vm qemu-img create -q -f qcow2 -F raw -b "$TB_VM_IMAGE/disk.img" "$TB_VM_DIR/root.qcow2"
  run_logged vm qemu-img create -q -f qcow2 -F raw -b "$TB_VM_IMAGE/seed.img" "$TB_VM_DIR/containerd.qcow2"
  truncate -s 16M "$cfg"
  run_logged vm mkfs.ext4 -q -F -L dindcheck-cfg -d "$TB_VM_DIR/config" "$cfg"
  : >"$TB_VM_CONSOLE"
  daemon_start vm "$hash" /usr/bin/qemu-system-x86_64 "${args[@]}"
  log "vm: booting $TB_VM_NODE_NAME (Debian $(<"$TB_VM_IMAGE/kernel-version"), ${VM_LSM:-apparmor}, TCG, 2 vCPUs; console: $TB_VM_CONSOLE)"
}

TB_VM_PREVIOUS_BOOT=
# vm_boot_id: the boot the vm node's kubelet last reported (fails when there is no such Node).
vm_boot_id() { kctl get node "$TB_VM_NODE_NAME" -o jsonpath='{.status.nodeInfo.bootID}' 2>/dev/null; }

# vm_node_booted: the vm node is Ready and reports a boot other than the one before vm_node_ensure restarted it.
vm_node_booted() {
  node_ready "$TB_VM_NODE_NAME" || return 1
  local boot
  boot=$(vm_boot_id) || return 1
  [[ -n $boot && $boot != "$TB_VM_PREVIOUS_BOOT" ]]
}

# vm_node_label: the pool label and taint on the Node object (a kubelet never updates them on an existing Node).
vm_node_label() {
  kctl label node "$TB_VM_NODE_NAME" "$TB_POOL_LABEL=vm" --overwrite >/dev/null
  kctl taint node "$TB_VM_NODE_NAME" "$TB_VM_TAINT" --overwrite >/dev/null
}

# vm_node_stop: stops the guest (its QEMU process, by pid file) and removes the tap, the overlay and the config disk.
# The guest's pods die with it; nothing of them is on the host.
vm_node_stop() {
  daemon_stop vm
  if ip link show "$TB_VM_TAP" >/dev/null 2>&1; then
    log "network: deleting tap $TB_VM_TAP"
    ip link del "$TB_VM_TAP"
  fi
  rm -rf "$TB_VM_DIR"
}

# vm_node_remove: `up` without --node-vm after a --node-vm up: the guest stopped, its Node object and pods deleted.
vm_node_remove() {
  if daemon_pid vm >/dev/null || [[ -d $TB_VM_DIR ]] || ip link show "$TB_VM_TAP" >/dev/null 2>&1; then
    log "stopping node $TB_VM_NODE_NAME (no --node-vm)"
    vm_node_stop
  fi
  if kctl get node "$TB_VM_NODE_NAME" >/dev/null 2>&1; then
    kctl delete pods -A --field-selector "spec.nodeName=$TB_VM_NODE_NAME" --grace-period=0 --force \
      >/dev/null 2>&1 || true
    kctl delete node "$TB_VM_NODE_NAME" >/dev/null
    log "deleted node $TB_VM_NODE_NAME"
  fi
}
