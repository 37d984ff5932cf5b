"""The skeleton of the builder probes whose tested container runs to completion in its own pod (Kaniko, buildpacks).

Each creates its probe pod (a refusal judged by the builder's spec alone), waits for the tested container to
terminate, names the cause when the pod never ran it, reads every container's termination, lets the probe judge
them, reads the pushed manifest back, deletes the pod and records the spec that was tested. Only the names, the
cause classifier, the judgement of the containers and the way the spec is recorded differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes.definitions import _registry
from probes.engine import Outcome, ProbeContext, compact
from probes.exceptions import AdmissionRejectedError, PodNotRunningError
from probes.model import Facts, Status, TestedSpec
from probes.settings import ProbeSettings

Steps = dict[str, dict[str, Any]]
"""Each finished container's exit code, reason, termination message (and log tail on failure), by name."""


@dataclass(frozen=True)
class Builder:
    """What differs between the run-to-completion builder probes."""

    name: str  # how summaries name the builder's pod: "the {name} pod"
    creating: str  # what the probe says while it creates the pod
    building: str  # what the probe says while the builder works, followed by the pushed reference
    container: str  # the tested container, waited for until it terminates
    logged: tuple[str, ...]  # the containers whose log tail is kept when they exit non-zero
    classify: Callable[[str], str]  # a failure's words -> its named cause, '' when it is not a known one
    judge: Callable[[Any, Steps, str, dict[str, Any]], Outcome]  # (pod, steps, ref, evidence) -> what they prove
    readback_as: str  # how the read-back verdict names the builder
    record: Callable[[dict[str, Any], ProbeSettings, bool], TestedSpec]  # (spec, settings, proven) -> tested spec


def push_registry(settings: ProbeSettings, evidence: dict[str, Any], *, throwaway: str) -> tuple[str, bool]:
    """The registry the build pushes to and whether it is insecure: --registry, else the probe pod's throwaway one."""
    if settings.registry:
        evidence["registry"] = {"address": settings.registry.rstrip("/"), "kind": "user"}
        return settings.registry.rstrip("/"), settings.registry_insecure
    evidence["registry"] = {"address": _registry.LOCAL_REGISTRY, "kind": throwaway}
    return _registry.LOCAL_REGISTRY, True


def registry_sidecar(settings: ProbeSettings) -> dict[str, Any]:
    """The throwaway registry as a native sidecar: up before the build, and until the read-back."""
    return {
        **_registry.registry_container(settings),
        "restartPolicy": "Always",
        "startupProbe": {"tcpSocket": {"port": _registry.REGISTRY_PORT}, "periodSeconds": 1, "failureThreshold": 120},
    }


def terminations(pod: Any) -> Steps:
    """Each finished container's exit code, reason and termination message, by container name."""
    found: Steps = {}
    for status in list(pod.status.init_container_statuses or []) + list(pod.status.container_statuses or []):
        term = status.state.terminated if status.state else None
        if term is not None:
            found[status.name] = {
                "exit_code": term.exit_code,
                "reason": term.reason or "",
                "message": (term.message or "").strip(),
            }
    return found


def run_builder(
    ctx: ProbeContext,
    settings: ProbeSettings,
    builder: Builder,
    pod_spec: dict[str, Any],
    spec: dict[str, Any],
    *,
    ref: str,
    insecure: bool,
    evidence: dict[str, Any],
) -> Outcome:
    """Create the probe pod (pod_spec: the tested spec plus scaffolding), build, read back, record the tested spec."""
    manifest = ctx.pod_manifest("build", pod_spec)
    name = manifest["metadata"]["name"]
    ctx.say(builder.creating)
    try:
        ctx.create_pod(manifest)
    except AdmissionRejectedError as exc:
        outcome = _registry.refused_outcome(ctx, builder.name, spec, exc, evidence)
    else:
        try:
            outcome = _build(ctx, settings, builder, name, ref, insecure, evidence)
        finally:
            ctx.delete_pod(name)
    tested = builder.record(spec, settings, outcome.status is Status.PASS)
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=(tested,)))


def _build(
    ctx: ProbeContext,
    settings: ProbeSettings,
    builder: Builder,
    name: str,
    ref: str,
    insecure: bool,
    evidence: dict[str, Any],
) -> Outcome:
    ctx.say(f"{builder.building} {ref}")
    try:
        pod = ctx.wait_terminated(name, builder.container, timeout_s=ctx.scope.timeout_s + 120)
    except PodNotRunningError as exc:
        evidence["pod"] = exc.evidence()
        cause = builder.classify(exc.reason)
        if cause:
            return Outcome(
                Status.FAIL, f"the {builder.name} pod did not run: {cause} ({compact(exc.reason, 200)})", evidence
            )
        return Outcome(Status.INCONCLUSIVE, f"the {builder.name} pod did not run: {compact(exc.reason)}", evidence)
    steps = terminations(pod)
    evidence["steps"] = steps
    for step in builder.logged:
        if steps.get(step, {}).get("exit_code") not in (None, 0):
            steps[step]["log"] = ctx.logs(name, step, tail=12).strip().splitlines()[-8:]
    outcome = builder.judge(pod, steps, ref, evidence)
    if outcome.status is not Status.PASS:
        return outcome
    readback = _registry.read_back(ctx, settings, ref, name, _registry.REGISTRY_PORT, insecure)
    evidence["readback"] = readback.to_evidence()
    return _registry.readback_verdict(outcome, readback, evidence, builder=builder.readback_as)
