# shellcheck shell=bash
# Node network: the bridge dcbr0 (10.88.0.1/16, created before the kubelet so the node IP exists) and the CNI
# config that containerd reads from our state dir (bridge plugin on dcbr0, host-local IPAM from 10.88.1.0).
# No kube-proxy and no CoreDNS: pods reach each other and the node (registry, apiserver) by IP.

TB_CNI_CONF_DIR=$TB_CONF/cni
TB_CNI_IPAM_DIR=$TB_RUN/cni-ipam

network_up() {
  if ! ip link show "$TB_BRIDGE" >/dev/null 2>&1; then
    log "network: creating bridge $TB_BRIDGE with $TB_NODE_IP/16"
    ip link add "$TB_BRIDGE" type bridge
  fi
  if ! ip -4 addr show dev "$TB_BRIDGE" | grep -q "inet $TB_NODE_IP/16"; then
    ip addr add "$TB_NODE_IP/16" dev "$TB_BRIDGE"
  fi
  ip link set "$TB_BRIDGE" up
  mkdir -p "$TB_CNI_CONF_DIR" "$TB_CNI_IPAM_DIR"
  write_if_changed "$TB_CNI_CONF_DIR/10-dindcheck.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "dindcheck",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$TB_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$TB_CNI_IPAM_DIR",
        "ranges": [[{"subnet": "10.88.0.0/16", "rangeStart": "10.88.1.0", "rangeEnd": "10.88.255.254", "gateway": "$TB_NODE_IP"}]]
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
  rm -rf "$TB_CNI_IPAM_DIR"
  # libcni caches results in /var/lib/cni/results under the network name.
  rm -f /var/lib/cni/results/dindcheck-* 2>/dev/null || true
}
