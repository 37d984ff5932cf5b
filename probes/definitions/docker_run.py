"""docker run: does a nested container start inside the DinD sidecar, from an image made in the pod?

No registry is needed: the job container packs its own busybox into a rootfs and `docker import`s it, then runs
it with --network none and on the default bridge. Storage driver, cgroup version, iptables backend and MTU are
recorded because they are what breaks nested runs (docs/probe-facts.md, "docker run inside DinD").

Then a nested container on the default bridge fetches a few MiB from outside the pod (a layer of the DinD image, from
the registry that served it), because that is what `docker build`'s RUN steps do:
- an inner MTU above the pod network's shows as a stall only when full-size segments cross a smaller hop: a stalled
  fetch is repeated on a nested network with the pod's MTU, and when that completes, once more on the default bridge
  (the control). Only a stall again proves `--mtu`; a stall is a WARNING on the pass, since nested containers do reach
  the network.
- a fetch that gets nothing through (no answer, no route, a name nested DNS cannot resolve) is repeated from the job
  container itself: when the pod gets the bytes and its nested containers do not, nested containers have no network
  and the check fails with the cause; when the pod cannot either, the pod network's reach is not DinD's doing and the
  transfer is "not measured".
"""

from __future__ import annotations

import contextlib
import shlex
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from probes import specs
from probes.definitions._docker import (
    API_VERSION_REMEDIATION,
    DAEMON_EXEC_S,
    NESTED_RUN,
    SELINUX_SOCKET_REMEDIATION,
    Payload,
    api_version_cause,
    daemon_wait_s,
    dockerd_ended,
    dockerd_log_tail,
    exec_refused_end_wait_s,
    last_words,
    locate_payload,
    selinux_socket_refusal,
    still_starting,
    still_starting_summary,
    wait_for_daemon,
)
from probes.engine import Outcome, ProbeContext, compact, key_values, named_cause
from probes.exceptions import ExecChannelError, PodNotRunningError
from probes.model import Facts, Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "Nested docker run needs the dockerd sidecar privileged, /var/lib/docker on a volume that supports overlay, "
    "and a working iptables backend: on nf_tables-only nodes set DOCKER_IPTABLES_LEGACY=1 or start dockerd with "
    "--iptables=false and run with --network none|host. On cgroup v2 the DinD entrypoint must move itself into a "
    "child cgroup (docker:dind does). If large transfers hang, pass dockerd --mtu to match the pod network."
)

HOST_FACTS = r"""
echo "iptables=$(iptables --version 2>&1 | head -n 1)"
echo "pod_mtu=$(cat /sys/class/net/eth0/mtu 2>/dev/null)"
echo "cgroup_fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
echo "cap_bnd=$(grep CapBnd /proc/self/status | cut -f2)"
for backend in legacy nft; do
  if ! command -v "iptables-$backend" >/dev/null 2>&1; then echo "iptables_$backend=absent"; continue; fi
  if out=$("iptables-$backend" -t nat -L -n 2>&1 >/dev/null); then echo "iptables_$backend=ok"
  else echo "iptables_$backend=$(echo "$out" | head -n 2 | tr '\n' ' ')"; fi
done
# what nested traffic needs to leave the pod: forwarding, and dockerd's MASQUERADE behind the pod's IP (either backend)
echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null)"
nat=""
for tool in iptables-legacy iptables-nft nft; do
  command -v "$tool" >/dev/null 2>&1 || continue
  if [ "$tool" = nft ]; then rules=$(nft list ruleset 2>/dev/null) || continue
  else rules=$("$tool" -t nat -S POSTROUTING 2>/dev/null) || continue; fi
  case $rules in *MASQUERADE*|*masquerade*) nat=present; break ;; *) nat=absent ;; esac
done
echo "nat_masquerade=${nat:-unknown}"
"""

# dockerd's own words when the image's iptables backend does not fit the node's kernel (docker-library/docker#463,
# #467, #486; actions-runner-controller#3158).
IPTABLES_FAILURES = (
    "failed to initialize nft",
    "table nat",
    "docker-isolation-stage",
    "failed to create nat chain",
    "iptables failed",
    "iptables: no chain",
)
IPTABLES_REMEDIATION = (
    "The DinD image's iptables backend does not work on this node's kernel: set DOCKER_IPTABLES_LEGACY=1 on the dind "
    "container (docker:dind >= 26) to use iptables-legacy, or start dockerd with --iptables=false and run nested "
    "containers with --network host or none."
)
MTU_REMEDIATION = (
    "The nested bridge's MTU {inner_mtu} is larger than the pod network's {pod_mtu}: large transfers from nested "
    "containers (pulls, package installs) can hang when nothing on the path clamps the segment size. Not proven "
    "here ({why}); if they hang, start dockerd with --mtu={pod_mtu}."
)
# dockerd's words when it takes AppArmor as on but cannot load its docker-default profile (moby pkg/aaparser and
# daemon/apparmor_default.go): a DinD image whose dockerd lacks containerd's "not in docker-in-docker" gate, with
# securityfs mounted, on an AppArmor node (docs/probe-facts.md, "DinD under AppArmor").
APPARMOR_LOAD_FAILURE = "docker-default profile could not be loaded"
APPARMOR_LOAD_REMEDIATION = (
    "The nested dockerd sees AppArmor on the node and tries to load its docker-default profile, but cannot (the DinD "
    "image has no apparmor_parser, or the pod's profile forbids loading one), so every unprivileged nested container "
    "fails. Run dockerd the way docker:dind does (its entrypoint's hack/dind exports container=docker, which makes "
    "dockerd apply no profile; Docker >= 23), or do not mount securityfs (/sys/kernel/security) in the dind "
    "container, or run nested containers with --security-opt apparmor=unconfined."
)
DEAD_DAEMON_REMEDIATION = (
    "dockerd exited as it started: its last words name what it refused or could not set up (a flag in the dind "
    "container's args, a variable in its env such as DOCKER_MIN_API_VERSION, a key in /etc/docker/daemon.json, the "
    "iptables backend). Change that on the dind container and run dindcheck again."
)
NESTED_DNS_REMEDIATION = (
    "Nested containers on dockerd's default bridge cannot resolve {host}, while the pod itself can: dockerd gives "
    "them the pod's resolv.conf without loopback nameservers (Google's 8.8.8.8 and 8.8.4.4 when none is left), "
    "reached through its NAT. Start dockerd with --dns=<a resolver the pod reaches, e.g. the cluster DNS Service IP> "
    "(docker build's RUN steps use it too), or its dns key in daemon.json."
)
NO_FORWARDING_REMEDIATION = (
    "IP forwarding is off in the pod's network namespace (net.ipv4.ip_forward=0), so nothing from the nested bridge "
    'leaves the pod. dockerd turns it on unless started with --ip-forward=false ("ip-forward": false in '
    "daemon.json): drop that, and whatever turns it off after dockerd starts."
)
NO_NAT_REMEDIATION = (
    "dockerd wrote no MASQUERADE rule for its bridge, so nested traffic leaves the pod with a source address the "
    'network cannot answer. dockerd writes it unless started with --iptables=false ("iptables": false in '
    "daemon.json): run it with iptables on; if it was turned off because the image's iptables backend does not fit "
    "the node, set DOCKER_IPTABLES_LEGACY=1 on the dind container (docker:dind >= 26) instead. Without NAT only "
    "--network host reaches out."
)
NESTED_NAT_REMEDIATION = (
    "Nested traffic leaves through dockerd's NAT (a MASQUERADE rule behind the pod's IP) with IP forwarding on in the "
    "pod, and the pod itself reaches {registry}: look for what drops forwarded traffic in the pod's network "
    "namespace (iptables-save and nft list ruleset in the dind container: rules of a second iptables backend, a "
    "service mesh's init container), and make sure dockerd's own iptables backend works on this node "
    "(DOCKER_IPTABLES_LEGACY=1 on nodes without nf_tables)."
)
EGRESS_REMEDIATION = (
    "A nested container on dockerd's default bridge could not finish fetching from {registry}, and the MTU does not "
    "explain it ({why}). Check what the pod network lets nested containers reach (NetworkPolicy, egress proxies, "
    "NAT), with the same fetch from the job container itself."
)

# One fetch of the payload (busybox wget into head -c), watching the byte count: no growth for XFER_STALL_S is a stall
# (a path that drops full-size segments shows exactly that), XFER_MAX_S ends a slow transfer. A fetch still waiting
# names its TCP states (SYN_SENT: nothing ever answered). The fetch is detached from the output, so one left running
# never holds the exec channel open. Run as root in a nested container (files in /), or in the job container
# (XFER_DIR a temporary directory, XFER_BUSYBOX the job image's busybox).
FETCH = r"""
b=${XFER_BUSYBOX:-/bin/busybox}; w=${XFER_DIR:-}
now() { read -r up _ </proc/uptime; echo "$up"; }
size() { n=$($b wc -c <"$w/payload" 2>/dev/null) || n=0; echo $((n + 0)); }
echo "xfer_mtu=$($b cat /sys/class/net/eth0/mtu)"
t0=$(now)
(
  if [ -n "$XFER_HEADER" ]; then $b wget -S -O - --header "$XFER_HEADER" "$XFER_URL" 2>"$w/wget.err"
  else $b wget -S -O - "$XFER_URL" 2>"$w/wget.err"; fi | $b head -c "$XFER_BYTES" >"$w/payload"
  now >"$w/done"
) >/dev/null 2>&1 &
last=0; still=0; waited=0
while [ ! -s "$w/done" ]; do
  $b sleep 1; waited=$((waited + 1)); n=$(size)
  if [ "$n" -gt "$last" ]; then last=$n; still=0; else still=$((still + 1)); fi
  if [ "$still" -ge "$XFER_STALL_S" ] || [ "$waited" -ge "$XFER_MAX_S" ]; then break; fi
done
n=$(size)
if [ -s "$w/done" ]; then
  end=$($b cat "$w/done"); if [ "$n" -ge "$XFER_BYTES" ]; then state=complete; else state=broken; fi
elif [ "$still" -ge "$XFER_STALL_S" ]; then end=$(now); state=stalled
else end=$(now); state=slow; fi
echo "xfer=$state"
echo "xfer_bytes=$n"
echo "xfer_s=$($b awk -v a="$t0" -v b="$end" 'BEGIN{printf "%.2f", b-a}')"
echo "xfer_response=$($b grep '^ *HTTP/' "$w/wget.err" | $b tail -n 1 | $b tr -d '\r' | $b sed 's/^ *//')"
[ -s "$w/done" ] || echo "xfer_tcp=$($b awk 'FNR > 1 && $4 != "0A" {print $4}' /proc/net/tcp /proc/net/tcp6 \
  2>/dev/null | $b sort -u | $b tr '\n' ' ')"
[ "$state" = complete ] || echo "xfer_error=$($b grep -v -e '^ ' -e 'Connecting to' -e 'writing to' \
  -e 'validation not implemented' -e '%' "$w/wget.err" | $b tail -n 2 | $b tr '\n' ' ')"
"""
# Run in the job container: FETCH by a nested container on the default bridge, or on a network created with XFER_MTU.
TRANSFER = (
    r"""
net=""
if [ -n "$XFER_MTU" ]; then
  docker network rm dindcheck-mtu >/dev/null 2>&1
  if ! out=$(docker network create -o "com.docker.network.driver.mtu=$XFER_MTU" dindcheck-mtu 2>&1); then
    echo "xfer=not_run"; echo "xfer_error=docker network create: $(echo "$out" | tr '\n' ' ')"; exit 0
  fi
  net="--network=dindcheck-mtu"
fi
nested=$(cat <<'NESTED'
"""
    + FETCH
    + r"""NESTED
)
out=$(docker run --rm $net -e XFER_URL -e XFER_HEADER -e XFER_BYTES -e XFER_STALL_S -e XFER_MAX_S \
  dindcheck-probe:local /bin/busybox sh -c "$nested" 2>&1)
echo "$out" | grep '^xfer'
if ! echo "$out" | grep -q '^xfer='; then
  echo "xfer=not_run"; echo "xfer_error=docker run: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
fi
[ -z "$net" ] || docker network rm dindcheck-mtu >/dev/null 2>&1
exit 0
"""
)
# Run in the job container: FETCH by the job container itself, across the pod network (the control for a nested
# fetch that got nothing through). The same busybox wget the nested image was made from.
POD_FETCH = (
    r"""
XFER_DIR=$(mktemp -d 2>/dev/null)
if [ -z "$XFER_DIR" ]; then echo "xfer=not_run"; echo "xfer_error=mktemp -d failed in the job container"; exit 0; fi
XFER_BUSYBOX=$(command -v busybox || echo /bin/busybox)
"""
    + FETCH
)
TRANSFER_STALL_S = 10
TRANSFER_MAX_S = 60
MTU_NETWORK_OPTION = "com.docker.network.driver.mtu"
# The nested busybox wget's words when it cannot speak https: built without TLS, or Alpine's helper missing.
NO_HTTPS = ("not an http or ftp url", "can't execute 'ssl_client'", "can't execute 'openssl'")
# busybox wget's words (and musl's, glibc's) when a name does not resolve.
NO_NAME = ("bad address", "unknown host", "name or service not known", "temporary failure in name resolution")
TCP_STATES = {
    "01": "established",
    "02": "syn_sent",
    "03": "syn_recv",
    "04": "fin_wait1",
    "05": "fin_wait2",
    "06": "time_wait",
    "07": "close",
    "08": "close_wait",
    "09": "last_ack",
    "0B": "closing",
}
"""/proc/net/tcp's state column of a fetch still waiting (LISTEN left out)."""


def iptables_cause(text: str) -> str:
    """The iptables failure in dockerd's words, when text has one ('' otherwise)."""
    lowered = text.lower()
    if not any(marker in lowered for marker in IPTABLES_FAILURES):
        return ""
    return f"the DinD image's iptables backend does not work on this node: {compact(text, 240)}"


def apparmor_load_cause(text: str) -> str:
    """The nested dockerd's failure to load docker-default, in its own words, when text has it ('' otherwise)."""
    if APPARMOR_LOAD_FAILURE not in text.lower():
        return ""
    return (
        "the nested dockerd takes AppArmor as enabled on this node but cannot load its docker-default profile: "
        f"{compact(text, 240)}"
    )


DEGRADED_DRIVERS = ("vfs", "fuse-overlayfs", "native")


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """A DinD pod; from the unprivileged job container: wait for dockerd, import an image, run it twice.

    Then a nested container fetches a payload from the DinD image's registry (located meanwhile, from this machine).
    """
    spec = specs.dind_pod_spec(
        settings.images, settings.resources, job_uid=settings.job_uid, dind_env=settings.dind_env
    )
    manifest = ctx.pod_manifest("run", spec)
    name = manifest["metadata"]["name"]
    evidence: dict[str, Any] = {}
    locator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="payload")
    try:
        located = locator.submit(locate_payload, settings.images.dind)
        ctx.say(f"creating pod {name}")
        ctx.create_pod(manifest)
        try:
            _probe(ctx, name, located, evidence)
        finally:
            ctx.delete_pod(name)
    finally:
        locator.shutdown(wait=False, cancel_futures=True)
    outcome = verdict(evidence)
    tested = specs.record_remedied(
        Mode.DIND, specs.CLASSIC, spec, proven=outcome.status is Status.PASS, remedies=proven_remedies(evidence)
    )
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=(tested,)))


def _probe(ctx: ProbeContext, name: str, located: Future[Payload], evidence: dict[str, Any]) -> None:
    """Everything done in the running pod; a dockerd that died is read from its container before the pod goes."""
    try:
        ctx.wait_running(name)
    except PodNotRunningError:
        if not dockerd_ended(ctx, name, evidence):
            raise
        return
    ctx.say("waiting for dockerd")
    daemon = key_values(ctx.exec(name, "job", wait_for_daemon(daemon_wait_s(ctx)), timeout_s=DAEMON_EXEC_S).stdout)
    evidence["daemon"] = daemon.get("daemon", "unknown")
    kept = ("client_version", "client_api", "daemon_wait_s", "client_label")
    evidence.update({key: daemon[key] for key in kept if daemon.get(key)})
    if not _host_facts(ctx, name, evidence):
        return
    if daemon.get("daemon") != "ok":
        evidence["daemon_error"] = daemon.get("daemon_error", "")
        evidence["dockerd_log"] = dockerd_log_tail(ctx, name)
        return
    ctx.say("importing an image made in the pod and running it")
    result = ctx.exec(name, "job", NESTED_RUN, timeout_s=120)
    evidence.update(key_values(result.stdout))
    if "import" not in evidence:
        evidence["script_error"] = result.tail() or f"the script exited {result.rc} and printed nothing"
    if evidence.get("run_bridge") == "ok":
        _measure_transfer(ctx, name, located, evidence)
    elif _daemon_lost(ctx, name, evidence):
        return


DAEMON_ALIVE = "if docker version >/dev/null 2>&1; then echo alive=yes; else echo alive=no; fi"
DAEMON_GONE_WAIT_S = 20
"""How long a dockerd that stopped answering gets for its container's end to show in the pod's status."""


def _daemon_lost(ctx: ProbeContext, name: str, evidence: dict[str, Any]) -> bool:
    """After a nested step failed: is dockerd, which answered before, gone? Then the failure is not its answer.

    A dockerd killed mid-probe (the node's runtime restarting, the OOM killer) fails every later command; that proves
    nothing about DinD. Its container's end is waited for (bounded): the kubelet reports it a moment later.
    """
    try:
        alive = key_values(ctx.exec(name, "job", DAEMON_ALIVE, timeout_s=15).stdout).get("alive", "unknown")
    except ExecChannelError as exc:
        alive = f"unknown ({compact(str(exc), 160)})"
    if alive == "yes":
        return False
    dockerd_ended(ctx, name, evidence, settle_s=DAEMON_GONE_WAIT_S)
    ended = evidence.get("dockerd_exit") or {}
    evidence["dockerd_lost"] = (
        f"its container exited {ended['exit_code']} ({ended.get('reason') or 'Error'})"
        if ended
        else f"it no longer answers (alive={alive}) and its container still shows running"
    )
    return True


def _host_facts(ctx: ProbeContext, name: str, evidence: dict[str, Any]) -> bool:
    """HOST_FACTS from the dind container; False when dockerd's container has ended (its exit recorded instead).

    An exec into a dead container fails on the channel: that proves nothing, the container's own state does.
    """
    if dockerd_ended(ctx, name, evidence):
        return False
    try:
        result = ctx.exec(name, "dind", HOST_FACTS, timeout_s=20)
    except ExecChannelError:
        if dockerd_ended(ctx, name, evidence, settle_s=exec_refused_end_wait_s(ctx)):
            return False
        raise
    evidence.update(key_values(result.stdout))
    return True


LOCATE_WAIT_S = 45.0
"""How long the nested run waits for the payload's location (a few registry requests of LOCATE_TIMEOUT_S each)."""


def _measure_transfer(ctx: ProbeContext, name: str, located: Future[Payload], evidence: dict[str, Any]) -> None:
    """The payload through a nested container on the default bridge, then what tells its failures apart.

    After a stall above the pod's MTU: the same fetch on a nested network with the pod's MTU, and when that completes,
    on the default bridge again (the control: only a second stall proves the MTU). After a fetch that got nothing
    through: the same fetch from the job container itself (does the pod reach the registry at all?).
    """
    try:
        payload = located.result(timeout=LOCATE_WAIT_S)
    except TimeoutError:
        payload = Payload(error=f"the registry did not answer within {LOCATE_WAIT_S:.0f}s")
    transfer: dict[str, Any] = {"payload": payload.to_evidence(), "stall_s": TRANSFER_STALL_S}
    evidence["transfer"] = transfer
    if payload.error:
        transfer.update(state="not_measured", error=f"the payload could not be located: {payload.error}")
        return
    ctx.say(f"a nested container fetches {payload.size} bytes from {payload.registry}")
    transfer.update(_transfer(ctx, name, payload, TRANSFER))
    pod_mtu, inner_mtu = _mtus(evidence)
    if transfer["state"] == "stalled" and inner_mtu > pod_mtu > 0:
        ctx.say(f"the nested transfer stalled: again on a nested network with MTU {pod_mtu}")
        remedy = {"network_option": f"{MTU_NETWORK_OPTION}={pod_mtu}"}
        remedy.update(_transfer(ctx, name, payload, TRANSFER, mtu=str(pod_mtu)))
        evidence["transfer_remedy"] = remedy
        if remedy["state"] == "complete":
            ctx.say("the pod's MTU fixed it: the default bridge once more, as the control")
            evidence["transfer_control"] = _transfer(ctx, name, payload, TRANSFER)
            return
    if got_nothing(transfer):
        ctx.say("nothing reached the nested container: the same fetch from the job container itself")
        evidence["transfer_pod"] = _transfer(ctx, name, payload, POD_FETCH)


def _transfer(ctx: ProbeContext, name: str, payload: Payload, script: str, *, mtu: str = "") -> dict[str, Any]:
    """One run of a fetch script; an exec channel that fails proves nothing about the transfer: not measured."""
    env = {
        "XFER_URL": payload.url,
        "XFER_HEADER": payload.header,
        "XFER_BYTES": str(payload.size),
        "XFER_STALL_S": str(TRANSFER_STALL_S),
        "XFER_MAX_S": str(TRANSFER_MAX_S),
        "XFER_MTU": mtu,
    }
    exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
    try:
        result = ctx.exec(name, "job", exports + script, timeout_s=TRANSFER_MAX_S + 30)
    except ExecChannelError as exc:
        return {"state": "not_measured", "bytes_wanted": payload.size, "error": f"the exec channel failed: {exc}"}
    return {"bytes_wanted": payload.size, **transfer_result(key_values(result.stdout), result.tail())}


def transfer_result(values: dict[str, str], tail: str) -> dict[str, Any]:
    """One transfer as the fetching side reported it (pure, over FETCH's KEY=VALUE output)."""
    state = values.get("xfer") or "not_run"
    found: dict[str, Any] = {"state": state}
    if values.get("xfer_bytes", "").isdigit():
        found["bytes"] = int(values["xfer_bytes"])
    with contextlib.suppress(KeyError, ValueError):
        found["seconds"] = float(values["xfer_s"])
    if values.get("xfer_mtu", "").isdigit():
        found["mtu"] = int(values["xfer_mtu"])
    if values.get("xfer_response"):
        found["response"] = values["xfer_response"]
    tcp = sorted({TCP_STATES.get(code.upper(), code) for code in values.get("xfer_tcp", "").split()})
    if tcp:
        found["tcp"] = tcp
    error = values.get("xfer_error", "").strip()
    if not error and state not in ("complete", "stalled", "slow"):
        error = tail or "the transfer script printed nothing"
    if error:
        found["error"] = error
    return found


def got_nothing(transfer: dict[str, Any]) -> bool:
    """A fetch that ended or stalled with no byte and no HTTP answer: the network, not the registry, stopped it.

    Not when the fetching busybox cannot speak https at all (that is the probe's helper, not the network).
    """
    if transfer.get("state") not in ("broken", "stalled") or transfer.get("bytes") or transfer.get("response"):
        return False
    return not named_cause(str(transfer.get("error", "")), ((NO_HTTPS, "x"),))


def _mtus(evidence: dict[str, Any]) -> tuple[int, int]:
    """(pod eth0 MTU, nested default-bridge MTU); 0 where unknown."""
    pod, inner = str(evidence.get("pod_mtu", "")), str(evidence.get("inner_mtu", ""))
    return (int(pod) if pod.isdigit() else 0), (int(inner) if inner.isdigit() else 0)


def _size(count: object) -> str:
    number = int(count) if isinstance(count, int | str) and str(count).isdigit() else 0
    return f"{number / 1048576:.1f} MiB" if number >= 1048576 else f"{number} bytes"


@dataclass(frozen=True)
class TransferFinding:
    """What the nested transfer adds to the summary, and the remediation it calls for ('' for none)."""

    clause: str
    remediation: str = ""
    fails: bool = False
    """Nested containers have no network while the pod has: the check fails."""


def transfer_finding(evidence: dict[str, Any]) -> TransferFinding:
    """The nested transfer, in words: completed, stalled (and whether the pod's MTU fixed it), or not measured.

    Pure, over the evidence. Only a completed transfer is stated as one; a stall is a WARNING; a fetch that got
    nothing through while the pod's own fetch completed fails the check; anything else is "transfer not measured"
    with its cause. The MTU remedy is called proven only when the retry completed and the control stalled again.
    """
    transfer = evidence.get("transfer") or {"state": "not_measured", "error": "not tried"}
    pod_mtu, inner_mtu = _mtus(evidence)
    mismatch = bool(pod_mtu and inner_mtu and inner_mtu > pod_mtu)
    registry = (transfer.get("payload") or {}).get("registry") or "the DinD image's registry"
    state = transfer.get("state")
    seconds = transfer.get("seconds", "?")
    if state == "complete":
        clause = (
            f"a nested container on the default bridge (MTU {transfer.get('mtu', inner_mtu or '?')}) fetched "
            f"{_size(transfer.get('bytes'))} from {registry} in {seconds}s"
        )
        if mismatch:
            clause += f", although that MTU exceeds the pod network's {pod_mtu} (this path copes with it)"
        return TransferFinding(clause)
    fixed = (evidence.get("transfer_remedy") or {}).get("state") == "complete"
    if got_nothing(transfer) and not fixed and evidence.get("transfer_pod"):
        return _nothing_through(evidence, transfer, registry)
    if state == "stalled":
        clause = (
            f"WARNING: a nested container on the default bridge (MTU {transfer.get('mtu', inner_mtu or '?')}) stalled "
            f"fetching {_size(transfer.get('bytes_wanted'))} from {registry}: it got {_size(transfer.get('bytes'))}, "
            f"then nothing for {transfer.get('stall_s', TRANSFER_STALL_S)}s"
        )
        return _after_stall(clause, evidence, pod_mtu, inner_mtu, registry)
    if state == "slow":
        return TransferFinding(
            f"a nested transfer from {registry} moved {_size(transfer.get('bytes'))} of "
            f"{_size(transfer.get('bytes_wanted'))} in {seconds}s and was stopped still moving (slow, not stalled)"
        )
    error = compact(str(transfer.get("error", "")), 200)
    cause = f"the nested busybox wget cannot fetch https: {error}" if named_cause(error, ((NO_HTTPS, "x"),)) else error
    clause = f"transfer not measured: {cause}"
    if mismatch:
        return TransferFinding(
            f"WARNING: the nested bridge's MTU {inner_mtu} exceeds the pod network's {pod_mtu} ({clause})",
            MTU_REMEDIATION.format(inner_mtu=inner_mtu, pod_mtu=pod_mtu, why="transfer not measured"),
        )
    return TransferFinding(clause)


def _what_came(transfer: dict[str, Any]) -> str:
    """Why a fetch got nothing, in its own words: wget's error, or what its connection showed while it waited."""
    if transfer.get("state") == "broken" and transfer.get("error"):
        return compact(str(transfer["error"]), 200)
    tcp = transfer.get("tcp") or []
    waited = transfer.get("stall_s", TRANSFER_STALL_S)
    if "syn_sent" in tcp and "established" not in tcp:
        return f"its connection got no answer in {waited}s (SYN sent, nothing came back)"
    if "established" in tcp:
        return f"it connected, then received nothing for {waited}s"
    return f"nothing arrived in {waited}s"


def _nothing_through(evidence: dict[str, Any], transfer: dict[str, Any], registry: str) -> TransferFinding:
    """A nested fetch that got nothing through, judged by the pod's own fetch of the same bytes.

    The pod got them: nested containers have no network (the check fails, with the cause the pod's facts show). The
    pod did not either: the pod network's reach, not DinD's (not measured). The pod's fetch not run: nothing concluded.
    """
    nested = f"a nested container on the default bridge got nothing from {registry}: {_what_came(transfer)}"
    pod = evidence["transfer_pod"]
    if pod.get("state") == "complete":
        clause = f"{nested}, while the pod itself fetched {_size(pod.get('bytes'))} in {pod.get('seconds', '?')}s"
        if named_cause(str(transfer.get("error", "")), ((NO_NAME, "x"),)):
            host = urllib.parse.urlsplit(str((transfer.get("payload") or {}).get("url", ""))).hostname or registry
            return TransferFinding(f"{clause}: nested DNS", NESTED_DNS_REMEDIATION.format(host=host), fails=True)
        if evidence.get("ip_forward") == "0":
            return TransferFinding(f"{clause}: IP forwarding is off in the pod", NO_FORWARDING_REMEDIATION, fails=True)
        if evidence.get("nat_masquerade") == "absent":
            return TransferFinding(
                f"{clause}: dockerd set up no NAT for its bridge (no MASQUERADE rule in the pod)",
                NO_NAT_REMEDIATION,
                fails=True,
            )
        return TransferFinding(clause, NESTED_NAT_REMEDIATION.format(registry=registry), fails=True)
    if pod.get("state") in ("not_measured", "not_run"):
        why = compact(str(pod.get("error", "")), 160)
        return TransferFinding(
            f"transfer not measured: {nested}, and the same fetch from the job container could not be run ({why})"
        )
    return TransferFinding(
        f"transfer not measured: {nested}, and the pod itself got nothing either ({_what_came(pod)}): what the pod "
        "network reaches, not DinD's doing"
    )


def _after_stall(clause: str, evidence: dict[str, Any], pod_mtu: int, inner_mtu: int, registry: str) -> TransferFinding:
    remedy = evidence.get("transfer_remedy")
    if remedy is None:
        why = f"the nested MTU {inner_mtu or '?'} does not exceed the pod network's {pod_mtu or '?'}"
        return TransferFinding(
            f"{clause} ({why}: not an MTU mismatch)", EGRESS_REMEDIATION.format(registry=registry, why=why)
        )
    if remedy.get("state") == "complete":
        proof = (
            f"on a nested network with MTU {remedy.get('mtu', pod_mtu)} the same transfer completed "
            f"({_size(remedy.get('bytes'))} in {remedy.get('seconds', '?')}s)"
        )
        control = evidence.get("transfer_control") or {"state": "not_measured", "error": "not run"}
        if mtu_remedy_proven(evidence):
            evidence["mtu_remedy_proven"] = pod_mtu
            proof += f", and on the default bridge once more it stalled again ({_size(control.get('bytes'))})"
            return TransferFinding(
                f"{clause}; {proof}",
                f"Proven on this cluster: a nested container's transfer stalled on dockerd's default bridge (MTU "
                f"{inner_mtu}, above the pod network's {pod_mtu}), {proof} ({remedy.get('network_option', '')}). "
                f"Start dockerd with --mtu={pod_mtu} (append it to the dind container's args) so the default bridge, "
                "and the containers of docker build's RUN steps, use the pod network's MTU.",
            )
        if control.get("state") == "complete":
            why = (
                f"the default bridge then completed it too ({_size(control.get('bytes'))} in "
                f"{control.get('seconds', '?')}s): a one-off stall, not proven to be the MTU"
            )
        else:
            detail = control.get("error") or control.get("state", "?")
            why = f"the control run on the default bridge did not stall again ({compact(str(detail), 160)})"
        return TransferFinding(
            f"{clause}; {proof}, but {why}",
            MTU_REMEDIATION.format(inner_mtu=inner_mtu, pod_mtu=pod_mtu, why="the stall did not repeat"),
        )
    outcome = remedy.get("state", "?")
    detail = remedy.get("error") or f"{_size(remedy.get('bytes'))} in {remedy.get('seconds', '?')}s"
    why = f"on a nested network with MTU {pod_mtu} it did not complete either ({outcome}: {compact(str(detail), 160)})"
    return TransferFinding(f"{clause}; {why}", EGRESS_REMEDIATION.format(registry=registry, why=why))


def mtu_remedy_proven(evidence: dict[str, Any]) -> int:
    """The pod MTU that fixed a stall on the default bridge, which then stalled again (0: not proven).

    Stalled, completed on a nested network with the pod's MTU, stalled again on the default bridge: a stall that
    does not repeat is a one-off, not the MTU.
    """
    pod_mtu, inner_mtu = _mtus(evidence)
    stalled = (evidence.get("transfer") or {}).get("state") == "stalled"
    completed = (evidence.get("transfer_remedy") or {}).get("state") == "complete"
    again = (evidence.get("transfer_control") or {}).get("state") == "stalled"
    return pod_mtu if stalled and completed and again and inner_mtu > pod_mtu > 0 else 0


def proven_remedies(evidence: dict[str, Any]) -> tuple[str, ...]:
    """Remedies the probe proved, for the config to paste (comments beside the spec, never inside it)."""
    pod_mtu = mtu_remedy_proven(evidence)
    if not pod_mtu:
        return ()
    _, inner_mtu = _mtus(evidence)
    remedy = (
        f"--mtu={pod_mtu}: PROVEN by docker-run on this cluster: a nested container's transfer stalled on dockerd's "
        f"default bridge (MTU {inner_mtu}), completed on a nested network with MTU {pod_mtu} and stalled again on the "
        f"default bridge. Append --mtu={pod_mtu} to the dind container's args (the spec below ran without it)."
    )
    return (remedy,)


def _dead_daemon(evidence: dict[str, Any]) -> Outcome:
    """The daemon's container terminated: its exit and its own last words (the iptables cause named when it is one)."""
    ended = evidence["dockerd_exit"]
    log = str(ended.get("log", ""))
    what = "dockerd did not start" if evidence.get("daemon") != "ok" else "dockerd exited"
    words = last_words(log) or str(ended.get("message", ""))
    cause = iptables_cause(words) or iptables_cause(log)
    if cause:
        return Outcome(Status.FAIL, f"{what}: {cause}", evidence, remediation=IPTABLES_REMEDIATION)
    return Outcome(
        Status.FAIL,
        f"{what}: its container exited {ended.get('exit_code', '?')} ({ended.get('reason') or 'Error'}); "
        f"dockerd's last words: {compact(words, 240) or 'none (it logged nothing)'}",
        evidence,
        remediation=DEAD_DAEMON_REMEDIATION,
    )


def _runs(evidence: dict[str, Any]) -> str:
    """Which nested runs worked: the bridge's (the check's claim), and --network none's only when it did."""
    if evidence.get("run_none") == "ok":
        return "on the bridge and with --network none"
    return f"on the bridge (with --network none it failed: {compact(str(evidence.get('run_none_error', '')), 160)})"


def verdict(evidence: dict[str, Any]) -> Outcome:
    """Pass only when a nested container ran on the default bridge and reached the network if a fetch could tell.

    Pure, over the recorded evidence. A nested fetch that got nothing through while the pod's own fetch completed
    fails the check; otherwise the transfer adds a clause (a WARNING when it stalled) and the remediation.
    """
    store = " (containerd image store)" if evidence.get("image_store") == "containerd" else ""
    facts = (
        f"Docker {evidence.get('server_version') or '?'}, driver {evidence.get('driver', '?')}{store}, "
        f"cgroup v{evidence.get('cgroup_version', '?')}, {evidence.get('iptables', 'iptables ?')}, "
        f"pod MTU {evidence.get('pod_mtu', '?')}"
    )
    if evidence.get("driver") in DEGRADED_DRIVERS:
        facts += f" (storage driver {evidence['driver']} is slow/degraded: overlay2 or overlayfs expected)"
    backends = {b: evidence.get(f"iptables_{b}", "?") for b in ("legacy", "nft")}
    evidence["iptables_backends"] = backends
    if evidence.get("dockerd_lost"):
        return Outcome(
            Status.INCONCLUSIVE,
            f"dockerd answered, then stopped mid-probe: {evidence['dockerd_lost']}; what failed after it proves "
            f"nothing about DinD; {facts}",
            evidence,
        )
    if evidence.get("dockerd_exit"):
        return _dead_daemon(evidence)
    if evidence.get("daemon") == "api_refused":
        cause = api_version_cause(str(evidence.get("daemon_error", ""))) or str(evidence.get("daemon_error", ""))
        return Outcome(
            Status.FAIL,
            f"{cause} (job CLI {evidence.get('client_version') or '?'}, API {evidence.get('client_api') or '?'})",
            evidence,
            remediation=API_VERSION_REMEDIATION,
        )
    if evidence.get("daemon") != "ok":
        log = str(evidence.get("dockerd_log", ""))
        cause = iptables_cause(log)
        if cause:
            return Outcome(Status.FAIL, f"dockerd did not start: {cause}", evidence, remediation=IPTABLES_REMEDIATION)
        # a daemon that says it listens started: the job's trouble is reaching it
        started = "dockerd runs (its log: API listen on)" if "api listen on" in log.lower() else ""
        refusal = selinux_socket_refusal(str(evidence.get("daemon_error", "")), str(evidence.get("client_label", "")))
        if refusal:
            return Outcome(
                Status.FAIL, f"{started or 'dockerd'}, but {refusal}", evidence, remediation=SELINUX_SOCKET_REMEDIATION
            )
        if still_starting(str(evidence.get("daemon_error", "")), log):
            return Outcome(
                Status.INCONCLUSIVE, still_starting_summary("dockerd", evidence.get("daemon_wait_s"), log), evidence
            )
        return Outcome(
            Status.FAIL,
            f"{started + ', but the job never reached it' if started else 'dockerd did not start'}: "
            f"{evidence.get('daemon_error', '')}; log: {log}",
            evidence,
        )
    if evidence.get("import") != "ok":
        cause = evidence.get("import_error") or evidence.get("script_error", "the script did not finish")
        return Outcome(Status.FAIL, f"could not import an image into the nested dockerd: {cause}; {facts}", evidence)
    if evidence.get("run_bridge") == "ok":
        pod_mtu, inner_mtu = _mtus(evidence)
        if pod_mtu and inner_mtu and inner_mtu > pod_mtu:
            evidence["mtu_mismatch"] = True
        finding = transfer_finding(evidence)
        if finding.fails:
            return Outcome(
                Status.FAIL,
                f"nested containers run {_runs(evidence)}, but have no network: {finding.clause}; {facts}",
                evidence,
                remediation=finding.remediation,
            )
        return Outcome(
            Status.PASS,
            f"nested docker run works {_runs(evidence)}; {finding.clause}; {facts}",
            evidence,
            remediation=finding.remediation,
        )
    if evidence.get("run_none") == "ok":
        bridge_error = str(evidence.get("run_bridge_error", ""))
        cause = iptables_cause(bridge_error)
        return Outcome(
            Status.FAIL,
            f"nested docker run works only with --network none; bridge: {cause or bridge_error}; {facts}",
            evidence,
            remediation=IPTABLES_REMEDIATION if cause else None,
        )
    run_error = str(evidence.get("run_none_error", ""))
    cause = apparmor_load_cause(run_error)
    if cause:
        return Outcome(
            Status.FAIL, f"nested docker run fails: {cause}; {facts}", evidence, remediation=APPARMOR_LOAD_REMEDIATION
        )
    return Outcome(Status.FAIL, f"nested docker run fails: {run_error}; {facts}", evidence)


PROBE = ProbeDefinition(
    id="docker-run",
    capability="docker-run",
    title="a nested docker run works inside the DinD sidecar",
    remediation=REMEDIATION,
    run=run,
)
