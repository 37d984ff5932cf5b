"""Host docker.sock: is the node's Docker socket reachable from a pod? (Works = root on the node: discouraged.)

Most nodes run containerd since dockershim's removal, so the socket is usually absent: that is 'not available'
(skipped), not a failure. A cluster that forbids the hostPath is reported as failing for this mode.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client.rest import ApiException

from probes import specs
from probes.engine import Outcome, ProbeContext, ProbeDefinition, key_values
from probes.exceptions import AdmissionRejectedError, PodNotRunningError
from probes.model import Status

REMEDIATION = (
    "Do not use the node's docker.sock: any job that can reach it is root on the node and sees every other "
    "job's containers. Use rootless BuildKit, sysbox or a DinD sidecar instead."
)

ABSENT_MARKERS = ("is not a socket file", "hostPath type check failed", "no such file or directory")


def run(ctx: ProbeContext) -> Outcome:
    """Mount the socket by hostPath (type Socket) and ask the daemon for its version."""
    runtimes = sorted({n.container_runtime_version for n in _nodes(ctx)})
    evidence: dict[str, Any] = {"node_runtimes": runtimes}
    manifest = ctx.pod_manifest("sock", specs.host_socket_pod_spec(ctx.settings.images.dind))
    name = manifest["metadata"]["name"]
    try:
        with ctx.pod(manifest, timeout_s=min(ctx.settings.timeout_s, 60.0)):
            result = ctx.exec(
                name,
                "client",
                "echo \"server=$(docker version -f '{{.Server.Version}}' 2>&1 | tail -n 1)\"",
                timeout_s=30,
            )
            evidence.update(key_values(result.stdout))
    except AdmissionRejectedError as exc:
        evidence["admission"] = exc.evidence()
        return Outcome(Status.FAIL, f"a hostPath docker.sock pod was {exc.describe()}", evidence)
    except PodNotRunningError as exc:
        evidence["pod"] = exc.evidence()
        if any(marker in exc.reason for marker in ABSENT_MARKERS):
            return Outcome(
                Status.SKIPPED, f"no docker.sock on the node (runtimes: {', '.join(runtimes) or '?'})", evidence
            )
        raise
    server = str(evidence.get("server", ""))
    if server and server[0].isdigit():
        return Outcome(
            Status.PASS,
            f"the node's Docker {server} answers through hostPath docker.sock (root on the node: discouraged)",
            evidence,
            remediation=REMEDIATION,
        )
    return Outcome(Status.FAIL, f"docker.sock is mounted but the daemon does not answer: {server}", evidence)


def _nodes(ctx: ProbeContext) -> list[Any]:
    try:
        return [n.status.node_info for n in ctx.core.list_node().items]
    except ApiException:
        return []


PROBE = ProbeDefinition(
    id="host-socket",
    capability="host-socket",
    title="the node's docker.sock is reachable (discouraged)",
    remediation=REMEDIATION,
    run=run,
)
