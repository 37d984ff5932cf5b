"""Socket sharing: can a job container reach a dockerd sidecar through a socket on a shared emptyDir?

Both layouts users deploy are tried at once: the classic sidecar (containers) and the native sidecar
(initContainers with restartPolicy: Always and a startupProbe), which removes the start race behind
"Cannot connect to the Docker daemon" (ARC#3257). Time to ready is measured from pod creation. The native form is
read back as admitted: a webhook that strips restartPolicy silently turns it into a plain init container.
"""

from __future__ import annotations

import time
from typing import Any

from probes import specs
from probes.definitions._docker import (
    API_VERSION_REMEDIATION,
    WAIT_FOR_DAEMON,
    api_version_cause,
    dockerd_log_tail,
)
from probes.engine import Outcome, ProbeContext, compact, key_values
from probes.exceptions import PodNotRunningError
from probes.model import Facts, Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "Share an emptyDir at /var/run between the dockerd sidecar and the job container and set "
    "DOCKER_HOST=unix:///var/run/docker.sock; start dockerd with --host=unix:///var/run/docker.sock. Prefer a "
    "native sidecar (initContainers, restartPolicy: Always, startupProbe 'docker info') so the job starts only "
    "once the daemon answers. Non-root job containers need dockerd --group=GID plus supplementalGroups."
)

SOCKET_FACTS = r"""
echo "socket=$(stat -c '%F %a %U:%G' /var/run/docker.sock 2>&1)"
echo "client_uid=$(id -u)"
echo "client_gid=$(id -g)"
echo "server_version=$(docker version -f '{{.Server.Version}}' 2>/dev/null)"
"""


def _try_layout(ctx: ProbeContext, name: str, created_at: float) -> dict[str, Any]:
    """Wait for the pod, then for the daemon through the socket from the job container."""
    found: dict[str, Any] = {"pod": name}
    try:
        ctx.wait_running(name)
    except PodNotRunningError as exc:
        found.update(ok=False, pod_ran=False, reason=compact(exc.reason))
        return found
    ctx.say(f"waiting for dockerd through the shared socket ({name})")
    result = ctx.exec(name, "job", WAIT_FOR_DAEMON + SOCKET_FACTS, timeout_s=90)
    found.update(layout_result(key_values(result.stdout), result.tail()))
    if found["ok"]:
        found["ready_s"] = round(time.monotonic() - created_at, 2)
    else:
        found["dockerd_log"] = dockerd_log_tail(ctx, name)
    return found


def layout_result(values: dict[str, str], tail: str) -> dict[str, Any]:
    """What one layout's job container saw (pure, over the script's KEY=VALUE output)."""
    found: dict[str, Any] = {"ok": values.get("daemon") == "ok", "pod_ran": True}
    for key in ("socket", "client_uid", "client_gid", "client_version", "server_version", "waited_s"):
        if values.get(key):
            found[key] = values[key]
    if not found["ok"]:
        found["reason"] = values.get("daemon_error") or tail or "the job container's script printed nothing"
    return found


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Start both layouts together; pass when the job container reaches dockerd through the socket."""
    layouts = {
        layout: specs.dind_pod_spec(
            settings.images, settings.resources, layout=layout, job_uid=settings.job_uid, dind_env=settings.dind_env
        )
        for layout in (specs.CLASSIC, specs.NATIVE)
    }
    manifests = {layout: ctx.pod_manifest(layout, spec) for layout, spec in layouts.items()}
    ctx.say("creating the classic and the native sidecar pods")
    created_at: dict[str, float] = {}
    evidence: dict[str, Any] = {}
    try:
        for layout, manifest in manifests.items():
            created_at[layout] = time.monotonic()
            ctx.create_pod(manifest)
        native_name = manifests[specs.NATIVE]["metadata"]["name"]
        admitted = ctx.read_pod(native_name)
        evidence["native_sidecar"] = {"supported": native_as_admitted(admitted)}
        evidence["classic"] = _try_layout(ctx, manifests[specs.CLASSIC]["metadata"]["name"], created_at[specs.CLASSIC])
        if evidence["native_sidecar"]["supported"]:
            evidence["native_sidecar"].update(_try_layout(ctx, native_name, created_at[specs.NATIVE]))
        else:
            evidence["native_sidecar"]["reason"] = (
                "the pod as admitted has no initContainers[].restartPolicy: Always (the API server dropped it: "
                "SidecarContainers off or Kubernetes < 1.29, or a mutating webhook stripped it)"
            )
    finally:
        for manifest in manifests.values():
            ctx.delete_pod(manifest["metadata"]["name"])
    outcome = verdict(evidence)
    tested = (
        specs.record(Mode.DIND, specs.CLASSIC, layouts[specs.CLASSIC], proven=bool(evidence["classic"].get("ok"))),
        specs.record(Mode.DIND, specs.NATIVE, layouts[specs.NATIVE], proven=bool(evidence["native_sidecar"].get("ok"))),
    )
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=tested))


def native_as_admitted(pod: Any) -> bool:
    """Whether the stored pod still has its sidecar as a native sidecar (restartPolicy: Always)."""
    init = (pod.spec.init_containers or [None])[0]
    return init is not None and init.restart_policy == "Always"


def verdict(evidence: dict[str, Any]) -> Outcome:
    """Pass when either layout's job container reached dockerd; inconclusive when no pod ran at all."""
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
            f"job container (uid {classic.get('client_uid', '?')}) reached dockerd over the shared socket in "
            f"{classic['ready_s']}s ({classic.get('socket', '')}); {native_note}",
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
    if not classic.get("pod_ran"):
        return Outcome(Status.INCONCLUSIVE, f"sidecar pod did not run: {classic.get('reason', '')}", evidence)
    log = classic.get("dockerd_log", "")
    refused = api_version_cause(str(classic.get("reason", "")))
    if refused:
        return Outcome(
            Status.FAIL,
            f"the socket is shared, but {refused} (job CLI {classic.get('client_version') or '?'})",
            evidence,
            remediation=API_VERSION_REMEDIATION,
        )
    if "permission denied" in str(classic.get("reason", "")).lower():
        return Outcome(
            Status.FAIL,
            f"dockerd runs, but the job container (uid {classic.get('client_uid', '?')}) may not use its socket "
            f"({classic.get('socket', '')}): {classic.get('reason', '')}",
            evidence,
            remediation="Start dockerd with --group=GID (the job's gid) and run the job with that gid "
            "(runAsGroup or supplementalGroups); the docker:dind image has no docker group of its own.",
        )
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
