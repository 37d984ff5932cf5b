"""Socket sharing: can a job container reach a dockerd sidecar through a socket on a shared emptyDir?

The layouts users deploy are tried at once, each in its own pod and thread: the classic sidecar (containers), the
native sidecar (initContainers with restartPolicy: Always and a startupProbe), which removes the start race behind
"Cannot connect to the Docker daemon" (ARC#3257), and GitLab's form: dockerd as a service container with TLS on
tcp://docker:2376 and the client certs on a shared emptyDir, which the job must wait for. Time to ready is measured
from each pod's creation. The native form is read back as admitted: a webhook that strips restartPolicy silently
turns it into a plain init container.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from probes import specs
from probes.definitions._docker import (
    API_VERSION_REMEDIATION,
    DAEMON_EXEC_S,
    SELINUX_SOCKET_REMEDIATION,
    api_version_cause,
    daemon_wait_s,
    dockerd_ended,
    dockerd_log_tail,
    selinux_socket_refusal,
    still_starting,
    still_starting_summary,
    wait_for_daemon,
)
from probes.engine import Outcome, ProbeContext, compact, key_values, named_cause
from probes.exceptions import AdmissionRejectedError, ExecChannelError, PodNotRunningError
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

# GitLab's form, from the job container: wait for the client certs dockerd's entrypoint writes into the shared
# $DOCKER_CERT_PATH (quoting the CLI's own words if the job got there first, as GitLab jobs do: gitlab-runner#27384),
# and for the key to be readable (openssl creates it 0600; docker:dind's entrypoint opens it to 0644 at once); then
# WAIT_FOR_DAEMON over TLS, which verifies the server's certificate against the name in DOCKER_HOST. The certs wait
# is $certs_wait_s seconds of wall time (tls_script sets it): making RSA keys is slow on a slow node's CPU.
TLS_WAIT_FOR_CERTS = r"""
certs=${DOCKER_CERT_PATH:-$HOME/.docker}
have_certs() { [ -s "$certs/ca.pem" ] && [ -s "$certs/cert.pem" ] && [ -s "$certs/key.pem" ]; }
stamp() { date +%s.%N 2>/dev/null || date +%s; }
t0=$(stamp)
echo "client_uid=$(id -u)"
echo "client_gid=$(id -g)"
echo "docker_host=$DOCKER_HOST"
echo "cert_path=$certs"
unreachable() {
  echo "daemon=unreachable"; echo "daemon_error=$(docker info 2>&1 | grep . | grep -v '^ ' | tail -n 2 | tr '\n' ' ')"
  exit 0
}
if ! have_certs; then echo "certs_race=$(docker info 2>&1 | grep . | grep -v '^ ' | tail -n 1)"; fi
echo "certs_wait_s=${certs_wait_s:-60}"; certs_give_up=$(( $(date +%s) + ${certs_wait_s:-60} ))
until have_certs; do
  if [ "$(date +%s)" -ge "$certs_give_up" ]; then
    echo "certs=missing"; echo "certs_listing=$(ls -ln "$certs" 2>&1 | tr '\n' ' ')"; unreachable
  fi
  sleep 0.2
done
echo "certs=present"
echo "certs_waited_s=$(awk -v a="$t0" -v b="$(stamp)" 'BEGIN{printf "%.2f", b-a}')"
echo "key_mode=$(stat -c '%a %U:%G' "$certs/key.pem" 2>&1)"
j=0
until [ -r "$certs/key.pem" ]; do
  j=$((j + 1)); [ "$j" -lt 25 ] || unreachable
  sleep 0.2
done
"""
TLS_FACTS = r"""
echo "server_version=$(docker version -f '{{.Server.Version}}' 2>/dev/null)"
"""

# The docker CLI's own words (29.x: "Failed to initialize: unable to resolve docker endpoint: ..."; 20.10 without the
# prefix; go's crypto/tls and crypto/x509 for the handshake), each to its cause.
TLS_CAUSES: tuple[tuple[tuple[str | tuple[str, ...], ...], str], ...] = (
    ((("unable to resolve docker endpoint", "permission denied"),), "key"),
    ((("unable to resolve docker endpoint", "no such file or directory"), "could not read ca certificate"), "certs"),
    (
        (
            "x509: certificate is valid for",
            "x509: cannot validate certificate",
            "certificate signed by unknown authority",
            "failed to verify certificate",
            "tls: certificate required",
            "tls: bad certificate",
            "tls: unknown certificate authority",
        ),
        "handshake",
    ),
)
TLS_REMEDIATION = {
    "certs": (
        "Share /certs/client between the dind service and the job (GitLab: [[runners.kubernetes.volumes.empty_dir]] "
        "docker-certs at /certs/client), set DOCKER_TLS_CERTDIR=/certs on the dind container, and make the job wait "
        "for dockerd (until docker info; do sleep 1; done): the job can start before dockerd's entrypoint wrote the "
        "certs (gitlab-runner#27384)."
    ),
    "key": (
        "The job's uid cannot read /certs/client/key.pem. docker:dind's entrypoint makes the client key 0644 (it is "
        "shared with clients of any uid); an entrypoint or image that leaves it 0600 and root-owned locks non-root "
        "jobs out: use docker:dind's entrypoint (or chmod 0644 the client key after generating it), or run the job "
        "as root."
    ),
    "handshake": (
        "The job must dial dockerd by a name in its server certificate (docker:dind puts docker, localhost, the "
        "pod's hostname and IPs in it; add others with DOCKER_TLS_SAN on the dind container) and trust the CA of "
        "this dind container's run (docker:dind regenerates the certs at each start: /certs/client must be the "
        "volume the running dind container wrote)."
    ),
}
TLS_TITLE = f"TLS over {specs.DOCKER_TLS_HOST} (GitLab's form)"
CERTS_WAIT_S = 60.0
"""How long docker:dind's entrypoint may take to write the client certs on a node of usual speed."""


def tls_script(ctx: ProbeContext) -> str:
    """GitLab's job side: the certs wait, then the daemon wait, each stretched by the run's slowness."""
    certs_wait = f"certs_wait_s={int(CERTS_WAIT_S * ctx.scope.slowness)}\n"
    return certs_wait + TLS_WAIT_FOR_CERTS + wait_for_daemon(daemon_wait_s(ctx)) + TLS_FACTS


def _try_layout(ctx: ProbeContext, name: str, created_at: float, script: str, timeout_s: float) -> dict[str, Any]:
    """Wait for the pod, then for the daemon from the job container."""
    found: dict[str, Any] = {"pod": name}
    try:
        ctx.wait_running(name)
    except PodNotRunningError as exc:
        found.update(ok=False, pod_ran=False, reason=compact(exc.reason))
        return found
    ctx.say(f"waiting for dockerd from the job container ({name})")
    result = ctx.exec(name, "job", script, timeout_s=timeout_s)
    found.update(layout_result(key_values(result.stdout), result.tail()))
    if found["ok"]:
        found["ready_s"] = round(time.monotonic() - created_at, 2)
    else:
        found["dockerd_log"] = dockerd_log_tail(ctx, name)
        dockerd_ended(ctx, name, found)
    return found


def _try_tls(ctx: ProbeContext, name: str, created_at: float) -> dict[str, Any]:
    """GitLab's form; an exec channel that fails concludes nothing about it, and does not stop the other layouts."""
    try:
        return _try_layout(ctx, name, created_at, tls_script(ctx), timeout_s=CERTS_WAIT_S + DAEMON_EXEC_S)
    except ExecChannelError as exc:
        return {"pod": name, "ok": False, "pod_ran": True, "concluded": False, "reason": f"exec channel: {exc}"}


LAYOUT_KEYS = (
    "socket",
    "client_label",
    "client_uid",
    "client_gid",
    "client_version",
    "server_version",
    "waited_s",
    "docker_host",
    "cert_path",
    "certs",
    "certs_race",
    "certs_waited_s",
    "certs_listing",
    "key_mode",
    "daemon_wait_s",
    "certs_wait_s",
)


def layout_result(values: dict[str, str], tail: str) -> dict[str, Any]:
    """What one layout's job container saw (pure, over the script's KEY=VALUE output)."""
    found: dict[str, Any] = {"ok": values.get("daemon") == "ok", "pod_ran": True}
    for key in LAYOUT_KEYS:
        if values.get(key):
            found[key] = values[key]
    if not found["ok"]:
        found["reason"] = values.get("daemon_error") or tail or "the job container's script printed nothing"
    return found


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Start every layout together; pass when a job container reaches dockerd (socket first, then TLS)."""
    images, resources, uid, env = settings.images, settings.resources, settings.job_uid, settings.dind_env
    layouts = {
        specs.CLASSIC: specs.dind_pod_spec(images, resources, layout=specs.CLASSIC, job_uid=uid, dind_env=env),
        specs.NATIVE: specs.dind_pod_spec(images, resources, layout=specs.NATIVE, job_uid=uid, dind_env=env),
        specs.TLS: specs.dind_tls_pod_spec(images, resources, job_uid=uid, dind_env=env),
    }
    manifests = {layout: ctx.pod_manifest(layout, spec) for layout, spec in layouts.items()}
    names = {layout: manifest["metadata"]["name"] for layout, manifest in manifests.items()}
    ctx.say("creating the classic sidecar, native sidecar and TLS (GitLab) pods")
    created_at: dict[str, float] = {}
    evidence: dict[str, Any] = {}
    try:
        for layout, manifest in manifests.items():
            created_at[layout] = time.monotonic()
            try:
                ctx.create_pod(manifest)
            except AdmissionRejectedError as exc:
                if layout != specs.TLS:
                    raise
                # a policy against GitLab's form (its hostAliases, say) says nothing about the socket layouts
                evidence["tls"] = {"pod": names[layout], "ok": False, "pod_ran": False, "reason": exc.describe()}
        evidence["native_sidecar"] = {"supported": native_as_admitted(ctx.read_pod(names[specs.NATIVE]))}
        socket_script = wait_for_daemon(daemon_wait_s(ctx)) + SOCKET_FACTS
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="socket-sharing") as pool:
            classic = pool.submit(
                _try_layout, ctx, names[specs.CLASSIC], created_at[specs.CLASSIC], socket_script, DAEMON_EXEC_S
            )
            tls = None if "tls" in evidence else pool.submit(_try_tls, ctx, names[specs.TLS], created_at[specs.TLS])
            native = (
                pool.submit(
                    _try_layout, ctx, names[specs.NATIVE], created_at[specs.NATIVE], socket_script, DAEMON_EXEC_S
                )
                if evidence["native_sidecar"]["supported"]
                else None
            )
            evidence["classic"] = classic.result()
            if native is not None:
                evidence["native_sidecar"].update(native.result())
            else:
                evidence["native_sidecar"]["reason"] = (
                    "the pod as admitted has no initContainers[].restartPolicy: Always (the API server dropped it: "
                    "SidecarContainers off or Kubernetes < 1.29, or a mutating webhook stripped it)"
                )
            if tls is not None:
                evidence["tls"] = tls.result()
    finally:
        for name in names.values():
            ctx.delete_pod(name)
    outcome = verdict(evidence)
    tested = (
        specs.record(Mode.DIND, specs.CLASSIC, layouts[specs.CLASSIC], proven=bool(evidence["classic"].get("ok"))),
        specs.record(Mode.DIND, specs.NATIVE, layouts[specs.NATIVE], proven=bool(evidence["native_sidecar"].get("ok"))),
        specs.record(Mode.DIND, specs.TLS, layouts[specs.TLS], proven=bool(evidence["tls"].get("ok"))),
    )
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=tested))


def native_as_admitted(pod: Any) -> bool:
    """Whether the stored pod still has its sidecar as a native sidecar (restartPolicy: Always)."""
    init = (pod.spec.init_containers or [None])[0]
    return init is not None and init.restart_policy == "Always"


def tls_finding(tls: dict[str, Any]) -> tuple[str, str]:
    """(clause for the summary, remediation or '') of GitLab's TLS layout (pure, over its evidence)."""
    if not tls:
        return "", ""
    if tls.get("ok"):
        clause = f"{TLS_TITLE} ready in {tls.get('ready_s', '?')}s as uid {tls.get('client_uid', '?')}"
        if tls.get("certs_race"):
            clause += (
                f" (the job started before dockerd's entrypoint wrote the client certs, "
                f'"{compact(str(tls["certs_race"]), 160)}", and waited {tls.get("certs_waited_s", "?")}s for them)'
            )
        return clause, ""
    reason = str(tls.get("reason", ""))
    if not tls.get("pod_ran"):
        return f"{TLS_TITLE}: the pod did not run ({reason})", ""
    if tls.get("concluded") is False:
        return f"{TLS_TITLE}: not concluded ({reason})", ""
    refused = api_version_cause(reason)
    if refused:
        return f"{TLS_TITLE} failed: {refused}", API_VERSION_REMEDIATION
    cause = named_cause(reason, TLS_CAUSES)
    if cause in ("certs", "") and not tls.get("dockerd_exit") and still_starting(reason, tls.get("dockerd_log", "")):
        waited = tls.get("certs_wait_s") if tls.get("certs") == "missing" else tls.get("daemon_wait_s")
        summary = still_starting_summary("dockerd", waited, tls.get("dockerd_log"))
        return f"{TLS_TITLE}: not concluded ({summary})", ""
    uid = tls.get("client_uid", "?")
    if cause == "key":
        text = f"the job container (uid {uid}) cannot read the client key ({tls.get('key_mode', '?')}): {reason}"
    elif cause == "certs":
        where = tls.get("cert_path", specs.DOCKER_CLIENT_CERTS)
        text = f"the client certificates never appeared in {where} within {tls.get('certs_wait_s', '?')}s: {reason}"
    elif cause == "handshake":
        text = f"the TLS handshake with dockerd failed: {reason}"
    else:
        log = tls.get("dockerd_log", "")
        text = f"dockerd never answered on {tls.get('docker_host', specs.DOCKER_TLS_HOST)}: {reason}" + (
            f"; dockerd log: {log}" if log else ""
        )
    return f"{TLS_TITLE} failed: {compact(text, 400)}", TLS_REMEDIATION.get(cause, "")


def verdict(evidence: dict[str, Any]) -> Outcome:
    """Pass when a layout's job container reached dockerd; inconclusive when no pod ran at all.

    The socket layouts decide first (the DinD snippet prefers them); GitLab's TLS layout is named in every summary,
    and alone it also passes the check: the job reached dockerd, over TLS.
    """
    classic = evidence["classic"]
    native = evidence["native_sidecar"]
    refusal = selinux_socket_refusal(str(classic.get("reason", "")), str(classic.get("client_label", "")))
    tls_clause, tls_remedy = tls_finding(evidence.get("tls") or {})
    tls_note = f"; {tls_clause}" if tls_clause else ""
    native_note = (
        f"native sidecar ready in {native['ready_s']}s"
        if native.get("ok")
        else "native sidecars unsupported"
        if not native.get("supported")
        else "native sidecar failed: "
        + (
            selinux_socket_refusal(str(native.get("reason", "")), str(native.get("client_label", "")))
            or str(native.get("reason", ""))
        )
    )
    if classic.get("ok"):
        return Outcome(
            Status.PASS,
            f"job container (uid {classic.get('client_uid', '?')}) reached dockerd over the shared socket in "
            f"{classic['ready_s']}s ({classic.get('socket', '')}); {native_note}{tls_note}",
            evidence,
            remediation=tls_remedy,
        )
    if native.get("ok"):
        return Outcome(
            Status.PASS,
            f"classic sidecar failed ({classic.get('reason', '')}); {native_note}{tls_note}",
            evidence,
            remediation=tls_remedy,
        )
    if (evidence.get("tls") or {}).get("ok"):
        return Outcome(
            Status.PASS,
            f"classic sidecar failed ({refusal or classic.get('reason', '')}); {native_note}{tls_note}",
            evidence,
            remediation=SELINUX_SOCKET_REMEDIATION if refusal else REMEDIATION,
        )
    if not classic.get("pod_ran"):
        return Outcome(Status.INCONCLUSIVE, f"sidecar pod did not run: {classic.get('reason', '')}{tls_note}", evidence)
    log = classic.get("dockerd_log", "")
    refused = api_version_cause(str(classic.get("reason", "")))
    if refused:
        return Outcome(
            Status.FAIL,
            f"the socket is shared, but {refused} (job CLI {classic.get('client_version') or '?'}){tls_note}",
            evidence,
            remediation=API_VERSION_REMEDIATION,
        )
    if refusal:
        return Outcome(
            Status.FAIL, f"dockerd runs, but {refusal}{tls_note}", evidence, remediation=SELINUX_SOCKET_REMEDIATION
        )
    if "permission denied" in str(classic.get("reason", "")).lower():
        return Outcome(
            Status.FAIL,
            f"dockerd runs, but the job container (uid {classic.get('client_uid', '?')}) may not use its socket "
            f"({classic.get('socket', '')}): {classic.get('reason', '')}{tls_note}",
            evidence,
            remediation="Start dockerd with --group=GID (the job's gid) and run the job with that gid "
            "(runAsGroup or supplementalGroups); the docker:dind image has no docker group of its own.",
        )
    if not classic.get("dockerd_exit") and still_starting(str(classic.get("reason", "")), log):
        summary = still_starting_summary("dockerd", classic.get("daemon_wait_s"), log)
        return Outcome(Status.INCONCLUSIVE, summary + tls_note, evidence)
    return Outcome(
        Status.FAIL,
        f"dockerd never answered on the shared socket: {classic.get('reason', '')}"
        + (f"; dockerd log: {log}" if log else "")
        + tls_note,
        evidence,
    )


PROBE = ProbeDefinition(
    id="socket-sharing",
    capability="socket-sharing",
    title="a dockerd sidecar shares its socket over an emptyDir",
    remediation=REMEDIATION,
    run=run,
)
