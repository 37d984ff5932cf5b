"""Sysbox: is the sysbox-runc RuntimeClass there, and does a pod using it actually start?

A registered class proves nothing on its own: the handler must exist on the node the pod lands on (sysbox#936).
Absent class = the mode is not installed (skipped); present but unrunnable = failed.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from probes import specs
from probes.engine import API_TIMEOUT_S, Outcome, ProbeContext, ProbeDefinition, compact, key_values
from probes.exceptions import AdmissionRejectedError, PodNotRunningError
from probes.model import Status

REMEDIATION = (
    "Install sysbox on a node pool (nestybox sysbox-deploy-k8s labels nodes sysbox-runtime=running and registers "
    "RuntimeClass sysbox-runc with a nodeSelector), then run DinD without privileged via runtimeClassName."
)


def run(ctx: ProbeContext) -> Outcome:
    """Look up the RuntimeClass and the labelled nodes; run a pod with it when the class exists."""
    evidence: dict[str, Any] = {}
    try:
        runtime_class = client.NodeV1Api(ctx.connection.api_client).read_runtime_class(
            specs.SYSBOX_RUNTIME_CLASS, _request_timeout=API_TIMEOUT_S
        )
    except ApiException as exc:
        if exc.status == 404:
            return Outcome(
                Status.SKIPPED,
                f"sysbox not installed: no RuntimeClass {specs.SYSBOX_RUNTIME_CLASS}",
                {"runtime_class": None},
            )
        raise
    evidence["runtime_class"] = {"name": specs.SYSBOX_RUNTIME_CLASS, "handler": runtime_class.handler}
    try:
        nodes = ctx.core.list_node(label_selector="sysbox-runtime=running", _request_timeout=API_TIMEOUT_S).items
        evidence["labelled_nodes"] = [n.metadata.name for n in nodes]
    except ApiException as exc:
        evidence["labelled_nodes"] = f"not listed ({exc.status})"
    manifest = ctx.pod_manifest("run", specs.sysbox_pod_spec(ctx.settings.images.tools))
    name = manifest["metadata"]["name"]
    try:
        with ctx.pod(manifest, timeout_s=min(ctx.settings.timeout_s, 90.0)):
            result = ctx.exec(name, "sysbox", "echo \"uid_map=$(head -n 1 /proc/self/uid_map | tr -s ' ')\"")
            evidence.update(key_values(result.stdout))
    except AdmissionRejectedError as exc:
        evidence["admission"] = exc.evidence()
        return Outcome(Status.FAIL, f"a sysbox pod was {exc.describe()}", evidence)
    except PodNotRunningError as exc:
        evidence["pod"] = exc.evidence()
        return Outcome(
            Status.FAIL,
            f"RuntimeClass {specs.SYSBOX_RUNTIME_CLASS} exists but its pod cannot start: {compact(exc.reason)}",
            evidence,
        )
    return Outcome(
        Status.PASS,
        f"a sysbox pod runs without privileged (uid_map {evidence.get('uid_map', '?')})",
        evidence,
        remediation="",
    )


PROBE = ProbeDefinition(
    id="sysbox",
    capability="sysbox",
    title="the sysbox-runc RuntimeClass is present and its pods run",
    remediation=REMEDIATION,
    run=run,
)
