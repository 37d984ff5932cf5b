"""Socket sharing: can a job container reach a dockerd sidecar through a socket on a shared emptyDir?

Both layouts users deploy are tried at once: the classic sidecar (containers) and the native sidecar
(initContainers with restartPolicy: Always and a startupProbe), which removes the start race behind
"Cannot connect to the Docker daemon" (ARC#3257). Time to ready is measured from pod creation.
"""

from __future__ import annotations

import time
from typing import Any

from probes import specs
from probes.definitions._docker import WAIT_FOR_DAEMON, dockerd_log_tail
from probes.engine import Outcome, ProbeContext, ProbeDefinition, compact, key_values
from probes.exceptions import PodNotRunningError
from probes.model import Status

REMEDIATION = (
    "Share an emptyDir at /var/run between the dockerd sidecar and the job container and set "
    "DOCKER_HOST=unix:///var/run/docker.sock; start dockerd with --host=unix:///var/run/docker.sock. Prefer a "
    "native sidecar (initContainers, restartPolicy: Always, startupProbe 'docker info') so the job starts only "
    "once the daemon answers. Non-root job containers need dockerd --group=GID plus supplementalGroups."
)

SOCKET_FACTS = r"""
echo "socket=$(stat -c '%F %a %U:%G' /var/run/docker.sock 2>&1)"
echo "client_uid=$(id -u)"
echo "server_version=$(docker version -f '{{.Server.Version}}' 2>/dev/null)"
"""


def _try_layout(ctx: ProbeContext, manifest: dict[str, Any], created_at: float) -> dict[str, Any]:
    """Wait for the pod, then for the daemon through the socket from the job container."""
    name = manifest["metadata"]["name"]
    found: dict[str, Any] = {"pod": name}
    try:
        ctx.wait_running(name)
    except PodNotRunningError as exc:
        found.update(ok=False, reason=compact(exc.reason))
        return found
    ctx.say(f"waiting for dockerd through the shared socket ({name})")
    result = ctx.exec(name, "client", WAIT_FOR_DAEMON + SOCKET_FACTS, timeout_s=90)
    values = key_values(result.stdout)
    found["ok"] = values.get("daemon") == "ok"
    found["ready_s"] = round(time.monotonic() - created_at, 2) if found["ok"] else None
    for key in ("socket", "client_uid", "server_version"):
        if values.get(key):
            found[key] = values[key]
    if not found["ok"]:
        found["reason"] = values.get("daemon_error") or result.tail()
        found["dockerd_log"] = dockerd_log_tail(ctx, name)
    return found


def run(ctx: ProbeContext) -> Outcome:
    """Start both layouts together; pass when the job container reaches dockerd through the socket."""
    images = ctx.settings.images
    classic = ctx.pod_manifest("classic", specs.dind_pod_spec(images.dind, images.dind))
    native = ctx.pod_manifest("native", specs.dind_native_sidecar_spec(images.dind, images.dind))
    ctx.say("creating the classic and the native sidecar pods")
    classic_at = time.monotonic()
    ctx.create_pod(classic)
    native_at = time.monotonic()
    ctx.create_pod(native)
    evidence: dict[str, Any] = {}
    try:
        stored = ctx.core.read_namespaced_pod(native["metadata"]["name"], ctx.settings.namespace)
        init = (stored.spec.init_containers or [None])[0]
        native_supported = init is not None and init.restart_policy == "Always"
        evidence["classic"] = _try_layout(ctx, classic, classic_at)
        if native_supported:
            evidence["native_sidecar"] = {"supported": True, **_try_layout(ctx, native, native_at)}
        else:
            evidence["native_sidecar"] = {
                "supported": False,
                "reason": "the API server dropped initContainers[].restartPolicy (SidecarContainers off, < 1.29)",
            }
    finally:
        ctx.delete_pod(classic["metadata"]["name"])
        ctx.delete_pod(native["metadata"]["name"])
    return _verdict(evidence)


def _verdict(evidence: dict[str, Any]) -> Outcome:
    classic = evidence["classic"]
    native = evidence["native_sidecar"]
    native_note = (
        f"native sidecar ready in {native['ready_s']}s"
        if native.get("ok")
        else "native sidecars unsupported"
        if not native.get("supported")
        else f"native sidecar failed: {native.get('reason', '')}"
    )
    if classic.get("ok"):
        return Outcome(
            Status.PASS,
            f"job container reached dockerd over the shared socket in {classic['ready_s']}s "
            f"({classic.get('socket', '')}); {native_note}",
            evidence,
            remediation="",
        )
    if native.get("ok"):
        return Outcome(
            Status.PASS,
            f"classic sidecar failed ({classic.get('reason', '')}); {native_note}",
            evidence,
            remediation="",
        )
    if "dockerd_log" not in classic and classic.get("reason"):  # the pod itself never ran
        return Outcome(Status.INCONCLUSIVE, f"sidecar pod did not run: {classic['reason']}", evidence)
    log = classic.get("dockerd_log", "")
    return Outcome(
        Status.FAIL,
        f"dockerd never answered on the shared socket: {classic.get('reason', '')}"
        + (f"; dockerd log: {log}" if log else ""),
        evidence,
    )


PROBE = ProbeDefinition(
    id="socket-sharing",
    capability="socket-sharing",
    title="a dockerd sidecar shares its socket over an emptyDir",
    remediation=REMEDIATION,
    run=run,
)
