"""Host docker.sock: is the node's Docker socket reachable from a pod? (Works = root on the node: discouraged.)

Most nodes run containerd since dockershim's removal, so the socket is usually absent. The kubelet says so itself:
the hostPath volume has type Socket, and its type check fails (a FailedMount event) when the node has no socket
there. That answer is 'not available' (skipped), not a failure; a cluster that forbids the hostPath fails the mode.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client.rest import ApiException

from probes import specs
from probes.api import api_call
from probes.engine import Outcome, ProbeContext, key_values
from probes.exceptions import AdmissionRejectedError, PodNotRunningError
from probes.model import Facts, Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "Do not use the node's docker.sock: any job that can reach it is root on the node and sees every other "
    "job's containers. Use rootless BuildKit, sysbox or a DinD sidecar instead."
)
TYPE_CHECK_FAILED = "hostPath type check failed"


def socket_absent(event_reason: str, event_message: str) -> bool:
    """The kubelet's hostPath type check found no socket at the path (it retries, but nothing will appear)."""
    return event_reason == "FailedMount" and TYPE_CHECK_FAILED in event_message


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Mount the socket by hostPath (type Socket) and ask the daemon for its version."""
    evidence: dict[str, Any] = {}
    spec = specs.host_socket_pod_spec(settings.images, settings.resources)
    manifest = ctx.pod_manifest("sock", spec)
    name = manifest["metadata"]["name"]
    ctx.say(f"creating pod {name}")
    try:
        ctx.create_pod(manifest)
    except AdmissionRejectedError as exc:
        evidence["admission"] = exc.evidence()
        status = Status.FAIL if exc.decided is False else Status.INCONCLUSIVE
        return Outcome(status, f"a hostPath docker.sock pod was {exc.describe()}", evidence)
    try:
        ctx.wait_running(name, timeout_s=min(ctx.scope.timeout_s, 60.0), final_event=socket_absent)
        script = "echo \"server=$(docker version -f '{{.Server.Version}}' 2>&1 | tail -n 1)\""
        evidence.update(key_values(ctx.exec(name, "job", script, timeout_s=30).stdout))
    except PodNotRunningError as exc:
        evidence["pod"] = exc.evidence()
        if socket_absent(exc.event_reason, exc.event_message):
            runtimes = _runtimes(ctx, ctx.nodes)
            evidence["node_runtimes"] = runtimes
            return Outcome(
                Status.SKIPPED,
                f"no docker.sock on the node: the kubelet's {exc.event_message} "
                f"(runtime: {', '.join(runtimes) or '?'})",
                evidence,
            )
        raise
    finally:
        ctx.delete_pod(name)
    outcome = verdict(evidence)
    tested = specs.record(Mode.HOST_SOCKET, "host-socket", spec, proven=outcome.status is Status.PASS)
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=(tested,)))


def verdict(evidence: dict[str, Any]) -> Outcome:
    """The daemon answered with a version: root on the node is reachable (pure, over the recorded evidence)."""
    server = str(evidence.get("server", ""))
    if server and server[0].isdigit():
        return Outcome(
            Status.PASS,
            f"the node's Docker {server} answers through hostPath docker.sock (root on the node: discouraged)",
            evidence,
            remediation=REMEDIATION,
        )
    return Outcome(Status.FAIL, f"docker.sock is mounted but the daemon does not answer: {server}", evidence)


def _runtimes(ctx: ProbeContext, node_names: set[str]) -> list[str]:
    """The container runtime of the node(s) the pod was tried on: in a pool run, not the other pools' runtimes.

    Listed by name (the run's RBAC grants list, not get): a large cluster's whole node list is megabytes.
    """
    runtimes: set[str] = set()
    for name in node_names:
        try:
            nodes = api_call(ctx.core.list_node, field_selector=f"metadata.name={name}").items
        except ApiException:
            continue
        runtimes.update(str(n.status.node_info.container_runtime_version) for n in nodes)
    return sorted(runtimes)


PROBE = ProbeDefinition(
    id="host-socket",
    capability="host-socket",
    title="the node's docker.sock is reachable (discouraged)",
    remediation=REMEDIATION,
    run=run,
)
