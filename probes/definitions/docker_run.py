"""docker run: does a nested container start inside the DinD sidecar, from an image made in the pod?

No registry is needed: the job container packs its own busybox into a rootfs and `docker import`s it, then runs
it with --network none and on the default bridge. Storage driver, cgroup version, iptables backend and MTU are
recorded because they are what breaks nested runs (docs/probe-facts.md, "docker run inside DinD").
"""

from __future__ import annotations

from typing import Any

from probes import specs
from probes.definitions._docker import (
    API_VERSION_REMEDIATION,
    NESTED_RUN,
    WAIT_FOR_DAEMON,
    api_version_cause,
    dockerd_log_tail,
)
from probes.engine import Outcome, ProbeContext, compact, key_values
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
    "The nested bridge's MTU is larger than the pod network's: large transfers from nested containers (pulls, "
    "package installs) can hang. Start dockerd with --mtu={pod_mtu}."
)


def iptables_cause(text: str) -> str:
    """The iptables failure in dockerd's words, when text has one ('' otherwise)."""
    lowered = text.lower()
    if not any(marker in lowered for marker in IPTABLES_FAILURES):
        return ""
    return f"the DinD image's iptables backend does not work on this node: {compact(text, 240)}"


DEGRADED_DRIVERS = ("vfs", "fuse-overlayfs", "native")


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """A DinD pod; from the unprivileged job container: wait for dockerd, import an image, run it twice."""
    spec = specs.dind_pod_spec(
        settings.images, settings.resources, job_uid=settings.job_uid, dind_env=settings.dind_env
    )
    manifest = ctx.pod_manifest("run", spec)
    name = manifest["metadata"]["name"]
    evidence: dict[str, Any] = {}
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
        else:
            evidence["daemon_error"] = daemon.get("daemon_error", "")
            evidence["dockerd_log"] = dockerd_log_tail(ctx, name)
    outcome = verdict(evidence)
    tested = specs.record(Mode.DIND, specs.CLASSIC, spec, proven=outcome.status is Status.PASS)
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=(tested,)))


def verdict(evidence: dict[str, Any]) -> Outcome:
    """Pass only when a nested container ran on the default bridge (pure, over the recorded evidence)."""
    store = " (containerd image store)" if evidence.get("image_store") == "containerd" else ""
    facts = (
        f"Docker {evidence.get('server_version') or '?'}, driver {evidence.get('driver', '?')}{store}, "
        f"cgroup v{evidence.get('cgroup_version', '?')}, {evidence.get('iptables', 'iptables ?')}, "
        f"MTU {evidence.get('pod_mtu', '?')}"
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
        pod_mtu, inner_mtu = str(evidence.get("pod_mtu", "")), str(evidence.get("inner_mtu", ""))
        if pod_mtu.isdigit() and inner_mtu.isdigit() and int(inner_mtu) > int(pod_mtu):
            evidence["mtu_mismatch"] = True
            return Outcome(
                Status.PASS,
                f"nested docker run works on the bridge and with --network none, but WARNING: the nested bridge's "
                f"MTU {inner_mtu} exceeds the pod network's {pod_mtu}; {facts}",
                evidence,
                remediation=MTU_REMEDIATION.format(pod_mtu=pod_mtu),
            )
        return Outcome(
            Status.PASS,
            f"nested docker run works on the bridge and with --network none; {facts}",
            evidence,
            remediation="",
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
