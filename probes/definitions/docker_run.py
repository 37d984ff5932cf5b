"""docker run: does a nested container start inside the DinD sidecar, from an image made in the pod?

No registry is needed: the job container packs its own busybox into a rootfs and `docker import`s it, then runs
it with --network none and on the default bridge. Storage driver, cgroup version, iptables backend and MTU are
recorded because they are what breaks nested runs (docs/probe-facts.md, "docker run inside DinD").

Then a nested container on the default bridge fetches a few MiB from outside the pod (a layer of the DinD image, from
the registry that served it): an inner MTU above the pod network's shows as a stall only when full-size segments
cross a smaller hop, so the transfer is the proof, and a stalled one is repeated on a nested network with the pod's
MTU to prove the remedy. The transfer never decides the status; it adds a WARNING, or "transfer not measured".
"""

from __future__ import annotations

import contextlib
import shlex
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from probes import specs
from probes.definitions._docker import (
    API_VERSION_REMEDIATION,
    NESTED_RUN,
    WAIT_FOR_DAEMON,
    Payload,
    api_version_cause,
    dockerd_log_tail,
    locate_payload,
)
from probes.engine import Outcome, ProbeContext, compact, key_values, named_cause
from probes.exceptions import ExecChannelError
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
EGRESS_REMEDIATION = (
    "A nested container on dockerd's default bridge could not finish fetching from {registry}, and the MTU does not "
    "explain it ({why}). Check what the pod network lets nested containers reach (NetworkPolicy, egress proxies, "
    "NAT), with the same fetch from the job container itself."
)

# Run in the job container: one fetch of the payload by a nested container (busybox wget into head -c), on the default
# bridge, or on a network created with XFER_MTU. The nested side watches the byte count: no growth for XFER_STALL_S
# is a stall (a path that drops full-size segments shows exactly that), XFER_MAX_S ends a slow transfer.
TRANSFER = r"""
net=""
if [ -n "$XFER_MTU" ]; then
  docker network rm dindcheck-mtu >/dev/null 2>&1
  if ! out=$(docker network create -o "com.docker.network.driver.mtu=$XFER_MTU" dindcheck-mtu 2>&1); then
    echo "xfer=not_run"; echo "xfer_error=docker network create: $(echo "$out" | tr '\n' ' ')"; exit 0
  fi
  net="--network=dindcheck-mtu"
fi
nested=$(cat <<'NESTED'
b=/bin/busybox
now() { read -r up _ </proc/uptime; echo "$up"; }
size() { n=$($b wc -c </payload 2>/dev/null) || n=0; echo $((n + 0)); }
echo "xfer_mtu=$($b cat /sys/class/net/eth0/mtu)"
t0=$(now)
(
  if [ -n "$XFER_HEADER" ]; then $b wget -S -O - --header "$XFER_HEADER" "$XFER_URL" 2>/wget.err
  else $b wget -S -O - "$XFER_URL" 2>/wget.err; fi | $b head -c "$XFER_BYTES" >/payload
  now >/done
) &
last=0; still=0; waited=0
while [ ! -s /done ]; do
  $b sleep 1; waited=$((waited + 1)); n=$(size)
  if [ "$n" -gt "$last" ]; then last=$n; still=0; else still=$((still + 1)); fi
  if [ "$still" -ge "$XFER_STALL_S" ] || [ "$waited" -ge "$XFER_MAX_S" ]; then break; fi
done
n=$(size)
if [ -s /done ]; then end=$($b cat /done); if [ "$n" -ge "$XFER_BYTES" ]; then state=complete; else state=broken; fi
elif [ "$still" -ge "$XFER_STALL_S" ]; then end=$(now); state=stalled
else end=$(now); state=slow; fi
echo "xfer=$state"
echo "xfer_bytes=$n"
echo "xfer_s=$($b awk -v a="$t0" -v b="$end" 'BEGIN{printf "%.2f", b-a}')"
echo "xfer_response=$($b grep '^ *HTTP/' /wget.err | $b tail -n 1 | $b tr -d '\r' | $b sed 's/^ *//')"
[ "$state" = complete ] || echo "xfer_error=$($b grep -v -e '^ ' -e 'Connecting to' -e 'writing to' \
  -e 'validation not implemented' -e '%' /wget.err | $b tail -n 2 | $b tr '\n' ' ')"
NESTED
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
TRANSFER_STALL_S = 10
TRANSFER_MAX_S = 60
MTU_NETWORK_OPTION = "com.docker.network.driver.mtu"
# The nested busybox wget's words when it cannot speak https: built without TLS, or Alpine's helper missing.
NO_HTTPS = ("not an http or ftp url", "can't execute 'ssl_client'", "can't execute 'openssl'")


def iptables_cause(text: str) -> str:
    """The iptables failure in dockerd's words, when text has one ('' otherwise)."""
    lowered = text.lower()
    if not any(marker in lowered for marker in IPTABLES_FAILURES):
        return ""
    return f"the DinD image's iptables backend does not work on this node: {compact(text, 240)}"


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
        with ctx.pod(manifest):
            ctx.say("waiting for dockerd")
            daemon = key_values(ctx.exec(name, "job", WAIT_FOR_DAEMON, timeout_s=90).stdout)
            evidence["daemon"] = daemon.get("daemon", "unknown")
            evidence.update({key: daemon[key] for key in ("client_version", "client_api") if daemon.get(key)})
            evidence.update(key_values(ctx.exec(name, "dind", HOST_FACTS, timeout_s=20).stdout))
            if daemon.get("daemon") == "ok":
                ctx.say("importing an image made in the pod and running it")
                result = ctx.exec(name, "job", NESTED_RUN, timeout_s=120)
                evidence.update(key_values(result.stdout))
                if "import" not in evidence:
                    evidence["script_error"] = result.tail() or f"the script exited {result.rc} and printed nothing"
                if evidence.get("run_bridge") == "ok":
                    _measure_transfer(ctx, name, located, evidence)
            else:
                evidence["daemon_error"] = daemon.get("daemon_error", "")
                evidence["dockerd_log"] = dockerd_log_tail(ctx, name)
    finally:
        locator.shutdown(wait=False, cancel_futures=True)
    outcome = verdict(evidence)
    tested = specs.record_remedied(
        Mode.DIND, specs.CLASSIC, spec, proven=outcome.status is Status.PASS, remedies=proven_remedies(evidence)
    )
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=(tested,)))


LOCATE_WAIT_S = 45.0
"""How long the nested run waits for the payload's location (a few registry requests of LOCATE_TIMEOUT_S each)."""


def _measure_transfer(ctx: ProbeContext, name: str, located: Future[Payload], evidence: dict[str, Any]) -> None:
    """The payload through a nested container on the default bridge, and after a stall the remedy, tried.

    The remedy is the same fetch on a nested network created with the pod's MTU, when the bridge's MTU is above it.
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
    transfer.update(_transfer(ctx, name, payload, mtu=""))
    pod_mtu, inner_mtu = _mtus(evidence)
    if transfer["state"] == "stalled" and pod_mtu and inner_mtu and inner_mtu > pod_mtu:
        ctx.say(f"the nested transfer stalled: again on a nested network with MTU {pod_mtu}")
        evidence["transfer_remedy"] = {
            "network_option": f"{MTU_NETWORK_OPTION}={pod_mtu}",
            **_transfer(ctx, name, payload, mtu=str(pod_mtu)),
        }


def _transfer(ctx: ProbeContext, name: str, payload: Payload, *, mtu: str) -> dict[str, Any]:
    """One run of TRANSFER; an exec channel that fails proves nothing about the transfer, so it is not measured."""
    env = {
        "XFER_URL": payload.url,
        "XFER_HEADER": payload.header,
        "XFER_BYTES": str(payload.size),
        "XFER_STALL_S": str(TRANSFER_STALL_S),
        "XFER_MAX_S": str(TRANSFER_MAX_S),
        "XFER_MTU": mtu,
    }
    script = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items()) + TRANSFER
    try:
        result = ctx.exec(name, "job", script, timeout_s=TRANSFER_MAX_S + 30)
    except ExecChannelError as exc:
        return {"state": "not_measured", "bytes_wanted": payload.size, "error": f"the exec channel failed: {exc}"}
    return {"bytes_wanted": payload.size, **transfer_result(key_values(result.stdout), result.tail())}


def transfer_result(values: dict[str, str], tail: str) -> dict[str, Any]:
    """One transfer as the nested container reported it (pure, over TRANSFER's KEY=VALUE output)."""
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
    error = values.get("xfer_error", "").strip()
    if not error and state not in ("complete", "stalled", "slow"):
        error = tail or "the transfer script printed nothing"
    if error:
        found["error"] = error
    return found


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


def transfer_finding(evidence: dict[str, Any]) -> TransferFinding:
    """The nested transfer, in words: completed, stalled (and whether the pod's MTU fixed it), or not measured.

    Pure, over the evidence. Only a completed transfer is stated as one; a stall is a WARNING; anything else is
    "transfer not measured" with its cause. The MTU remedy is called proven only when the retry completed.
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


def _after_stall(clause: str, evidence: dict[str, Any], pod_mtu: int, inner_mtu: int, registry: str) -> TransferFinding:
    remedy = evidence.get("transfer_remedy")
    if remedy is None:
        why = f"the nested MTU {inner_mtu or '?'} does not exceed the pod network's {pod_mtu or '?'}"
        return TransferFinding(
            f"{clause} ({why}: not an MTU mismatch)", EGRESS_REMEDIATION.format(registry=registry, why=why)
        )
    if mtu_remedy_proven(evidence):
        evidence["mtu_remedy_proven"] = pod_mtu
        proof = (
            f"on a nested network with MTU {remedy.get('mtu', pod_mtu)} the same transfer completed "
            f"({_size(remedy.get('bytes'))} in {remedy.get('seconds', '?')}s)"
        )
        return TransferFinding(
            f"{clause}; {proof}",
            f"Proven on this cluster: a nested container's transfer stalled on dockerd's default bridge (MTU "
            f"{inner_mtu}, above the pod network's {pod_mtu}), and {proof} ({remedy.get('network_option', '')}). "
            f"Start dockerd with --mtu={pod_mtu} (append it to the dind container's args) so the default bridge, and "
            "the containers of docker build's RUN steps, use the pod network's MTU.",
        )
    outcome = remedy.get("state", "?")
    detail = remedy.get("error") or f"{_size(remedy.get('bytes'))} in {remedy.get('seconds', '?')}s"
    why = f"on a nested network with MTU {pod_mtu} it did not complete either ({outcome}: {compact(str(detail), 160)})"
    return TransferFinding(f"{clause}; {why}", EGRESS_REMEDIATION.format(registry=registry, why=why))


def mtu_remedy_proven(evidence: dict[str, Any]) -> int:
    """The pod MTU whose nested network completed a transfer that stalled on the default bridge (0: not proven)."""
    pod_mtu, inner_mtu = _mtus(evidence)
    stalled = (evidence.get("transfer") or {}).get("state") == "stalled"
    completed = (evidence.get("transfer_remedy") or {}).get("state") == "complete"
    return pod_mtu if stalled and completed and inner_mtu > pod_mtu > 0 else 0


def proven_remedies(evidence: dict[str, Any]) -> tuple[str, ...]:
    """Remedies the probe proved, for the config to paste (comments beside the spec, never inside it)."""
    pod_mtu = mtu_remedy_proven(evidence)
    if not pod_mtu:
        return ()
    _, inner_mtu = _mtus(evidence)
    remedy = (
        f"--mtu={pod_mtu}: PROVEN by docker-run on this cluster: a nested container's transfer stalled on dockerd's "
        f"default bridge (MTU {inner_mtu}) and completed on a nested network with MTU {pod_mtu}. Append "
        f"--mtu={pod_mtu} to the dind container's args (the spec below ran without it)."
    )
    return (remedy,)


def verdict(evidence: dict[str, Any]) -> Outcome:
    """Pass only when a nested container ran on the default bridge (pure, over the recorded evidence).

    The nested transfer never decides the status: it adds a clause (a WARNING when it stalled) and the remediation.
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
        return Outcome(
            Status.FAIL,
            f"dockerd did not start: {evidence.get('daemon_error', '')}; log: {log}",
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
        return Outcome(
            Status.PASS,
            f"nested docker run works on the bridge and with --network none; {finding.clause}; {facts}",
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
    return Outcome(Status.FAIL, f"nested docker run fails: {evidence.get('run_none_error', '')}; {facts}", evidence)


PROBE = ProbeDefinition(
    id="docker-run",
    capability="docker-run",
    title="a nested docker run works inside the DinD sidecar",
    remediation=REMEDIATION,
    run=run,
)
