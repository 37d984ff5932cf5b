#!/usr/bin/env bash
# build-vm.sh OUTDIR KUBELET [KERNEL] [LSM]: the guest image of `testbed/up --node-vm` (lib/vm.sh): Debian bookworm
# with its own kernel (linux-image-amd64: KERNEL 6.1, the default, is bookworm's; 6.12 is bookworm-backports', whose
# AppArmor has no userns mediation either (docs/probe-facts.md); the backports source exists only for that install
# and is removed from the image), systemd, udev, an LSM, Debian's containerd, runc and CNI plugins (the first node's
# runtime) and the testbed's kubelet, as an ext4 disk image (mkfs.ext4 -d) plus the kernel and initrd extracted for
# QEMU's -kernel/-initrd. LSM apparmor (the default) or selinux (KERNEL 6.12 only: the one it was verified on):
# Debian's reference policy (selinux-policy-default) plus its container and docker modules, which Debian ships only
# as source (built here from selinux-policy-src), plus lib/selinux/dindcheck-containerd.{te,fc}; every file is labelled
# here (setfiles against the built policy; mkfs.ext4 -d keeps the security.selinux xattrs), so the guest boots
# enforcing without a relabel. Starts from images.sh's cached minbase rootfs (the base every testbed image shares) and
# its apt archive cache. Its image store (/var/lib/containerd) is another disk, seeded with the testbed's images by
# lib/build-vm-seed.sh. Everything node-specific (certificates, kubeconfig, containerd and kubelet configs) comes at
# boot from a small config disk that lib/vm.sh writes on every up, so the image depends only on its inputs: this
# script, the base rootfs's spec, the kernel and LSM choices, the local policy module and the kubelet binary. Skips
# the build when those are unchanged (OUTDIR/.inputs).
# Outputs: OUTDIR/disk.img (sparse raw ext4), OUTDIR/vmlinuz, OUTDIR/initrd.img; with selinux also
# OUTDIR/file_contexts (the policy's, for labelling the image-store seed the same way).
set -euo pipefail
out=${1:?usage: build-vm.sh OUTDIR KUBELET [KERNEL] [LSM]}
kubelet=${2:?usage: build-vm.sh OUTDIR KUBELET [KERNEL] [LSM]}
kernel_choice=${3:-6.1}
lsm=${4:-apparmor}
case $kernel_choice in 6.1|6.12) ;; *) echo "vm image: error: kernel must be 6.1|6.12, not '$kernel_choice'" >&2; exit 2 ;; esac
case $lsm in apparmor|selinux) ;; *) echo "vm image: error: LSM must be apparmor|selinux, not '$lsm'" >&2; exit 2 ;; esac
if [[ $lsm == selinux && $kernel_choice != 6.12 ]]; then
  echo "vm image: error: LSM selinux is built and verified with kernel 6.12 only" >&2
  exit 2
fi
CACHE=${TESTBED_CACHE:-/var/cache/dindcheck-testbed}
BASE=$CACHE/rootfs/base # images.sh build_base: debootstrap --variant=minbase bookworm, apt sources and settings
APT_ARCHIVES=$CACHE/apt-archives
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DISK_SIZE=16G # sparse: the guest's image store and pod data; blocks are used only when written
GUEST_IP=10.88.0.3
# Debian's containerd/runc/CNI plugins are the first node's runtime (lib/deps.sh); systemd + udev to boot; apparmor
# for apparmor_parser (containerd loads its default pod profile with it); iptables for the kubelet and pods.
PACKAGES="systemd-sysv udev dbus iproute2 iptables ca-certificates kmod initramfs-tools
  containerd runc containernetworking-plugins e2fsprogs procps"
# selinux: the policy and its tools (setools: seinfo/sesearch to inspect the loaded policy in the guest); auditd
# keeps the AVC denials in /var/log/audit/audit.log. The policy source and devel Makefile only build the modules.
SELINUX_PACKAGES="selinux-basics selinux-policy-default policycoreutils selinux-utils auditd setools"
SELINUX_BUILD_PACKAGES="selinux-policy-src selinux-policy-dev zstd"
SELINUX_LOCAL=$(dirname "$0")/selinux/dindcheck-containerd # .te (rules) and .fc (labels)
if [[ $lsm == selinux ]]; then PACKAGES+=" $SELINUX_PACKAGES $SELINUX_BUILD_PACKAGES"; else PACKAGES+=" apparmor"; fi
KERNEL_PACKAGE=linux-image-amd64
BACKPORTS_LIST=/etc/apt/sources.list.d/dindcheck-bookworm-backports.list

say() { echo "vm image: $*"; }
[[ -f $BASE/.dindcheck-base ]] || { say "error: no base rootfs $BASE (images.sh build makes it)" >&2; exit 1; }
[[ -x $kubelet ]] || { say "error: no kubelet $kubelet" >&2; exit 1; }
inputs=$({
  sha256sum "$0" | cut -c1-64
  cat "$BASE/.dindcheck-base"
  echo "kernel $kernel_choice"
  echo "lsm $lsm"
  if [[ $lsm == selinux ]]; then cat "$SELINUX_LOCAL.te" "$SELINUX_LOCAL.fc" | sha256sum | cut -c1-64; fi
  sha256sum "$kubelet" | cut -c1-64
} | sha256sum | cut -c1-64)
if [[ -f $out/.inputs && $(<"$out/.inputs") == "$inputs" && -f $out/disk.img && -f $out/vmlinuz && -f $out/initrd.img ]]
then
  say "cached in $out (inputs ${inputs:0:12})"
  exit 0
fi

work=$out.work
MOUNTS=()
cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}"; done
  if [[ -d $work ]] && ! grep -q " $work" /proc/self/mountinfo; then rm -rf "$work"; fi
}
trap cleanup EXIT
in_chroot() {
  chroot "$work" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    DEBCONF_NONINTERACTIVE_SEEN=true "$@"
}
t=$SECONDS
say "building in $work (cold: about 3 minutes; base rootfs + $(echo "$PACKAGES" | wc -w) packages + kernel $kernel_choice, $lsm)"
rm -rf "$work"
mkdir -p "$out"
cp -a "$BASE" "$work"
mount -t proc proc "$work/proc"; MOUNTS+=("$work/proc")
mount -t sysfs sysfs "$work/sys"; MOUNTS+=("$work/sys")
mkdir -p "$work/dev/pts" "$APT_ARCHIVES/partial"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$work/dev/pts"; MOUNTS+=("$work/dev/pts")
mount --bind "$APT_ARCHIVES" "$work/var/cache/apt/archives"; MOUNTS+=("$work/var/cache/apt/archives")
rm -f "$work/etc/resolv.conf"
cp /etc/resolv.conf "$work/etc/resolv.conf"
# shellcheck disable=SC2086 # word splitting of the package list is intended
if ! in_chroot apt-get install -y -q $PACKAGES; then
  say "apt-get install failed; refreshing package lists and retrying"
  in_chroot apt-get update -q
  # shellcheck disable=SC2086
  in_chroot apt-get install -y -q $PACKAGES
fi
if [[ $kernel_choice == 6.1 ]]; then
  in_chroot apt-get install -y -q "$KERNEL_PACKAGE"
else
  echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$work$BACKPORTS_LIST"
  in_chroot apt-get update -q
  in_chroot apt-get install -y -q -t bookworm-backports "$KERNEL_PACKAGE"
  rm -f "$work$BACKPORTS_LIST"
fi
if [[ $lsm == selinux ]]; then
  # Debian's built policy has no container types (container_t, spc_t, container_file_t): containerd's
  # enable_selinux then fails every sandbox's overlay context= mount with "invalid argument". The reference policy's
  # container and docker modules (interfaces already in the devel headers, so only .te and .fc), plus the local one.
  mkdir -p "$work/tmp/selinux-modules"
  in_chroot tar -C /tmp/selinux-modules -I zstd -xf /usr/src/selinux-policy-src.tar.zst --strip-components=4 \
    selinux-policy-src/policy/modules/services/container.te selinux-policy-src/policy/modules/services/container.fc \
    selinux-policy-src/policy/modules/services/docker.te selinux-policy-src/policy/modules/services/docker.fc
  cp "$SELINUX_LOCAL.te" "$SELINUX_LOCAL.fc" "$work/tmp/selinux-modules/"
  in_chroot sh -c 'cd /tmp/selinux-modules && make -s -f /usr/share/selinux/devel/Makefile \
    container.pp docker.pp dindcheck-containerd.pp'
  # -n: no policy load (the build host has no SELinux); the store and policy.33 under /etc/selinux are rebuilt.
  in_chroot sh -c 'cd /tmp/selinux-modules && semodule -n -i container.pp docker.pp dindcheck-containerd.pp'
  rm -rf "$work/tmp/selinux-modules"
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  in_chroot apt-get purge -y -q --autoremove $SELINUX_BUILD_PACKAGES
  sed -i 's/^SELINUX=.*/SELINUX=enforcing/' "$work/etc/selinux/config"
fi
in_chroot apt-get clean
for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}"; done
MOUNTS=()

install -m 0755 "$kubelet" "$work/usr/local/bin/kubelet"
# De-host: no build-time policy, DNS, unsafe dpkg io or apt lists; a machine-id made at first boot.
rm -rf "$work/usr/sbin/policy-rc.d" "$work/etc/dpkg/dpkg.cfg.d/90dindcheck-unsafe-io" "$work/.dindcheck-base" \
  "$work"/var/lib/apt/lists/* "$work"/var/log/*.log "$work"/tmp/*
: >"$work/etc/machine-id"
echo dindcheck-vm >"$work/etc/hostname"
printf '127.0.0.1 localhost\n%s dindcheck-vm\n' "$GUEST_IP" >"$work/etc/hosts"
: >"$work/etc/resolv.conf" # no DNS: the testbed is addressed by IP
# selinux: the config disk (made by lib/vm.sh on the host, no labels) is mounted with one context for all its files:
# container_config_t, the reference policy's type for /etc/cni and /etc/containerd, which containerd (dockerd_t)
# reads; it is read-only, so nothing ever needs another label there.
cfg_opts=ro,nofail,x-systemd.device-timeout=30s
if [[ $lsm == selinux ]]; then cfg_opts+=,context=system_u:object_r:container_config_t:s0; fi
cat >"$work/etc/fstab" <<EOF
/dev/vda / ext4 rw,relatime,errors=remount-ro 0 1
LABEL=dindcheck-cfg /etc/dindcheck ext4 $cfg_opts 0 0
LABEL=dindcheck-ctrd /var/lib/containerd ext4 rw,relatime,x-systemd.device-timeout=30s 0 2
EOF
mkdir -p "$work/etc/dindcheck" "$work/var/lib/containerd" # mount points, labelled with the rest when selinux
# Network: eth0 (the tap on the testbed bridge) enslaved to br0, which holds the node IP; pods join br0 (CNI bridge,
# no gateway role), so node and pods are on the testbed's one L2 segment, as the container nodes' pods are.
mkdir -p "$work/etc/systemd/network"
cat >"$work/etc/systemd/network/10-br0.netdev" <<'EOF'
[NetDev]
Name=br0
Kind=bridge
MACAddress=0a:58:0a:58:00:03
EOF
cat >"$work/etc/systemd/network/20-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
Bridge=br0
EOF
cat >"$work/etc/systemd/network/30-br0.network" <<EOF
[Match]
Name=br0

[Network]
Address=$GUEST_IP/16
ConfigureWithoutCarrier=yes
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
cat >"$work/etc/modules-load.d/dindcheck.conf" <<'EOF'
overlay
br_netfilter
EOF
cat >"$work/etc/sysctl.d/90-dindcheck.conf" <<'EOF'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
EOF
# containerd and the kubelet read their configs from the config disk (lib/vm.sh writes it on every up).
mkdir -p "$work/etc/systemd/system/containerd.service.d"
cat >"$work/etc/systemd/system/containerd.service.d/10-dindcheck.conf" <<'EOF'
[Unit]
RequiresMountsFor=/etc/dindcheck /var/lib/containerd
ConditionPathExists=/etc/dindcheck/containerd.toml

[Service]
ExecStart=
ExecStart=/usr/bin/containerd --config /etc/dindcheck/containerd.toml
StandardOutput=journal+console
StandardError=journal+console
EOF
cat >"$work/etc/systemd/system/kubelet.service" <<'EOF'
[Unit]
Description=kubelet (dindcheck testbed node dindcheck-vm)
After=containerd.service network-online.target
Wants=network-online.target
Requires=containerd.service
RequiresMountsFor=/etc/dindcheck
ConditionPathExists=/etc/dindcheck/kubelet.env

[Service]
EnvironmentFile=/etc/dindcheck/kubelet.env
ExecStart=/usr/local/bin/kubelet $KUBELET_ARGS
Restart=always
RestartSec=2
# Also on the serial console, which is the testbed's log of the guest (testbed/.state/logs/vm-console.log).
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
in_chroot systemctl enable systemd-networkd.service containerd.service kubelet.service >/dev/null 2>&1
in_chroot systemctl enable systemd-networkd-wait-online.service >/dev/null 2>&1 || true
in_chroot systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
# Root login on the serial console without a password (the console is a log file only the testbed reads).
in_chroot passwd -d root >/dev/null

if [[ $lsm == selinux ]]; then
  # Offline labelling: the xattrs the guest's one-time relabel (about 3 minutes under TCG) would write, written here
  # (root may set security.selinux without SELinux on the host) and carried into disk.img by mkfs.ext4 -d.
  # setfiles sets labels through /proc/self/fd (libselinux 3.4): without /proc every file fails with ENOENT.
  # The kubelet's and the CRI's directories exist before their first start, so they carry the policy's types
  # (kubelet pods container_file_t, logs container_log_t, CNI state container_var_lib_t) and what the kubelet creates
  # in them inherits those: made by the kubelet at its first start, they were var_lib_t/var_log_t, and containerd
  # (dockerd_t) was denied "getattr" on every pod's etc-hosts (CreateContainerError "stat .../etc-hosts: permission
  # denied").
  mkdir -p "$work/var/lib/kubelet/pods" "$work/var/log/pods" "$work/var/log/containers" "$work/var/lib/cni"
  fc=/etc/selinux/default/contexts/files/file_contexts
  mount -t proc proc "$work/proc"; MOUNTS+=("$work/proc")
  in_chroot setfiles -F -e /proc "$fc" /
  umount "$work/proc"; MOUNTS=()
  cp "$work$fc" "$out/file_contexts.tmp"
fi
kernel=$(find "$work/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)
initrd=$(find "$work/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n1)
[[ -n $kernel && -n $initrd ]] || { say "error: no kernel/initrd in $work/boot" >&2; exit 1; }
cp "$kernel" "$out/vmlinuz.tmp"
cp "$initrd" "$out/initrd.img.tmp"
say "kernel ${kernel##*/vmlinuz-}; making the ext4 disk image ($DISK_SIZE sparse)"
rm -f "$out/disk.img.tmp"
truncate -s "$DISK_SIZE" "$out/disk.img.tmp"
mkfs.ext4 -q -F -L dindcheck-vm -d "$work" "$out/disk.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
mv "$out/disk.img.tmp" "$out/disk.img"
if [[ $lsm == selinux ]]; then mv "$out/file_contexts.tmp" "$out/file_contexts"; else rm -f "$out/file_contexts"; fi
echo "${kernel##*/vmlinuz-}" >"$out/kernel-version"
echo "$inputs" >"$out/.inputs"
say "built in $out ($((SECONDS - t)) s; disk $(du -h "$out/disk.img" | cut -f1) used)"
