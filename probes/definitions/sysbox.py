"""Sysbox: is the sysbox-runc RuntimeClass there, and does Docker really run in a sysbox pod without privileged?

A registered class proves nothing on its own: the handler must exist on the node the pod lands on (sysbox#936), and
the mode claims run + build. So a pass means: the pod (the same spec and annotations as the snippet) runs, dockerd
starts in it without privileged, a nested docker run works from the job container, and /proc/self/uid_map shows a
real user-namespace mapping. Absent class = the mode is not installed (skipped); present but unrunnable = failed.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from probes import specs
from probes.api import api_call
from probes.definitions._docker import (
    API_VERSION_REMEDIATION,
    DAEMON_EXEC_S,
    NESTED_RUN,
    api_version_cause,
    daemon_wait_s,
    dockerd_ended,
    dockerd_log_tail,
    last_words,
    still_starting,
    still_starting_summary,
    wait_for_daemon,
)
from probes.engine import Outcome, ProbeContext, compact, key_values
from probes.exceptions import AdmissionRejectedError, PodNotRunningError
from probes.model import Facts, Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "Install sysbox on a node pool (nestybox sysbox-deploy-k8s labels nodes sysbox-runtime=running and registers "
    "RuntimeClass sysbox-runc with a nodeSelector), then run DinD without privileged via runtimeClassName."
)
POD_WAIT_S = 90.0
"""How long a sysbox pod may take to run on a node of usual speed (a missing handler shows sooner, as an event)."""
NO_HANDLER = ("no runtime for", "failed to find runtime handler", "runtimehandler", "not supported")


def handler_missing(event_reason: str, event_message: str) -> bool:
    """The node's runtime has no sysbox-runc handler: the kubelet retries the sandbox, but none will appear."""
    lowered = event_message.lower()
    return event_reason == "FailedCreatePodSandBox" and "sysbox" in lowered and any(m in lowered for m in NO_HANDLER)


UID_MAP = "echo \"uid_map=$(head -n 1 /proc/self/uid_map | tr -s ' ' | sed 's/^ //')\""
IDENTITY_MAP = ("0", "0", "4294967295")


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Look up the RuntimeClass; when it exists, run DinD under it and prove dockerd and a nested run."""
    evidence: dict[str, Any] = {}
    try:
        runtime_class = api_call(
            client.NodeV1Api(ctx.connection.api_client).read_runtime_class, specs.SYSBOX_RUNTIME_CLASS
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
        nodes = api_call(ctx.core.list_node, label_selector="sysbox-runtime=running").items
        evidence["labelled_nodes"] = [n.metadata.name for n in nodes]
    except ApiException as exc:
        evidence["labelled_nodes"] = f"not listed ({exc.status})"
    spec = specs.sysbox_pod_spec(
        settings.images, settings.resources, job_uid=settings.job_uid, dind_env=settings.dind_env
    )
    manifest = ctx.pod_manifest("run", spec, annotations=specs.SYSBOX_ANNOTATIONS)
    name = manifest["metadata"]["name"]
    ctx.say(f"creating pod {name}")
    try:
        ctx.create_pod(manifest)
    except AdmissionRejectedError as exc:
        evidence["admission"] = exc.evidence()
        status = Status.FAIL if exc.decided is False else Status.INCONCLUSIVE
        return Outcome(status, f"a sysbox pod was {exc.describe()}", evidence)
    try:
        ctx.wait_running(
            name, timeout_s=min(ctx.scope.timeout_s, POD_WAIT_S * ctx.scope.slowness), final_event=handler_missing
        )
        evidence.update(key_values(ctx.exec(name, "dind", UID_MAP, timeout_s=20).stdout))
        ctx.say("waiting for dockerd inside the sysbox pod")
        wait = wait_for_daemon(daemon_wait_s(ctx))
        evidence.update(key_values(ctx.exec(name, "job", wait, timeout_s=DAEMON_EXEC_S).stdout))
        if evidence.get("daemon") == "ok":
            ctx.say("nested docker run inside the sysbox pod")
            evidence.update(key_values(ctx.exec(name, "job", NESTED_RUN, timeout_s=120).stdout))
        else:
            evidence["dockerd_log"] = dockerd_log_tail(ctx, name)
            dockerd_ended(ctx, name, evidence)
    except PodNotRunningError as exc:
        if not handler_missing(exc.event_reason, exc.event_message):
            raise  # an image pull, scheduling, a deadline: nothing learnt about sysbox (inconclusive)
        evidence["pod"] = exc.evidence()
        return Outcome(
            Status.FAIL,
            f"RuntimeClass {specs.SYSBOX_RUNTIME_CLASS} exists but the node has no such handler: {compact(exc.reason)}",
            evidence,
        )
    finally:
        ctx.delete_pod(name)
    outcome = verdict(evidence)
    tested = specs.record(
        Mode.SYSBOX, "sysbox", spec, proven=outcome.status is Status.PASS, annotations=specs.SYSBOX_ANNOTATIONS
    )
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=(tested,)))


def real_userns(uid_map: str) -> bool:
    """Whether a uid_map line maps container root elsewhere (the initial namespace maps 0 0 4294967295)."""
    fields = tuple(uid_map.split())
    return len(fields) == 3 and fields != IDENTITY_MAP


def verdict(evidence: dict[str, Any]) -> Outcome:
    """Pass only when dockerd ran without privileged, a nested container ran, and root was remapped (pure)."""
    uid_map = str(evidence.get("uid_map", ""))
    refused = api_version_cause(str(evidence.get("daemon_error", "")))
    if refused:
        return Outcome(
            Status.FAIL, f"dockerd runs in the sysbox pod, but {refused}", evidence, remediation=API_VERSION_REMEDIATION
        )
    if evidence.get("daemon") != "ok":
        ended = evidence.get("dockerd_exit") or {}
        log = str(evidence.get("dockerd_log", ""))
        if ended:
            words = last_words(str(ended.get("log", ""))) or str(ended.get("message", ""))
            return Outcome(
                Status.FAIL,
                f"the sysbox pod runs but dockerd in it exited {ended.get('exit_code', '?')} "
                f"({ended.get('reason') or 'Error'}); dockerd's last words: {compact(words, 240) or 'none'}",
                evidence,
            )
        if still_starting(str(evidence.get("daemon_error", "")), log):
            return Outcome(
                Status.INCONCLUSIVE,
                still_starting_summary("dockerd in the sysbox pod", evidence.get("daemon_wait_s"), log),
                evidence,
            )
        return Outcome(
            Status.FAIL,
            f"the sysbox pod runs but dockerd in it never answered: {evidence.get('daemon_error', '')}; log: {log}",
            evidence,
        )
    if evidence.get("run_bridge") != "ok":
        cause = evidence.get("run_bridge_error") or evidence.get("import_error") or "the nested run did not finish"
        return Outcome(Status.FAIL, f"dockerd runs in the sysbox pod but a nested docker run fails: {cause}", evidence)
    if not real_userns(uid_map):
        return Outcome(
            Status.FAIL,
            f"nested docker run works, but the pod has no user namespace (uid_map {uid_map or 'unreadable'}): "
            "this is not sysbox's isolation",
            evidence,
        )
    return Outcome(
        Status.PASS,
        f"dockerd runs without privileged and a nested docker run works in a sysbox pod (uid_map {uid_map}; "
        f"driver {evidence.get('driver', '?')})",
        evidence,
        remediation="",
    )


PROBE = ProbeDefinition(
    id="sysbox",
    capability="sysbox",
    title="Docker runs in a sysbox-runc pod without privileged",
    remediation=REMEDIATION,
    run=run,
)
