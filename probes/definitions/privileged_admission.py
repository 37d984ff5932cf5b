"""Privileged admission: is the DinD sidecar's privileged pod admitted, and does a real one actually run?

Every mode's real pod spec is dry-run server-side (cluster-wide PSA defaults and policies are invisible from
namespace labels); then a real privileged pod is created, because some platforms reject only at scheduling. A
refusal that is no policy (a ResourceQuota, throttling, the run's RBAC) answers nothing: inconclusive.
"""

from __future__ import annotations

from typing import Any

from probes import specs
from probes.engine import Outcome, ProbeContext, compact
from probes.exceptions import AdmissionRejectedError, PodNotRunningError
from probes.model import Admission, Facts, Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "Privileged DinD needs a namespace whose Pod Security level is 'privileged' "
    "(kubectl label ns NS pod-security.kubernetes.io/enforce=privileged) and an exemption in any policy engine "
    "(Gatekeeper/Kyverno/ValidatingAdmissionPolicy) for the CI namespace. Where that is not acceptable, use "
    "rootless BuildKit (build-only) or sysbox."
)


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """Dry-run every mode's spec, then run a real privileged pod when DinD's spec was not refused by a policy."""
    answers: dict[Mode, Admission] = {}
    for mode, spec in specs.mode_specs(
        settings.images, settings.resources, job_uid=settings.job_uid, dind_env=settings.dind_env
    ).items():
        ctx.say(f"dry-run create of the {mode.value} pod spec")
        annotations = specs.SYSBOX_ANNOTATIONS if mode is Mode.SYSBOX else None
        answers[mode] = ctx.dry_run(ctx.pod_manifest(f"dry-{mode.value}", spec, annotations=annotations))
    facts = Facts(admission=answers)
    evidence: dict[str, Any] = {"specs": {mode.value: answer.to_json() for mode, answer in answers.items()}}
    dind = answers[Mode.DIND]
    if dind.admitted is False:
        return Outcome(Status.FAIL, f"privileged pod rejected by {dind.source}: {dind.message}", evidence, facts=facts)
    if dind.admitted is None:
        evidence["dry_run_note"] = f"dry-run gave no answer ({dind.source}: {dind.message}); trying a real create"
    manifest = ctx.pod_manifest(
        "real", specs.tools_pod_spec(settings.images.tools, settings.resources, privileged=True)
    )
    try:
        with ctx.pod(manifest):
            evidence["real_pod"] = {"running": True}
    except AdmissionRejectedError as exc:
        evidence["real_pod"] = {"running": False, **exc.evidence()}
        status = Status.FAIL if exc.decided is False else Status.INCONCLUSIVE
        return Outcome(status, f"privileged pod {exc.describe()}", evidence, facts=facts)
    except PodNotRunningError as exc:
        evidence["real_pod"] = {"running": False, **exc.evidence()}
        if scheduling_rejection(exc.reason):
            return Outcome(
                Status.FAIL,
                f"privileged pod admitted but rejected at scheduling: {compact(exc.reason)}",
                evidence,
                facts=facts,
            )
        return Outcome(
            Status.INCONCLUSIVE,
            f"privileged pod admitted, but it did not run: {compact(exc.reason)}",
            evidence,
            facts=facts,
        )
    summary = "privileged pod admitted and running"
    if dind.warnings:
        summary += f" (warnings: {'; '.join(dind.warnings)})"
    if dind.admitted is None:
        summary += " (proven by a real pod; dry-run was not answered)"
    return Outcome(Status.PASS, summary, evidence, remediation="", facts=facts)


def scheduling_rejection(reason: str) -> bool:
    """Platforms that admit a privileged pod but refuse to place it (EKS Fargate); other Pending causes stay unknown."""
    return "not supported on Fargate" in reason


PROBE = ProbeDefinition(
    id="privileged-admission",
    capability="privileged-admission",
    title="privileged pods (DinD sidecar) are admitted and run",
    remediation=REMEDIATION,
    run=run,
)
