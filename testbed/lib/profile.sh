# shellcheck shell=bash
# The cluster profile: independent knobs, each standing for a real cluster setting (see testbed/README.md).
#   --psa-default LEVEL   apiserver AdmissionConfiguration PodSecurity defaults (enforce/audit/warn)
#   --deny-privileged     ValidatingAdmissionPolicy + binding denying privileged containers (Gatekeeper-like)
#   --userns on|off       node sysctl user.max_user_namespaces (off = 0)
#   --cache-fs FS         where the dindcheck-cache StorageClass keeps its volumes: ext4 (node disk), tmpfs, fuse
#   --sysbox-class        RuntimeClass sysbox-runc registered while no node has the handler
#   --dind 29|legacy      the DinD image announced as TESTBED_IMAGE_DIND: Docker 29 (as docker:dind today) or Debian's
#                         Docker 20.10 (API 1.41); both images are always built, imported and pushed
#   --nodes 1|2           2: a second real node dindcheck-ci (own kubelet, containerd 2, label dindcheck.io/pool=ci,
#                         taint dedicated=ci:NoSchedule, cache volumes on FUSE), as a dedicated CI node pool
#   --pod-mtu N           the MTU of every pod's veth pair (CNI bridge plugin "mtu"), 576..9000; the bridge dcbr0 and
#                         the node side (registry, apiserver) stay at 1500: a pod network below the underlay's MTU
#   --node-vm             one more node dindcheck-vm: containerd + kubelet in a QEMU guest on Debian's kernel (cgroup
#                         v2, AppArmor), label dindcheck.io/pool=vm, taint dedicated=vm:NoSchedule (lib/vm.sh)
#   --vm-kernel 6.1|6.12  the vm node's kernel: bookworm's 6.1 (default) or bookworm-backports' 6.12
#   --vm-lsm apparmor|selinux  the vm node's LSM: AppArmor (default) or SELinux enforcing with containerd's
#                         enable_selinux (needs --vm-kernel 6.12)
#   --vm-apparmor-userns off|restrict  refused with restrict: no Debian kernel has Ubuntu's userns restriction
# The active profile is written to $TB_STATE/profile (KEY=VALUE lines) for the smoke test.

TB_PROFILE_FILE=$TB_STATE/profile
TB_CACHE_ROOT=$TB_VARLIB/cache
TB_STANDARD_ROOT=$TB_VARLIB/volumes
TB_CACHE_CLASS=dindcheck-cache
TB_STANDARD_CLASS=dindcheck-standard
TB_PROVISIONER=dindcheck.testbed/hostpath

PSA_DEFAULT=privileged
DENY_PRIVILEGED=false
USERNS=on
CACHE_FS=ext4
SYSBOX_CLASS=false
DIND=29
POD_MTU= # empty: the CNI default (1500, no "mtu" key)
NODES=1
NODE_VM=false
VM_KERNEL=6.1
VM_LSM=apparmor
VM_APPARMOR_USERNS=off # only off exists: see profile_parse

profile_usage() {
  cat <<USAGE
usage: testbed/up [--psa-default privileged|baseline|restricted] [--deny-privileged] [--userns on|off]
                  [--cache-fs ext4|tmpfs|fuse] [--sysbox-class] [--dind 29|legacy] [--pod-mtu N] [--nodes 1|2]
                  [--node-vm [--vm-kernel 6.1|6.12] [--vm-lsm apparmor|selinux]]
A knob left out takes its permissive default: privileged, no deny, userns on, ext4, no sysbox class, dind 29,
pod MTU 1500, one node.
--dind picks the DinD image the suite gets (TESTBED_IMAGE_DIND): 29 (default; Docker 29 built from Go modules) or
legacy (Debian's Docker 20.10); TESTBED_IMAGE_DIND_LEGACY always names the 20.10 image.
--pod-mtu N (576..9000) gives both ends of every new pod's veth pair MTU N while the bridge and the node stay at 1500,
as an overlay pod network below the underlay's MTU.
--nodes 2 adds node $TB_CI_NODE_NAME ($TB_CI_NODE_IP; its own kubelet and containerd 2), labelled $TB_POOL_LABEL=ci and
tainted dedicated=ci:NoSchedule, whose cache-class volumes are on FUSE; the default node is labelled
$TB_POOL_LABEL=default either way.
--node-vm adds node $TB_VM_NODE_NAME ($TB_VM_IP): containerd and the kubelet in a QEMU guest (software emulation) on
Debian's kernel with cgroup v2 and AppArmor, labelled $TB_POOL_LABEL=vm and tainted dedicated=vm:NoSchedule.
--vm-kernel picks the guest's kernel: 6.1 (default; bookworm's) or 6.12 (bookworm-backports'; its own cached image,
built the first time it is asked for: under a minute with the apt archive warm).
--vm-lsm picks the guest's LSM: apparmor (default; containerd's default pod profile) or selinux (Debian's reference
policy enforcing, with its container modules; containerd's enable_selinux gives pods container_t, privileged ones
spc_t); selinux needs --vm-kernel 6.12 and has its own cached image.
--vm-apparmor-userns restrict is refused: Ubuntu's restriction of unconfined user namespaces is an Ubuntu kernel patch;
neither Debian kernel has it (docs/probe-facts.md, the vm node).
USAGE
}

profile_parse() {
  while (($#)); do
    case $1 in
      --psa-default) PSA_DEFAULT=${2:-}; shift ;;
      --psa-default=*) PSA_DEFAULT=${1#*=} ;;
      --deny-privileged) DENY_PRIVILEGED=true ;;
      --userns) USERNS=${2:-}; shift ;;
      --userns=*) USERNS=${1#*=} ;;
      --cache-fs) CACHE_FS=${2:-}; shift ;;
      --cache-fs=*) CACHE_FS=${1#*=} ;;
      --sysbox-class) SYSBOX_CLASS=true ;;
      --dind) DIND=${2:-}; shift ;;
      --dind=*) DIND=${1#*=} ;;
      --pod-mtu) POD_MTU=${2:-}; shift ;;
      --pod-mtu=*) POD_MTU=${1#*=} ;;
      --nodes) NODES=${2:-}; shift ;;
      --nodes=*) NODES=${1#*=} ;;
      --node-vm) NODE_VM=true ;;
      --vm-kernel) VM_KERNEL=${2:-}; shift ;;
      --vm-kernel=*) VM_KERNEL=${1#*=} ;;
      --vm-lsm) VM_LSM=${2:-}; shift ;;
      --vm-lsm=*) VM_LSM=${1#*=} ;;
      --vm-apparmor-userns) VM_APPARMOR_USERNS=${2:-}; shift ;;
      --vm-apparmor-userns=*) VM_APPARMOR_USERNS=${1#*=} ;;
      -h|--help) profile_usage; exit 0 ;;
      *) profile_usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
  case $PSA_DEFAULT in privileged|baseline|restricted) ;; *) die "--psa-default must be privileged|baseline|restricted, not '$PSA_DEFAULT'" ;; esac
  case $USERNS in on|off) ;; *) die "--userns must be on|off, not '$USERNS'" ;; esac
  case $CACHE_FS in ext4|tmpfs|fuse) ;; *) die "--cache-fs must be ext4|tmpfs|fuse, not '$CACHE_FS'" ;; esac
  case $DIND in 29|legacy) ;; *) die "--dind must be 29|legacy, not '$DIND'" ;; esac
  case $NODES in 1|2) ;; *) die "--nodes must be 1|2, not '$NODES'" ;; esac
  case $VM_KERNEL in 6.1|6.12) ;; *) die "--vm-kernel must be 6.1|6.12, not '$VM_KERNEL'" ;; esac
  case $VM_LSM in apparmor|selinux) ;; *) die "--vm-lsm must be apparmor|selinux, not '$VM_LSM'" ;; esac
  if [[ $VM_LSM == selinux && $VM_KERNEL != 6.12 ]]; then
    die "--vm-lsm selinux needs --vm-kernel 6.12: the SELinux guest image is built and verified on bookworm-backports'" \
      "6.12 only"
  fi
  case $VM_APPARMOR_USERNS in off|restrict) ;; *) die "--vm-apparmor-userns must be off|restrict, not '$VM_APPARMOR_USERNS'" ;; esac
  if [[ $VM_APPARMOR_USERNS == restrict ]]; then
    die "--vm-apparmor-userns restrict: no kernel the vm node can boot has it. Ubuntu's restriction" \
      "(kernel.apparmor_restrict_unprivileged_userns, AppArmor's userns_create mediation) is an Ubuntu kernel patch;" \
      "Debian's 6.12 (bookworm-backports) has neither: booted with sysctl.kernel.apparmor_restrict_unprivileged_userns=1" \
      "it logs 'parameter not found' and an unconfined uid 1000 still gets a user namespace with every capability" \
      "(docs/probe-facts.md, the vm node)"
  fi
  if [[ -n $POD_MTU ]] && ! [[ $POD_MTU =~ ^[1-9][0-9]*$ && $POD_MTU -ge 576 && $POD_MTU -le 9000 ]]; then
    die "--pod-mtu must be a number from 576 to 9000, not '$POD_MTU'"
  fi
}

profile_describe() {
  echo "psa-default=$PSA_DEFAULT deny-privileged=$DENY_PRIVILEGED userns=$USERNS cache-fs=$CACHE_FS sysbox-class=$SYSBOX_CLASS dind=$DIND pod-mtu=${POD_MTU:-1500} nodes=$NODES node-vm=$NODE_VM vm-kernel=$VM_KERNEL vm-lsm=$VM_LSM"
}

profile_write() {
  write_if_changed "$TB_PROFILE_FILE" <<EOP
PSA_DEFAULT=$PSA_DEFAULT
DENY_PRIVILEGED=$DENY_PRIVILEGED
USERNS=$USERNS
CACHE_FS=$CACHE_FS
SYSBOX_CLASS=$SYSBOX_CLASS
DIND=$DIND
POD_MTU=$POD_MTU
NODES=$NODES
NODE_VM=$NODE_VM
VM_KERNEL=$VM_KERNEL
VM_LSM=$VM_LSM
USERNS_MECHANISM=$USERNS_MECHANISM
EOP
}

# dind_image: the DinD image ref the profile announces (images_ensure has set both refs).
dind_image() {
  if [[ $DIND == legacy ]]; then echo "$TESTBED_IMAGE_DIND_LEGACY"; else echo "$TESTBED_IMAGE_DIND"; fi
}

# admission_config_write: the apiserver's AdmissionConfiguration (PodSecurity defaults); prints its path.
admission_config_write() {
  local f=$TB_CONF/admission.yaml
  mkdir -p "$TB_CONF"
  write_if_changed "$f" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: "$PSA_DEFAULT"
      enforce-version: "latest"
      audit: "$PSA_DEFAULT"
      audit-version: "latest"
      warn: "$PSA_DEFAULT"
      warn-version: "latest"
    exemptions:
      usernames: []
      runtimeClasses: []
      namespaces: [kube-system]
YAML
  echo "$f"
}

# ------------------------------------------------------------------------------------------------------ userns
# The real setting is the node sysctl user.max_user_namespaces=0. Writing it needs CAP_SYS_RESOURCE; where the VM's
# capability bounding set lacks it (the kernel answers "permission denied"), up falls back to giving every new
# container the same behaviour through runc-wrapper + seccomp_userns.py (clone/unshare with CLONE_NEWUSER -> ENOSPC).
# USERNS_MECHANISM records which one is active: sysctl, seccomp, or none (userns on).
USERNS_MECHANISM=none
TB_USERNS_FLAG=$TB_RUN/userns-off

userns_apply() {
  if [[ $USERNS == on ]]; then
    rm -f "$TB_USERNS_FLAG"
    sysctl_restore user.max_user_namespaces
    USERNS_MECHANISM=none
    return 0
  fi
  if sysctl_set user.max_user_namespaces 0 2>>"$TB_LOGS/sysctl.log"; then
    rm -f "$TB_USERNS_FLAG"
    USERNS_MECHANISM=sysctl
    return 0
  fi
  if [[ ! -e $TB_USERNS_FLAG ]]; then
    log "userns off: the kernel refuses user.max_user_namespaces=0 here (needs CAP_SYS_RESOURCE, missing from this"
    log "  host's capability bounding set); emulating it for new containers instead: clone/unshare(CLONE_NEWUSER)"
    log "  fail with ENOSPC through a seccomp rule added by testbed/lib/runc-wrapper"
  fi
  touch "$TB_USERNS_FLAG"
  USERNS_MECHANISM=seccomp
}

# ------------------------------------------------------------------------------------------------------ storage
# cache_fs_root FS: the backing root of the cache class for FS.
cache_fs_root() { echo "$TB_CACHE_ROOT/$1"; }

# cache_fs_mount FS: makes sure FS's backing root exists (and is mounted, for tmpfs and fuse).
cache_fs_mount() {
  local fs=$1 root; root=$(cache_fs_root "$fs")
  mkdir -p "$root"
  case $fs in
    ext4) ;;
    tmpfs)
      if ! mountpoint -q "$root"; then
        log "cache-fs: mounting tmpfs at $root"
        mount -t tmpfs -o size=4g,mode=0755 dindcheck-cache "$root"
      fi ;;
    fuse)
      if ! mountpoint -q "$root"; then
        local backing=$TB_CACHE_ROOT/fuse-backing
        mkdir -p "$backing"
        log "cache-fs: mounting bindfs (FUSE) $backing at $root"
        # Foreground (-f) so it is one of our pid-file daemons; SIGTERM unmounts it.
        daemon_stop bindfs
        daemon_start bindfs "$root" /usr/bin/bindfs -f -o allow_other,dev,suid "$backing" "$root" || true
        wait_for "bindfs mount at $root" 30 "$TB_LOGS/bindfs.log" mountpoint -q "$root"
      fi ;;
  esac
}

# cache_fs_unmount FS: unmounts a tmpfs/fuse backing root that is not the active profile's (best effort: a pod may
# still use a volume there, in which case it stays until testbed/down).
cache_fs_unmount() {
  local fs=$1 root; root=$(cache_fs_root "$fs")
  [[ $fs == ext4 ]] && return 0
  mountpoint -q "$root" || return 0
  if umount "$root" 2>/dev/null; then
    log "cache-fs: unmounted $fs at $root"
    if [[ $fs == fuse ]]; then daemon_stop bindfs; fi
  else
    warn "cache-fs: $root is busy (a pod still uses a $fs volume); it is unmounted by testbed/down"
  fi
}

# The cache class is WaitForFirstConsumer: the provisioner makes a claim's volume only once the scheduler picked the
# node of the pod that uses it (annotation volume.kubernetes.io/selected-node), under the class parameter
# root.<node> when there is one, else under root; the PV gets a nodeAffinity for that node. The second node's root
# is the FUSE one whatever --cache-fs says (a CI pool on NFS-like storage), so the parameter is there even with one
# node: switching --nodes does not replace the class.
storage_apply() {
  local root; root=$(cache_fs_root "$CACHE_FS")
  local ci_root; ci_root=$(cache_fs_root fuse)
  local fs
  for fs in ext4 tmpfs fuse; do
    if [[ $fs != "$CACHE_FS" && ! ($fs == fuse && $NODES == 2) ]]; then cache_fs_unmount "$fs"; fi
  done
  cache_fs_mount "$CACHE_FS"
  if [[ $NODES == 2 ]]; then cache_fs_mount fuse; fi
  mkdir -p "$TB_STANDARD_ROOT"
  local cache_class
  # The vm node's (--node-vm) volumes are on the guest's own ext4 disk, made there by its kubelet (remote.<node>).
  cache_class=$(cat <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $TB_CACHE_CLASS
  labels: {app.kubernetes.io/managed-by: dindcheck-testbed}
  annotations: {dindcheck.testbed/spec: "@SPEC@"}
provisioner: $TB_PROVISIONER
parameters: {root: "$root", fs: $CACHE_FS, root.$TB_CI_NODE_NAME: "$ci_root", fs.$TB_CI_NODE_NAME: fuse,
  root.$TB_VM_NODE_NAME: "$TB_CACHE_ROOT/vm", fs.$TB_VM_NODE_NAME: ext4, remote.$TB_VM_NODE_NAME: "true"}
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
YAML
)
  # Parameters and binding mode are immutable: replace the class when its spec (hashed into an annotation) changed.
  local spec; spec=$(hash_of "$cache_class")
  cache_class=${cache_class/@SPEC@/$spec}
  local current
  current=$(kctl get storageclass "$TB_CACHE_CLASS" -o jsonpath='{.metadata.annotations.dindcheck\.testbed/spec}' \
    2>/dev/null) || current=absent
  if [[ $current != absent && $current != "$spec" ]]; then
    log "storage: replacing $TB_CACHE_CLASS (cache-fs $CACHE_FS: $root; $TB_CI_NODE_NAME: $ci_root)"
    kctl delete storageclass "$TB_CACHE_CLASS" --wait=true >/dev/null
  fi
  kctl apply -f - >/dev/null <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $TB_STANDARD_CLASS
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
  labels: {app.kubernetes.io/managed-by: dindcheck-testbed}
provisioner: $TB_PROVISIONER
parameters: {root: $TB_STANDARD_ROOT, fs: ext4}
reclaimPolicy: Delete
volumeBindingMode: Immediate
---
$cache_class
YAML
}

# ----------------------------------------------------------------------------------------- admission policies
TB_VAP_NAME=dindcheck-testbed-deny-privileged

deny_privileged_apply() {
  if [[ $DENY_PRIVILEGED != true ]]; then
    kctl delete validatingadmissionpolicybinding "$TB_VAP_NAME" --ignore-not-found >/dev/null
    kctl delete validatingadmissionpolicy "$TB_VAP_NAME" --ignore-not-found >/dev/null
    return 0
  fi
  kctl apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: $TB_VAP_NAME
  labels: {app.kubernetes.io/managed-by: dindcheck-testbed}
spec:
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector:
      matchExpressions:
      - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["pods", "pods/ephemeralcontainers"]
  variables:
  - name: privileged
    expression: >-
      object.spec.containers.filter(c, has(c.securityContext) && has(c.securityContext.privileged)
        && c.securityContext.privileged).map(c, c.name)
      + (has(object.spec.initContainers) ? object.spec.initContainers.filter(c, has(c.securityContext)
        && has(c.securityContext.privileged) && c.securityContext.privileged).map(c, c.name) : [])
      + (has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers.filter(c, has(c.securityContext)
        && has(c.securityContext.privileged) && c.securityContext.privileged).map(c, c.name) : [])
  validations:
  - expression: "size(variables.privileged) == 0"
    reason: Forbidden
    messageExpression: >-
      '[denied by $TB_VAP_NAME] Privileged containers are not allowed: ' + variables.privileged.join(', ')
      + ' (securityContext.privileged=true)'
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: $TB_VAP_NAME
  labels: {app.kubernetes.io/managed-by: dindcheck-testbed}
spec:
  policyName: $TB_VAP_NAME
  validationActions: [Deny]
YAML
}

# ---------------------------------------------------------------------------------------------- runtime class
sysbox_class_apply() {
  if [[ $SYSBOX_CLASS != true ]]; then
    kctl delete runtimeclass sysbox-runc --ignore-not-found >/dev/null
    return 0
  fi
  kctl apply -f - >/dev/null <<YAML
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: sysbox-runc
  labels: {app.kubernetes.io/managed-by: dindcheck-testbed}
handler: sysbox-runc
YAML
}
