# shellcheck shell=bash
# shellcheck disable=SC2034  # constants used by the other lib files and testbed/up, testbed/down
# Paths, logging and process helpers shared by testbed/up and testbed/down.
# Every process the testbed starts has a pid file under $TB_STATE/pids and a log under $TB_STATE/logs.

TB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB_LIB=$TB_DIR/lib
TB_STATE=$TB_DIR/.state
TB_PIDS=$TB_STATE/pids
TB_LOGS=$TB_STATE/logs
TB_PKI=$TB_STATE/pki
TB_CONF=$TB_STATE/conf
TB_VARLIB=/var/lib/dindcheck-testbed
TB_RUN=/run/dindcheck-testbed
TB_CACHE=${TESTBED_CACHE:-/var/cache/dindcheck-testbed}  # builds, images, venv: survive fresh clones
TB_BIN=$TB_CACHE/bin
TB_VENV=$TB_CACHE/venv
TB_KUBECONFIG=$TB_STATE/kubeconfig
TB_SOCK=$TB_RUN/containerd.sock
TB_BRIDGE=dcbr0
TB_NODE_IP=10.88.0.1
TB_NODE_NAME=dindcheck-node
TB_REGISTRY=$TB_NODE_IP:5000
TB_APISERVER=https://$TB_NODE_IP:6443
# The second node (`up --nodes 2`, lib/node-ci.sh): its own kubelet and containerd 2, a second IP on the bridge.
TB_CI_NODE_NAME=dindcheck-ci
TB_CI_NODE_IP=10.88.0.2
TB_CI_VARLIB=$TB_VARLIB/ci
TB_CI_RUN=$TB_RUN/ci
TB_CI_SOCK=$TB_CI_RUN/containerd.sock
TB_CI_BIN=$TB_BIN/containerd2 # build-containerd.sh's output: containerd, containerd-shim-runc-v2, ctr
TB_POOL_LABEL=dindcheck.io/pool
# The vm node (`up --node-vm`, lib/vm.sh): a QEMU guest on a tap device on the bridge.
TB_VM_NODE_NAME=dindcheck-vm
TB_VM_IP=10.88.0.3
TB_START_TIME=${TB_START_TIME:-$SECONDS}

log() { printf 'testbed: %s\n' "$*" >&2; }
warn() { printf 'testbed: WARNING: %s\n' "$*" >&2; }
die() { printf 'testbed: ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { echo "$((SECONDS - TB_START_TIME))s"; }

# run_logged LOGNAME CMD...: runs CMD with output appended to $TB_LOGS/LOGNAME.log; on failure shows the tail.
run_logged() {
  local name=$1; shift
  local logf=$TB_LOGS/$name.log
  mkdir -p "$TB_LOGS"
  if ! "$@" >>"$logf" 2>&1; then
    tail -n 20 "$logf" | sed 's/^/testbed:   | /' >&2
    die "$name failed: $* (full log: $logf)"
  fi
}

# wait_for DESC TIMEOUT_S LOGFILE CMD...: polls CMD every second until it succeeds.
wait_for() {
  local desc=$1 timeout=$2 logf=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      [[ -f $logf ]] && tail -n 20 "$logf" | sed 's/^/testbed:   | /' >&2
      die "timed out after ${timeout}s waiting for $desc (log: $logf)"
    fi
    sleep 1
  done
}

pidfile() { echo "$TB_PIDS/$1.pid"; }

# daemon_pid NAME: prints the pid of a running daemon we started, or fails.
# The pid file holds "PID EXE"; the process must still run that executable (guards against pid reuse).
daemon_pid() {
  local f; f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  local pid exe
  read -r pid exe <"$f" || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe" ]] || return 1
  echo "$pid"
}

close_inherited_fds() {  # in a subshell about to exec a daemon: close every descriptor above stderr
  local path fd
  for path in /proc/"$BASHPID"/fd/*; do
    fd=${path##*/}
    ((fd > 2)) && eval "exec ${fd}>&-" 2>/dev/null
  done
  return 0
}

# daemon_start NAME HASH CMD...: starts CMD in its own session unless it already runs with the same HASH
# (a digest of its command line and config files). Returns 0 when (re)started, 1 when it was already current.
daemon_start() {
  local name=$1 hash=$2; shift 2
  mkdir -p "$TB_PIDS" "$TB_LOGS"
  local hashf=$TB_PIDS/$name.hash
  if daemon_pid "$name" >/dev/null; then
    if [[ -f $hashf && $(<"$hashf") == "$hash" ]]; then
      return 1
    fi
    log "$name: configuration changed, restarting"
    daemon_stop "$name"
  fi
  local exe; exe=$(readlink -f "$(command -v "$1")")
  local logf=$TB_LOGS/$name.log
  printf '\n===== %s starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$logf"
  # The daemon outlives this script: it must not keep any descriptor the caller had open (a flock held around
  # `up`, a CI step's output pipe), or the caller's lock is never released and its pipe never reaches EOF.
  (close_inherited_fds; exec setsid "$@") </dev/null >>"$logf" 2>&1 &
  local pid=$!
  echo "$pid $exe" >"$(pidfile "$name")"
  echo "$hash" >"$hashf"
  sleep 0.2
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 20 "$logf" | sed 's/^/testbed:   | /' >&2
    die "$name exited right after start (log: $logf)"
  fi
  return 0
}

# Seconds a daemon gets between SIGTERM and SIGKILL. kube-apiserver finishes its graceful shutdown within a second
# or two but then keeps the process alive while HTTP/2 watch connections stay open (up to 60s): etcd holds its
# state, so it is killed soon after.
declare -A TB_STOP_TIMEOUT=([kube-apiserver]=4)

# daemon_stop NAME: TERM, then KILL after the daemon's timeout; removes the pid file.
daemon_stop() {
  local name=$1 timeout=${TB_STOP_TIMEOUT[$1]:-20} pid
  if pid=$(daemon_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) still running ${timeout}s after SIGTERM, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  fi
  rm -f "$(pidfile "$name")" "$TB_PIDS/$name.hash"
}

# hash_of STRING FILE...: a digest of a command line and the files it reads.
hash_of() {
  local s=$1; shift
  { printf '%s\n' "$s"; cat "$@" 2>/dev/null; } | sha256sum | cut -c1-16
}

# write_if_changed FILE: writes stdin to FILE only when it differs (keeps mtimes and hashes stable).
write_if_changed() {
  local f=$1 tmp
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  if [[ -f $f ]] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mv "$tmp" "$f"; fi
}

kctl() { "$TB_BIN/kubectl" --kubeconfig "$TB_KUBECONFIG" "$@"; }
