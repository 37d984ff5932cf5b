"""docker run: does a nested container start inside the DinD sidecar, from an image made in the pod?

No registry is needed: the job container packs its own busybox into a rootfs and `docker import`s it, then runs
it with --network none and on the default bridge. Storage driver, cgroup version, iptables backend and MTU are
recorded because they are what breaks nested runs (docs/probe-facts.md, "docker run inside DinD").
"""

from __future__ import annotations

from typing import Any

from probes import specs
from probes.definitions._docker import NESTED_RUN, WAIT_FOR_DAEMON, dockerd_log_tail
from probes.engine import Outcome, ProbeContext, key_values
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
"""

DEGRADED_DRIVERS = ("vfs", "fuse-overlayfs", "native")


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """A DinD pod; from the unprivileged job container: wait for dockerd, import an image, run it twice."""
    spec = specs.dind_pod_spec(settings.images, settings.resources, job_uid=settings.job_uid)
    manifest = ctx.pod_manifest("run", spec)
    name = manifest["metadata"]["name"]
    evidence: dict[str, Any] = {}
    with ctx.pod(manifest):
        ctx.say("waiting for dockerd")
        daemon = key_values(ctx.exec(name, "job", WAIT_FOR_DAEMON, timeout_s=90).stdout)
        evidence["daemon"] = daemon.get("daemon", "unknown")
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
    facts = (
        f"driver {evidence.get('driver', '?')}, cgroup v{evidence.get('cgroup_version', '?')}, "
        f"{evidence.get('iptables', 'iptables ?')}, MTU {evidence.get('pod_mtu', '?')}"
    )
    if evidence.get("driver") in DEGRADED_DRIVERS:
        facts += f" (storage driver {evidence['driver']} is slow/degraded: overlay2 expected)"
    if evidence.get("daemon") != "ok":
        return Outcome(
            Status.FAIL,
            f"dockerd did not start: {evidence.get('daemon_error', '')}; log: {evidence.get('dockerd_log', '')}",
            evidence,
        )
    if evidence.get("import") != "ok":
        cause = evidence.get("import_error") or evidence.get("script_error", "the script did not finish")
        return Outcome(Status.FAIL, f"could not import an image into the nested dockerd: {cause}; {facts}", evidence)
    if evidence.get("run_bridge") == "ok":
        return Outcome(
            Status.PASS,
            f"nested docker run works on the bridge and with --network none; {facts}",
            evidence,
            remediation="",
        )
    if evidence.get("run_none") == "ok":
        return Outcome(
            Status.FAIL,
            f"nested docker run works only with --network none; bridge: {evidence.get('run_bridge_error', '')}; "
            f"{facts}",
            evidence,
        )
    return Outcome(Status.FAIL, f"nested docker run fails: {evidence.get('run_none_error', '')}; {facts}", evidence)


PROBE = ProbeDefinition(
    id="docker-run",
    capability="docker-run",
    title="a nested docker run works inside the DinD sidecar",
    remediation=REMEDIATION,
    run=run,
)
