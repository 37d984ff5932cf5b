"""Privileged admission: is the DinD sidecar's privileged pod admitted, and does a real one actually run?

Every mode's real pod spec is dry-run server-side (cluster-wide PSA defaults and policies are invisible from
namespace labels); then a real privileged pod is created, because some platforms reject only at scheduling.
"""

from __future__ import annotations

from typing import Any

from probes import admission, specs
from probes.engine import Outcome, ProbeContext, ProbeDefinition, compact
from probes.exceptions import AdmissionRejectedError, PodNotRunningError
from probes.model import Status

REMEDIATION = (
    "Privileged DinD needs a namespace whose Pod Security level is 'privileged' "
    "(kubectl label ns NS pod-security.kubernetes.io/enforce=privileged) and an exemption in any policy engine "
    "(Gatekeeper/Kyverno/ValidatingAdmissionPolicy) for the CI namespace. Where that is not acceptable, use "
    "rootless BuildKit (build-only) or sysbox."
)


def _mode_specs(ctx: ProbeContext) -> dict[str, dict[str, Any]]:
    images = ctx.settings.images
    return {
        "dind": specs.dind_pod_spec(images.dind, images.dind),
        "buildkit-rootless": specs.buildkit_pod_spec(images.buildkit),
        "sysbox": specs.sysbox_pod_spec(images.tools),
        "host-socket": specs.host_socket_pod_spec(images.dind),
    }


def run(ctx: ProbeContext) -> Outcome:
    """Dry-run every mode's spec, then run a real privileged pod when DinD's spec was admitted."""
    results: dict[str, admission.Admission] = {}
    for mode, spec in _mode_specs(ctx).items():
        ctx.say(f"dry-run create of the {mode} pod spec")
        results[mode] = ctx.dry_run(ctx.pod_manifest(f"dry-{mode}", spec))
    evidence: dict[str, Any] = {"specs": {mode: r.to_evidence() for mode, r in results.items()}}
    dind = results["dind"]
    if dind.admitted is False:
        return Outcome(
            Status.FAIL,
            f"privileged pod rejected by {dind.source}: {dind.message}",
            evidence,
        )
    if dind.admitted is None:
        evidence["dry_run_note"] = f"dry-run gave no answer ({dind.source}: {dind.message}); trying a real create"
    manifest = ctx.pod_manifest("real", specs.tools_pod_spec(ctx.settings.images.tools, privileged=True))
    try:
        with ctx.pod(manifest):
            evidence["real_pod"] = {"running": True}
    except AdmissionRejectedError as exc:
        evidence["real_pod"] = {"running": False, **exc.evidence()}
        return Outcome(Status.FAIL, f"privileged pod {exc.describe()}", evidence)
    except PodNotRunningError as exc:
        evidence["real_pod"] = {"running": False, **exc.evidence()}
        if _scheduling_rejection(exc.reason):
            return Outcome(
                Status.FAIL, f"privileged pod admitted but rejected at scheduling: {compact(exc.reason)}", evidence
            )
        return Outcome(
            Status.INCONCLUSIVE, f"privileged pod admitted, but it did not run: {compact(exc.reason)}", evidence
        )
    warnings = "; ".join(dind.warnings)
    summary = "privileged pod admitted and running"
    if warnings:
        summary += f" (warnings: {warnings})"
    if dind.admitted is None:
        summary += " (proven by a real pod; dry-run was not answered)"
    return Outcome(Status.PASS, summary, evidence, remediation="")


def _scheduling_rejection(reason: str) -> bool:
    """Platforms that admit a privileged pod but refuse to place it (EKS Fargate); other Pending causes stay unknown."""
    return "not supported on Fargate" in reason


PROBE = ProbeDefinition(
    id="privileged-admission",
    capability="privileged-admission",
    title="privileged pods (DinD sidecar) are admitted and run",
    remediation=REMEDIATION,
    run=run,
)
