"""The buildpacks probe: the restricted shape it tests, what its verdict claims, and the causes it names."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import (
    V1Capabilities,
    V1Container,
    V1Pod,
    V1PodSecurityContext,
    V1PodSpec,
    V1SeccompProfile,
    V1SecurityContext,
)

from probes import specs
from probes.definitions import _registry, buildpacks
from probes.definitions._registry import ManifestReadback
from probes.model import Status
from probes.settings import Images, ProbeSettings, Resources

REF = "localhost:5000/dindcheck/buildpacks:abcde"
DIGEST = "sha256:" + "c" * 64
REPORT = f'[image]\n  tags = ["{REF}"]\n  digest = "{DIGEST}"\n  manifest-size = 1083\n\n[build]\n'
RESTRICTED = specs.restricted_context()


def steps(**changed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    recorded: dict[str, dict[str, Any]] = {
        "prepare": {"exit_code": 0, "reason": "Completed", "message": ""},
        "creator": {"exit_code": 0, "reason": "Completed", "message": REPORT},
    }
    recorded.update(changed)
    return recorded


def creator_failed(*log: str) -> dict[str, Any]:
    return {"exit_code": 1, "reason": "Error", "message": "", "log": list(log)}


def test_the_tested_spec_is_the_pod_security_restricted_shape() -> None:
    spec = specs.buildpacks_pod_spec(Images(builder="b:1"), Resources(), image=REF, insecure_registries=("r:5000",))
    (creator,) = spec["containers"]
    assert creator["image"] == "b:1"
    assert creator["command"] == ["/cnb/lifecycle/creator"]
    assert creator["args"][-1] == REF
    assert "-insecure-registry=r:5000" in creator["args"]
    assert {"name": "CNB_PLATFORM_API", "value": "0.13"} in creator["env"]
    assert creator["securityContext"] == RESTRICTED
    assert buildpacks.restricted_gaps(creator["securityContext"]) == ()
    # the builder image's own CNB user runs: a root builder is refused by the kubelet, not hidden by a runAsUser
    assert "runAsUser" not in creator["securityContext"]
    assert "securityContext" not in spec  # nothing at pod level a restricted namespace would need


def test_default_builder_is_a_real_public_builder() -> None:
    assert Images().builder == "docker.io/paketobuildpacks/builder-jammy-base:latest"
    assert Images().by_role()["builder"] == Images().builder


def test_passes_with_the_digest_of_the_creators_report_and_the_stored_restricted_context() -> None:
    evidence: dict[str, Any] = {"image": REF, "stored_security_context": RESTRICTED}
    outcome = buildpacks.verdict(steps(), REF, evidence)
    assert outcome.status is Status.PASS
    assert evidence["digest"] == DIGEST
    assert DIGEST in outcome.summary
    assert "from source (no Dockerfile)" in outcome.summary
    assert "Pod Security restricted, as stored by the API server" in outcome.summary
    readback = ManifestReadback(True, "api-server pod proxy", digest="sha256:" + "d" * 64)
    assert _registry.readback_verdict(outcome, readback, evidence, builder="the CNB lifecycle").status is Status.FAIL
    same = ManifestReadback(True, "api-server pod proxy", digest=DIGEST)
    assert _registry.readback_verdict(outcome, same, evidence, builder="the CNB lifecycle").status is Status.PASS


def test_a_mutated_security_context_is_no_restricted_pass() -> None:
    stored = {**RESTRICTED, "allowPrivilegeEscalation": None, "capabilities": {"drop": [], "add": []}}
    outcome = buildpacks.verdict(steps(), REF, {"stored_security_context": stored})
    assert outcome.status is Status.INCONCLUSIVE
    assert "allowPrivilegeEscalation is not false" in outcome.summary
    assert "capabilities are not all dropped" in outcome.summary


def test_a_context_that_adds_a_capability_back_is_not_restricted() -> None:
    stored = {**RESTRICTED, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}
    assert buildpacks.restricted_gaps(stored) == ("capabilities are not all dropped",)


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        ("ERROR: failed to build: refusing to run as root", "the builder image's user is root"),
        (
            "ERROR: failed to exec as user 1001:1000: operation not permitted",
            "another uid than the builder's CNB_USER_ID",
        ),
        ("ERROR: failed to create: mkdir /layers/dindcheck_procfile: read-only file system", "must be a writable"),
        ("ERROR: platform API version '0.13' is incompatible with the lifecycle", "does not support platform API 0.13"),
    ],
)
def test_known_lifecycle_failures_are_named(log: str, cause: str) -> None:
    outcome = buildpacks.verdict(steps(creator=creator_failed("===> ANALYZING", log)), REF, {})
    assert outcome.status is Status.FAIL
    assert cause in outcome.summary
    assert log in outcome.summary


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        (
            (
                "container creator: CreateContainerConfigError: container has runAsNonRoot and image will run as root "
                '(pod: "dc-abcde-buildpacks-build_ns", container: creator)'
            ),
            "the builder image's user is root",
        ),
        (
            (
                "container creator: CreateContainerConfigError: container has runAsNonRoot and image has non-numeric "
                'user (cnb), cannot verify user is non-root (pod: "dc-abcde-buildpacks-build_ns", container: creator)'
            ),
            "set runAsUser and runAsGroup",
        ),
    ],
)
def test_the_kubelets_refusals_of_the_builder_image_are_named(reason: str, cause: str) -> None:
    assert cause in buildpacks.classify_failure(reason)


def test_a_registry_refusing_the_export_proves_nothing_about_the_lifecycle() -> None:
    # lifecycle v0.20.5 against Distribution in read-only mode (seen here)
    log = (
        "ERROR: failed to initialize analyzer: validating registry write access: failed to ensure registry read/write "
        f"access to {REF}: POST http://localhost:5000/v2/dindcheck/buildpacks/blobs/uploads/: unexpected status code "
        "405 Method Not Allowed: Method not allowed"
    )
    progress = ("Warning: No cached data will be used, no cache specified.", "===> ANALYZING")
    outcome = buildpacks.verdict(steps(creator=creator_failed(*progress, log)), REF, {})
    assert outcome.status is Status.INCONCLUSIVE
    assert "the registry refused the export: ERROR: failed to initialize analyzer" in outcome.summary
    assert "Warning" not in outcome.summary
    assert "not the lifecycle" in outcome.summary
    assert "--registry-secret" in (outcome.remediation or "")


def test_an_unreachable_registry_is_a_push_problem() -> None:
    log = 'ERROR: failed to export: Get "https://r.example/v2/": dial tcp: lookup r.example: no such host'
    outcome = buildpacks.verdict(steps(creator=creator_failed(log)), REF, {})
    assert outcome.status is Status.INCONCLUSIVE
    assert "the registry was not usable" in outcome.summary


def test_a_builder_that_does_not_detect_the_app_proves_nothing() -> None:
    log = "ERROR: No buildpack groups passed detection."
    outcome = buildpacks.verdict(steps(creator=creator_failed(log, "ERROR: failed to detect: no buildpacks")), REF, {})
    assert outcome.status is Status.INCONCLUSIVE
    assert "did not detect the probe's app" in outcome.summary
    assert "--image-builder" in (outcome.remediation or "")


def test_an_unknown_failure_is_a_fail_with_the_lifecycles_words() -> None:
    outcome = buildpacks.verdict(steps(creator=creator_failed("ERROR: failed to build: exit status 3")), REF, {})
    assert outcome.status is Status.FAIL
    assert "exit 1" in outcome.summary
    assert "exit status 3" in outcome.summary


def test_the_scaffolding_failing_is_inconclusive() -> None:
    failed = {"exit_code": 1, "reason": "Error", "message": "", "log": ["sh: cannot create /workspace/Procfile"]}
    outcome = buildpacks.verdict(steps(prepare=failed), REF, {})
    assert outcome.status is Status.INCONCLUSIVE
    assert "tools image" in outcome.summary
    assert buildpacks.verdict({"prepare": steps()["prepare"]}, REF, {}).status is Status.INCONCLUSIVE


def test_the_digest_is_read_from_the_report_toml_only() -> None:
    assert buildpacks.reported_digest(REPORT) == DIGEST
    assert buildpacks.reported_digest("digest: sha256:abc") == ""


def test_stored_context_reads_the_containers_own_fields_and_the_pods_defaults() -> None:
    pod = V1Pod(
        spec=V1PodSpec(
            security_context=V1PodSecurityContext(
                run_as_non_root=True, seccomp_profile=V1SeccompProfile(type="RuntimeDefault")
            ),
            containers=[
                V1Container(name="hold"),
                V1Container(
                    name="creator",
                    security_context=V1SecurityContext(
                        allow_privilege_escalation=False, capabilities=V1Capabilities(drop=["ALL"])
                    ),
                ),
            ],
        )
    )
    stored = buildpacks.stored_context(pod, "creator")
    assert buildpacks.restricted_gaps(stored) == ()
    assert stored["runAsUser"] is None
    assert buildpacks.restricted_gaps(buildpacks.stored_context(pod, "hold")) == (
        "allowPrivilegeEscalation is not false",
        "capabilities are not all dropped",
    )


def test_the_scaffolding_is_restricted_shaped_too() -> None:
    """A restricted namespace must admit the whole probe pod, or the builder would look refused for a helper."""
    spec = specs.buildpacks_pod_spec(Images(), Resources(), image=REF, insecure_registries=("localhost:5000",))
    ctx: Any = SimpleNamespace(scope=SimpleNamespace(run_id="abcde"))
    full = buildpacks.probe_pod_spec(ctx, ProbeSettings(), spec)
    containers = [*full["initContainers"], *full["containers"]]
    assert [c["name"] for c in containers] == ["prepare", "registry", "creator", "hold"]
    for container in containers:
        assert buildpacks.restricted_gaps(container["securityContext"]) == (), container["name"]
    assert full["containers"][0] == spec["containers"][0]  # the tested container is untouched
