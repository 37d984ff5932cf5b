"""Rootless BuildKit: does buildkitd with the reference securityContext build and push, without privileged?

The pod is BuildKit's own rootless example. The probe proves what a CI build does: it pushes a tiny base image made
in the pod, builds a Dockerfile FROM that base with a RUN step (so buildkitd pulls, and starts a build container in
its user namespace), pushes the result, and reads the pushed manifest back. A read-back that does not find the
manifest, or finds another digest, is a failure.

A throwaway registry runs as a second container of the probe pod and serves the base image: BuildKit speaks plain
HTTP to localhost registries by default, so buildkitd keeps its reference configuration (pulling from another
plain-HTTP registry would need a buildkitd.toml). The result is pushed to --registry when given, else to the
throwaway registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from probes import specs
from probes.definitions import _builder, _registry, _selinux
from probes.definitions._docker import container_exit, exec_refused_end_wait_s
from probes.engine import CommandResult, Outcome, ProbeContext, compact, key_values, named_cause
from probes.exceptions import AdmissionRejectedError, ExecChannelError, PodNotRunningError
from probes.model import Facts, Mode, Status
from probes.settings import ProbeDefinition, ProbeSettings

REMEDIATION = (
    "Rootless BuildKit needs: seccompProfile and appArmorProfile Unconfined (so PSA 'baseline' rejects it: label "
    "the namespace privileged or exempt it), user namespaces enabled on the node (user.max_user_namespaces > 0, "
    "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04+), allowPrivilegeEscalation not false "
    "(newuidmap is setuid), --oci-worker-no-process-sandbox, and its state dir on an emptyDir. On an SELinux node "
    "it runs as container_t, which the reference policy denies CAP_SYS_ADMIN in its own user namespace (the node's "
    "audit log: avc: denied { sys_admin } ... tclass=cap_userns): run buildkitd with "
    "securityContext.seLinuxOptions.type: spc_t. " + _selinux.PROVE_SPC_T
)

# Known failure texts (docs/probe-facts.md, "Rootless BuildKit") -> the cause a person can act on.
FAILURE_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("max_user_namespaces", "no space left on device"),
        (
            "user namespaces are disabled on the node "
            "(creating one fails with ENOSPC, as under user.max_user_namespaces=0)"
        ),
    ),
    (
        ("apparmor_restrict_unprivileged_userns",),
        "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)",
    ),
    (
        ("newuidmap", "could not set caps"),
        "newuidmap cannot gain its capabilities (allowPrivilegeEscalation: false or no_new_privs)",
    ),
    (("write to uid_map failed",), "cannot map uids: already inside a user namespace without room"),
    (("failed to share mount point",), "AppArmor confines the container (needs appArmorProfile Unconfined)"),
    (
        ("fork/exec /proc/self/exe: operation not permitted",),
        "seccomp or AppArmor forbids creating user namespaces (needs Unconfined profiles)",
    ),
    (
        ("mount proc:/proc", "operation not permitted"),
        "/proc is masked: run buildkitd with --oci-worker-no-process-sandbox",
    ),
)


def classify_failure(text: str, pod_label: str = "") -> str:
    """Name the cause of a rootless BuildKit failure from its log, or '' when it is not a known one.

    pod_label is the SELinux label the pod's containers run as ('' where none was read): a refusal in container_t
    is SELinux's (rootlesskit's words are the same as under seccomp or AppArmor, which its Unconfined profiles lift).
    """
    confined = _selinux.confined_type(pod_label)
    if confined and named_cause(text, SELINUX_REFUSALS):
        return (
            f"SELinux confines the pod ({pod_label}): {confined} may not use CAP_SYS_ADMIN in the user namespace "
            f"rootlesskit creates (needs {_selinux.SPC_T})"
        )
    return named_cause(text, FAILURE_CAUSES)


SELINUX_REFUSALS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("fork/exec /proc/self/exe: operation not permitted", "failed to share mount point", "permission denied"), "lsm"),
)
"""rootlesskit's words for a refusal any LSM may be behind (seen on the SELinux vm node: the first)."""


REGISTRATION_WINDOW = "no such job"
"""BuildKit's words when a build did not register within 3 s of the client's first gateway call (its registrar's
fixed wait): a node too slow at that moment (seen on the emulated vm node), not a capability. The script retries
such a build once; a second miss proves nothing either way."""

# Steps print KEY=VALUE lines; the build step is one function so base and probe builds read the same.
# A build that missed BuildKit's registration window is retried once ({step}_retried says so).
BUILD_AND_PUSH = r"""
i=0
until buildctl debug workers >/dev/null 2>&1; do
  i=$((i+1))
  if [ "$i" -ge 120 ]; then
    echo "buildkitd=unreachable"
    echo "buildkitd_error=$(buildctl debug workers 2>&1 | tail -n 3 | tr '\n' ' ')"; exit 0
  fi
  sleep 0.5
done
echo "buildkitd=ok"
echo "snapshotter=$(buildctl debug workers -v 2>/dev/null \
  | grep -o 'org.mobyproject.buildkit.worker.snapshotter:[^ ]*' | head -n 1 | cut -d: -f2)"
build() {  # build STEP DIR IMAGE OUTPUT-OPTIONS: build DIR's Dockerfile and push it as IMAGE
  attempt=1
  until buildctl build --frontend dockerfile.v0 --local context="$2" --local dockerfile="$2" \
      --output "type=image,name=$3,push=true$4" --metadata-file "$2/meta.json" > "$2/build.log" 2>&1; do
    if [ "$attempt" -lt 2 ] && grep -q 'no such job' "$2/build.log"; then
      echo "$1_retried=$(grep 'no such job' "$2/build.log" | tail -n 1 | tr '\n' ' ')"
      attempt=$((attempt+1)); continue
    fi
    echo "$1=failed"; echo "$1_error=$(grep -iE 'error|fail|denied' "$2/build.log" | tail -n 4 | tr '\n' ' ')"
    return 1
  done
  echo "$1=ok"
  echo "$1_digest=$(tr -d ' \n' < "$2/meta.json" 2>/dev/null \
    | grep -o '"containerimage.digest":"sha256:[0-9a-f]*"' | cut -d'"' -f4)"
}
w=$(mktemp -d)
base_rootfs "$w/base"
build base "$w/base" "$BASE" ",registry.insecure=true" || exit 0
probe_dockerfile "$w/probe" "$BASE" "$RUN_ID"
build build_push "$w/probe" "$REF" "$INSECURE"
"""


def run(ctx: ProbeContext, settings: ProbeSettings) -> Outcome:
    """The BuildKit pod first (its admission is the verdict), then build FROM a pushed base, push, read back."""
    evidence: dict[str, Any] = {}
    spec = specs.buildkit_pod_spec(settings.images, settings.resources, registry_secret=settings.registry_secret)
    registry, insecure = _builder.push_registry(
        settings, evidence, throwaway="throwaway registry container in the probe pod"
    )
    # the harness's registry container serves the base image; the spec users paste is buildkitd's alone
    pod_spec = {**spec, "containers": [*spec["containers"], _registry.registry_container(settings)]}
    pod_spec["volumes"] = [*spec["volumes"], {"name": "registry-data", "emptyDir": {}}]
    manifest = ctx.pod_manifest("buildkitd", pod_spec)
    name = manifest["metadata"]["name"]
    ctx.say("creating the rootless BuildKit pod")
    try:
        ctx.create_pod(manifest)
    except AdmissionRejectedError as exc:
        return _registry.refused_outcome(ctx, "rootless BuildKit", spec, exc, evidence)
    try:
        outcome = _build(ctx, settings, name, registry, insecure, evidence)
    finally:
        ctx.delete_pod(name)
    tested = specs.record_builder(Mode.BUILDKIT_ROOTLESS, spec, settings, proven=outcome.status is Status.PASS)
    return Outcome(outcome.status, outcome.summary, outcome.evidence, outcome.remediation, Facts(specs=(tested,)))


def _build(
    ctx: ProbeContext, settings: ProbeSettings, name: str, registry: str, insecure: bool, evidence: dict[str, Any]
) -> Outcome:
    try:
        pod = ctx.wait_running(name)
    except PodNotRunningError as exc:
        ended = _buildkitd_ended(ctx, name, exc.reason, evidence)
        if ended is None:
            raise
        return ended
    run_id = ctx.scope.run_id
    ref = f"{registry}/dindcheck/probe:{run_id}"
    base = f"{_registry.LOCAL_REGISTRY}/dindcheck/base:{run_id}"
    ctx.say(f"pushing a base image, building FROM it with a RUN step, pushing {ref}")
    env = f"REF='{ref}'; BASE='{base}'; RUN_ID='{run_id}'; INSECURE='{',registry.insecure=true' if insecure else ''}'"
    try:
        result = ctx.exec(name, "buildkitd", f"{env}\n{_registry.BUILD_CONTEXTS}{BUILD_AND_PUSH}", timeout_s=180)
    except ExecChannelError:
        # buildkitd may die just after its pod counted as running: its state and log say why, not the channel
        exited = container_exit(ctx, name, "buildkitd", settle_s=exec_refused_end_wait_s(ctx))
        if not exited:
            raise
        reason = f"container buildkitd exited {exited['exit_code']} ({exited['reason']})"
        return _buildkitd_ended(ctx, name, reason, evidence) or Outcome(Status.FAIL, reason, evidence)
    evidence["image"] = ref
    evidence["base_image"] = base
    outcome = verdict(result, ref, evidence, log=lambda: ctx.logs(name, "buildkitd"))
    if outcome.status is not Status.PASS:
        return outcome
    readback = _registry.read_back(ctx, settings, ref, pod.metadata.name, _registry.REGISTRY_PORT, insecure)
    evidence["readback"] = readback.to_evidence()
    return _registry.readback_verdict(outcome, readback, evidence, builder="BuildKit")


def _buildkitd_ended(ctx: ProbeContext, name: str, reason: str, evidence: dict[str, Any]) -> Outcome | None:
    """The fail of a buildkitd that ended before building, in its own words; None when nothing says it did."""
    log = ctx.logs(name, "buildkitd")
    # the registry container still runs: its label is the pod's (same securityContext class, same MCS level)
    label = _selinux.read_label(ctx, name, _registry.REGISTRY_CONTAINER)
    if label:
        evidence["pod_label"] = label
    cause = classify_failure(f"{reason}\n{log}", label)
    evidence["buildkitd_log"] = log.strip().splitlines()[-8:]
    if cause or "container buildkitd exited" in reason:
        return Outcome(Status.FAIL, f"buildkitd did not start: {cause or compact(reason)}", evidence)
    return None


def verdict(
    result: CommandResult, ref: str, evidence: dict[str, Any], *, log: Callable[[], str] = lambda: ""
) -> Outcome:
    """What the build script's output proves (pure over the recorded output, so it is unit-tested)."""
    values = key_values(result.stdout)
    evidence.update({k: v for k, v in values.items() if v})
    if values.get("buildkitd") != "ok":
        text = log()  # read only when buildkitd never answered
        cause = classify_failure(text + values.get("buildkitd_error", "")) or values.get("buildkitd_error", "")
        evidence["buildkitd_log"] = text.strip().splitlines()[-8:]
        return Outcome(Status.FAIL, f"buildkitd never answered: {cause or result.tail()}", evidence)
    for step, what in (("base", "pushing the base image"), ("build_push", "building FROM it with a RUN step")):
        if values.get(step) == "ok":
            continue
        error = values.get(f"{step}_error") or result.tail()
        if REGISTRATION_WINDOW in error:
            return Outcome(
                Status.INCONCLUSIVE,
                f"{what}: BuildKit did not register the build within its 3 s window, twice (a slow or overloaded "
                f"node): nothing concluded about rootless BuildKit ({compact(error, 160)})",
                evidence,
            )
        return _registry.step_failed(what, error, evidence, classify=classify_failure, builder="BuildKit")
    pushed = values.get("build_push_digest", "")
    evidence["digest"] = pushed
    retried = [step for step in ("base", "build_push") if values.get(f"{step}_retried")]
    summary = (
        f"built FROM a pushed base with a RUN step and pushed {ref} ({pushed or 'digest not reported'}) without "
        f"privileged; snapshotter {values.get('snapshotter') or '?'}"
    )
    if retried:
        summary += (
            f" ({' and '.join(retried)} retried once: BuildKit had not registered the build within its 3 s window, "
            "'no such job': builds on this node may fail so under load)"
        )
    return Outcome(Status.PASS, summary, evidence, remediation="")


PROBE = ProbeDefinition(
    id="buildkit-rootless",
    capability="buildkit-rootless",
    title="rootless BuildKit builds (RUN step on a pulled base) and pushes without privileged",
    remediation=REMEDIATION,
    run=run,
)
