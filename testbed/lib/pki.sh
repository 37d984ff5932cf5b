# shellcheck shell=bash
# Cluster PKI made with openssl into $TB_PKI (generated once, kept across up/down): a CA, the apiserver serving cert,
# client certs for admin / kubelet / controller-manager / scheduler / apiserver->kubelet, the kubelet serving cert, the
# second node's and the vm node's kubelet client and serving certs (kubelet-ci*: `--nodes 2`, kubelet-vm*:
# `--node-vm`; made always, they cost nothing), the
# service-account key pair, and a kubeconfig per client.

_pki_key() { [[ -f $1 ]] || openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; chmod 600 "$1"; }

# _pki_cert NAME SUBJECT EXT: key + cert signed by the CA. EXT is an openssl extension section body.
_pki_cert() {
  local name=$1 subj=$2 ext=$3
  [[ -f $TB_PKI/$name.crt && -f $TB_PKI/$name.key ]] && return 0
  _pki_key "$TB_PKI/$name.key"
  printf '[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$ext" \
    >"$TB_PKI/$name.ext"
  openssl req -new -key "$TB_PKI/$name.key" -subj "$subj" -out "$TB_PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$TB_PKI/$name.csr" -CA "$TB_PKI/ca.crt" -CAkey "$TB_PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$TB_PKI/$name.ext" -extensions v3 -out "$TB_PKI/$name.crt" 2>/dev/null
  rm -f "$TB_PKI/$name.csr" "$TB_PKI/$name.ext"
}

_pki_kubeconfig() {
  local name=$1 user=$2
  local f=$TB_STATE/$name.kubeconfig
  [[ $name == admin ]] && f=$TB_KUBECONFIG
  write_if_changed "$f" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: dindcheck-testbed
  cluster:
    server: $TB_APISERVER
    certificate-authority-data: $(base64 -w0 "$TB_PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$TB_PKI/$name.crt")
    client-key-data: $(base64 -w0 "$TB_PKI/$name.key")
contexts:
- name: dindcheck-testbed
  context: {cluster: dindcheck-testbed, user: $user}
current-context: dindcheck-testbed
YAML
  chmod 600 "$f"
}

pki_ensure() {
  mkdir -p "$TB_PKI"
  chmod 700 "$TB_PKI"
  if [[ ! -f $TB_PKI/ca.crt ]]; then
    log "pki: generating CA and certificates in $TB_PKI"
    _pki_key "$TB_PKI/ca.key"
    openssl req -x509 -new -key "$TB_PKI/ca.key" -subj "/CN=dindcheck-testbed-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$TB_PKI/ca.crt" 2>/dev/null
  fi
  local client="extendedKeyUsage=clientAuth"
  _pki_cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$TB_NODE_IP,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  _pki_cert kubelet-serving "/CN=$TB_NODE_NAME" "extendedKeyUsage=serverAuth
subjectAltName=IP:$TB_NODE_IP,DNS:$TB_NODE_NAME"
  _pki_cert admin "/O=system:masters/CN=dindcheck-admin" "$client"
  _pki_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  _pki_cert kubelet "/O=system:nodes/CN=system:node:$TB_NODE_NAME" "$client"
  # The second node: its own identity for the Node authorizer and NodeRestriction (system:node:<its name>).
  _pki_cert kubelet-ci-serving "/CN=$TB_CI_NODE_NAME" "extendedKeyUsage=serverAuth
subjectAltName=IP:$TB_CI_NODE_IP,DNS:$TB_CI_NODE_NAME"
  _pki_cert kubelet-ci "/O=system:nodes/CN=system:node:$TB_CI_NODE_NAME" "$client"
  # The vm node (`--node-vm`), likewise.
  _pki_cert kubelet-vm-serving "/CN=$TB_VM_NODE_NAME" "extendedKeyUsage=serverAuth
subjectAltName=IP:$TB_VM_IP,DNS:$TB_VM_NODE_NAME"
  _pki_cert kubelet-vm "/O=system:nodes/CN=system:node:$TB_VM_NODE_NAME" "$client"
  _pki_cert controller-manager "/CN=system:kube-controller-manager" "$client"
  _pki_cert scheduler "/CN=system:kube-scheduler" "$client"
  if [[ ! -f $TB_PKI/sa.key ]]; then
    openssl genrsa -out "$TB_PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$TB_PKI/sa.key" -pubout -out "$TB_PKI/sa.pub" 2>/dev/null
    chmod 600 "$TB_PKI/sa.key"
  fi
  _pki_kubeconfig admin dindcheck-admin
  _pki_kubeconfig kubelet "system:node:$TB_NODE_NAME"
  _pki_kubeconfig kubelet-ci "system:node:$TB_CI_NODE_NAME"
  _pki_kubeconfig kubelet-vm "system:node:$TB_VM_NODE_NAME"
  _pki_kubeconfig controller-manager system:kube-controller-manager
  _pki_kubeconfig scheduler system:kube-scheduler
}
