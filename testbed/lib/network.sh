# shellcheck shell=bash
# Node network: the bridge dcbr0 (10.88.0.1/16, created before the kubelet so the node IP exists) and the CNI
# config that containerd reads from our state dir (bridge plugin on dcbr0, host-local IPAM 10.88.1.0-10.88.127.254).
# With `--nodes 2` the second node has 10.88.0.2 on the same bridge and its own CNI config and IPAM data for
# 10.88.128.0-10.88.255.254: one L2 segment, so no routes are needed between the nodes' pods.
# No kube-proxy and no CoreDNS: pods reach each other and the node (registry, apiserver) by IP.

TB_CNI_CONF_DIR=$TB_CONF/cni
TB_CNI_IPAM_DIR=$TB_RUN/cni-ipam
TB_CI_CNI_CONF_DIR=$TB_CONF/cni-ci
TB_CI_CNI_IPAM_DIR=$TB_CI_RUN/cni-ipam
# The bridge's own MAC, fixed (locally administered, derived from the node IP: 0a:58:0a:58:00:01). A bridge whose
# address was never set takes the lowest MAC of its ports and changes it whenever a pod's veth with a lower MAC
# joins or the lowest one leaves; pods that cached the old MAC for $TB_NODE_IP then send to an address the bridge
# no longer delivers locally, and their connections to the API server and registry time out until their ARP entry
# expires (up to ~50 s). Setting the address pins it (addr_assign_type 3, "set"); it goes away with the bridge.
# shellcheck disable=SC2086 # word splitting of the dotted quad is intended
TB_BRIDGE_MAC=$(printf '0a:58:%02x:%02x:%02x:%02x' ${TB_NODE_IP//./ })

# The bridge's MTU is pinned to 1500 the same way: a bridge whose MTU was never set follows the smallest MTU of its
# ports, so with `--pod-mtu 1400` it would drop to 1400 as soon as a pod joins, and the node side (registry,
# apiserver) would no longer stand for an underlay above the pod network's MTU. Setting it once marks it as set by
# the user (the kernel skips a set to the current value, hence the 1499 first).
TB_BRIDGE_MTU=1500

# bridge_offload_apply: with --pod-mtu, segmentation offload (TSO, GSO) off on the bridge, on otherwise. With it on,
# the node's TCP (registry, apiserver) hands the bridge 64 KiB super-packets, which the kernel forwards to a port of
# any MTU and cuts into segments of the peer's MSS only behind the veth: a nested container (MSS 1460) would then get
# 1500-byte frames through a 1400 veth, which no real overlay delivers. With it off, the node sends frames of the
# peer's MSS and the bridge drops those above the pod's veth MTU, as an overlay does, silently (no ICMP).
bridge_offload_apply() {
  local want=on
  [[ -n ${POD_MTU:-} ]] && want=off
  local have; have=$(ethtool -k "$TB_BRIDGE" 2>/dev/null | awk '$1 == "generic-segmentation-offload:" { print $2 }')
  [[ $have == "$want" ]] && return 0
  log "network: $TB_BRIDGE segmentation offload (tso, gso): $want"
  ethtool -K "$TB_BRIDGE" tso "$want" gso "$want"
}

network_up() {
  if ! ip link show "$TB_BRIDGE" >/dev/null 2>&1; then
    log "network: creating bridge $TB_BRIDGE with $TB_NODE_IP/16"
    ip link add "$TB_BRIDGE" address "$TB_BRIDGE_MAC" type bridge
    ip link set dev "$TB_BRIDGE" mtu $((TB_BRIDGE_MTU - 1))
  fi
  if [[ $(<"/sys/class/net/$TB_BRIDGE/mtu") != "$TB_BRIDGE_MTU" ]]; then
    ip link set dev "$TB_BRIDGE" mtu "$TB_BRIDGE_MTU"
  fi
  if [[ $(<"/sys/class/net/$TB_BRIDGE/address") != "$TB_BRIDGE_MAC" ||
    $(<"/sys/class/net/$TB_BRIDGE/addr_assign_type") != 3 ]]; then
    log "network: pinning $TB_BRIDGE's MAC to $TB_BRIDGE_MAC"
    ip link set dev "$TB_BRIDGE" address "$TB_BRIDGE_MAC"
  fi
  if ! ip -4 addr show dev "$TB_BRIDGE" | grep "inet $TB_NODE_IP/16" >/dev/null; then
    ip addr replace "$TB_NODE_IP/16" dev "$TB_BRIDGE"
  fi
  ip link set "$TB_BRIDGE" up
  bridge_offload_apply
  cni_conflist_write "$TB_CNI_CONF_DIR" dindcheck "$TB_CNI_IPAM_DIR" 10.88.1.0 10.88.127.254
  if [[ ${NODES:-1} == 2 ]]; then
    if ! ip -4 addr show dev "$TB_BRIDGE" | grep "inet $TB_CI_NODE_IP/16" >/dev/null; then
      log "network: adding $TB_CI_NODE_IP/16 (node $TB_CI_NODE_NAME) to $TB_BRIDGE"
      ip addr replace "$TB_CI_NODE_IP/16" dev "$TB_BRIDGE"
    fi
    cni_conflist_write "$TB_CI_CNI_CONF_DIR" dindcheck-ci "$TB_CI_CNI_IPAM_DIR" 10.88.128.0 10.88.255.254
  fi
}

# network_ci_down: removes the second node's address, CNI config and IPAM data (its kubelet and containerd are gone).
network_ci_down() {
  if ip -4 addr show dev "$TB_BRIDGE" 2>/dev/null | grep "inet $TB_CI_NODE_IP/16" >/dev/null; then
    log "network: removing $TB_CI_NODE_IP from $TB_BRIDGE"
    ip addr del "$TB_CI_NODE_IP/16" dev "$TB_BRIDGE"
  fi
  rm -rf "$TB_CI_CNI_CONF_DIR" "$TB_CI_CNI_IPAM_DIR"
}

# cni_conflist_write DIR NETWORK IPAM_DIR RANGE_START RANGE_END: one node's CNI config (bridge plugin on dcbr0,
# host-local IPAM over its share of 10.88.0.0/16, gateway the first node's IP).
cni_conflist_write() {
  local dir=$1 network=$2 ipam=$3 start=$4 end=$5
  mkdir -p "$dir" "$ipam"
  # --pod-mtu N: the bridge plugin gives both ends of each new pod's veth pair MTU N (it leaves an existing bridge's
  # MTU alone). Without the knob there is no "mtu" key: the plugin's default, 1500.
  local mtu=''
  if [[ -n ${POD_MTU:-} ]]; then mtu=$'\n'"      \"mtu\": $POD_MTU,"; fi
  write_if_changed "$dir/10-$network.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$network",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$TB_BRIDGE",$mtu
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$ipam",
        "ranges": [[{"subnet": "10.88.0.0/16", "rangeStart": "$start", "rangeEnd": "$end", "gateway": "$TB_NODE_IP"}]]
      }
    }
  ]
}
JSON
}

network_down() {
  if ip link show "$TB_BRIDGE" >/dev/null 2>&1; then
    # Pod veths normally vanish with their network namespaces; delete any still attached to our bridge.
    local l
    for l in $(ip -o link show master "$TB_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      log "network: deleting leftover pod interface $l"
      ip link del "$l" 2>/dev/null || true
    done
    log "network: deleting bridge $TB_BRIDGE"
    ip link del "$TB_BRIDGE"
  fi
  rm -rf "$TB_CNI_IPAM_DIR" "$TB_CI_CNI_IPAM_DIR"
  # libcni caches results in /var/lib/cni/results under the network name.
  rm -f /var/lib/cni/results/dindcheck-* 2>/dev/null || true
}
