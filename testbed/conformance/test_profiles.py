"""What the report must say on each testbed profile (issue: conformance in CI).

Statuses and modes come from the expectations table; quoted causes must come from the cluster's own answer, so
tests check that the summary carries what the evidence recorded from the API server or the pod, plus the source
the answer was classified as, never a message string of the test's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from dindcheck.plugin import PROGRESS_EVERY_S
from probes.definitions import catalog
from probes.settings import Resources
from reports import json_report
from testbed.conformance.harness import Profile, SuiteRun, run_suite, wait_until_clean


@dataclass(frozen=True)
class Want:
    """What one check must report on a profile: its status and, where it can say, the cause in its summary.

    says: texts the summary must contain (the cluster's or the probe's words); refused_by: for a check that did not
    run because a pod it needs was refused, the source the refusal was classified as.
    """

    statuses: frozenset[str]
    says: tuple[str, ...] = ()
    refused_by: str = ""


def want(*statuses: str, says: tuple[str, ...] = (), refused_by: str = "") -> Want:
    """A Want from its statuses."""
    return Want(frozenset(statuses), says, refused_by)


def assert_as_wanted(check_id: str, check: dict[str, Any], wanted: Want) -> None:
    """A check of a run's report has a status wanted and says every text wanted; anything but a pass says a remedy."""
    __tracebackhide__ = True
    assert check["status"] in wanted.statuses, f"{check_id}: {check['status']}: {check['summary']}"
    for text in wanted.says:
        assert text in check["summary"], f"{check_id}: {text!r} not in {check['summary']!r}"
    if check["status"] != "pass":
        assert check["remediation"], f"{check_id} {check['status']} without remediation"


VAP = "dindcheck-testbed-deny-privileged"
PASS = want("pass")
SYSBOX_ABSENT = want("skipped", says=("sysbox not installed: no RuntimeClass sysbox-runc",))
NO_DOCKER_SOCKET = want("skipped", says=("no docker.sock on the node", "hostPath type check failed"))
USERNS_OFF = want("fail", says=("user namespaces are disabled on the node",))
PRIVILEGED_DENIED = want(
    "skipped",
    says=("not run: a pod it needs was rejected by validating-admission-policy", f"[denied by {VAP}]"),
    refused_by="validating-admission-policy",
)


def psa_refused(level: str, status: str = "skipped") -> Want:
    """A check whose pod Pod Security refused at the namespace's level, in the API server's words."""
    return want(status, says=(f'violates PodSecurity "{level}:latest"',), refused_by="pod-security-admission")


# every check's expectation per profile, then (full_docker, build_only), and from_source: the source-build answer
# (buildpacks: the CNB lifecycle as a non-root user with no capabilities, what every profile here admits, Pod Security
# restricted included)
PERMISSIVE: dict[str, Any] = {
    "privileged-admission": PASS,
    "overlay-cache": PASS,
    "docker-run": PASS,
    "buildkit-rootless": PASS,
    "socket-sharing": PASS,
    "lsm": PASS,
    "sysbox": SYSBOX_ABSENT,
    "host-socket": NO_DOCKER_SOCKET,
    "kaniko": PASS,
    "buildpacks": PASS,
    "modes": ("dind", "buildkit-rootless"),
    "from_source": "buildpacks",
}
DENY_PRIVILEGED: dict[str, Any] = {
    **PERMISSIVE,
    "privileged-admission": want("fail", says=("privileged pod rejected by validating-admission-policy", VAP)),
    "overlay-cache": PRIVILEGED_DENIED,
    "docker-run": PRIVILEGED_DENIED,
    "socket-sharing": PRIVILEGED_DENIED,
    "modes": ("none", "buildkit-rootless"),
}
PSA_RESTRICTED: dict[str, Any] = {
    **PERMISSIVE,
    "privileged-admission": psa_refused("restricted", "fail"),
    "overlay-cache": psa_refused("restricted"),
    "docker-run": psa_refused("restricted"),
    "socket-sharing": psa_refused("restricted"),
    "buildkit-rootless": psa_refused("restricted", "fail"),
    "host-socket": psa_refused("restricted", "fail"),
    "kaniko": psa_refused("restricted", "fail"),  # restricted forbids running as root
    "lsm": psa_refused("restricted"),  # its tools pod runs as the image's root user
    "buildpacks": PASS,  # the only build path left: from source, never a Dockerfile
    "modes": ("none", "none"),
}
USERNS_OFF_PROFILE: dict[str, Any] = {
    **PERMISSIVE,
    "buildkit-rootless": USERNS_OFF,
    "lsm": want("fail", says=("observed settings block buildkit-rootless", "user namespaces are disabled")),
    "modes": ("dind", "kaniko"),
}
EXPECTED: dict[str, dict[str, Any]] = {
    "permissive": PERMISSIVE,
    "dind-legacy": PERMISSIVE,  # Docker 20.10 in the DinD image: every verdict as with Docker 29
    "two-nodes": PERMISSIVE,  # untargeted: the ci node's taint keeps every probe on the default node
    "node-vm": PERMISSIVE,  # untargeted: the vm node's taint keeps every probe off it (test_vm_node targets it)
    "pod-mtu-1400": PERMISSIVE,  # nested transfers stall: a WARNING in docker-run's summary, not a status change
    "deny-privileged": DENY_PRIVILEGED,
    "deny-privileged+userns-off": {  # neither privileged nor user namespaces: Kaniko is the build path left
        **DENY_PRIVILEGED,
        "buildkit-rootless": USERNS_OFF,
        "lsm": want("fail", says=("observed settings block buildkit-rootless", "user namespaces are disabled")),
        "modes": ("none", "kaniko"),
    },
    "psa-baseline": {
        **PERMISSIVE,
        "privileged-admission": psa_refused("baseline", "fail"),
        "overlay-cache": psa_refused("baseline"),
        "docker-run": psa_refused("baseline"),
        "socket-sharing": psa_refused("baseline"),
        "buildkit-rootless": psa_refused("baseline", "fail"),
        "host-socket": psa_refused("baseline", "fail"),  # hostPath: the mode is refused, not merely absent
        "kaniko": PASS,  # root, default capabilities and seccomp, no escalation: what baseline allows
        "modes": ("none", "kaniko"),
    },
    "psa-restricted": PSA_RESTRICTED,
    "psa-restricted+two-nodes": PSA_RESTRICTED,  # untargeted: the ci node's taint keeps every probe on the default node
    "userns-off": USERNS_OFF_PROFILE,
    "userns-off+node-vm": USERNS_OFF_PROFILE,  # untargeted: as userns-off (test_vm_node targets the vm node)
    "node-vm+vm-6.12+vm-selinux": PERMISSIVE,  # untargeted: the SELinux vm node's taint keeps every probe off it
    "sysbox-class": {
        **PERMISSIVE,
        "sysbox": want("fail", says=("RuntimeClass sysbox-runc exists but the node has no such handler",)),
    },
    "cache-fuse": {
        **PERMISSIVE,
        "overlay-cache": want("fail", says=("overlay fails on StorageClass dindcheck-cache (fuse)",)),
    },
}


@pytest.fixture(scope="module")
def expected(profile: Profile) -> dict[str, Any]:
    if profile.name not in EXPECTED:
        pytest.skip(f"no expectations for profile {profile.name}")
    return EXPECTED[profile.name]


def test_report_is_valid_v1(suite_run: SuiteRun) -> None:
    assert suite_run.report, f"no JSON report written; output:\n{suite_run.output[-3000:]}"
    assert suite_run.report["schema"] == "dindcheck/report/v1"
    json_report.validate(suite_run.report)
    assert suite_run.report["cluster"]["version"].startswith("v1.35.")
    assert (suite_run.out_dir / "report.md").is_file()
    assert (suite_run.out_dir / "junit.xml").is_file()


@pytest.mark.parametrize("check_id", [definition.id for definition in catalog()])
def test_check_status(suite_run: SuiteRun, expected: dict[str, Any], check_id: str) -> None:
    """Every check of every profile: its status and, where it can be said, its cause."""
    assert check_id in expected, f"no expectation for {check_id}: every check says something checkable"
    wanted: Want = expected[check_id]
    check = suite_run.check(check_id)
    assert check["summary"], f"{check_id} has no summary"
    assert_as_wanted(check_id, check, wanted)
    if wanted.refused_by:
        answer = quoted_refusal(check)
        assert answer["source"] == wanted.refused_by, answer
        assert answer["message"] in check["summary"], "the refusal is quoted whole"


def quoted_refusal(check: dict[str, Any]) -> dict[str, Any]:
    """The refusal a check's summary quotes.

    Of the DinD spec (privileged-admission), of the builder's own spec dry-run alone (BuildKit, Kaniko), else of the
    probe's pod.
    """
    evidence = check["evidence"]
    answer = evidence["specs"]["dind"] if check["id"] == "privileged-admission" else None
    answer = answer or evidence.get("admission_of_the_tested_spec") or evidence["admission"]
    return dict(answer)


def test_recommendation(suite_run: SuiteRun, expected: dict[str, Any]) -> None:
    recommendation = suite_run.report["recommendation"]
    assert (recommendation["full_docker"], recommendation["build_only"]) == expected["modes"], recommendation["reasons"]
    assert recommendation["reasons"]
    assert "skypilot" in recommendation["snippets"]


def test_exit_code_follows_checks(suite_run: SuiteRun) -> None:
    failed = any(c["status"] == "fail" for c in suite_run.report["checks"])
    assert suite_run.exit_code == (1 if failed else 0), suite_run.output[-2000:]


def test_nothing_left_behind(suite_run: SuiteRun, testbed_env: dict[str, str]) -> None:
    assert suite_run.exit_code in (0, 1)
    assert wait_until_clean(testbed_env, 30) == []


def test_never_a_pass_built_on_a_rejected_pod(suite_run: SuiteRun) -> None:
    admission = suite_run.check("privileged-admission")
    if admission["status"] == "fail":
        for check_id in ("docker-run", "socket-sharing"):
            assert suite_run.check(check_id)["status"] != "pass"
        assert not suite_run.mode("dind")["usable"]


def test_rejections_quote_the_cluster(suite_run: SuiteRun, profile: Profile) -> None:
    admission = suite_run.check("privileged-admission")
    if admission["status"] != "fail":
        pytest.skip("privileged pods are admitted on this profile")
    answer = admission["evidence"]["specs"]["dind"]
    assert answer["admitted"] is False
    assert answer["message"], "the API server's message was not recorded"
    assert answer["message"] in admission["summary"]
    want_source = "pod-security-admission" if profile.psa_default != "privileged" else "validating-admission-policy"
    assert answer["source"] == want_source
    skipped = suite_run.check("docker-run")
    assert answer["source"] in skipped["summary"] or "rejected" in skipped["summary"]


def test_buildkit_admission_failure_quotes_psa(suite_run: SuiteRun, profile: Profile) -> None:
    if profile.psa_default == "privileged":
        pytest.skip("PSA default is privileged on this profile")
    buildkit = suite_run.check("buildkit-rootless")
    answer = buildkit["evidence"]["admission_of_the_tested_spec"]
    assert answer["admitted"] is False
    assert answer["source"] == "pod-security-admission"
    assert answer["message"] in buildkit["summary"]
    assert "Unconfined" in answer["message"] or "seccomp" in answer["message"].lower()
    # the probe pod's own refusal names BuildKit's container, never the throwaway registry helper beside it
    refusal = buildkit["evidence"]["admission"]["message"]
    assert '"buildkitd"' in refusal, refusal
    assert '"registry"' not in refusal, refusal


def test_userns_off_cause_comes_from_buildkitd(suite_run: SuiteRun, profile: Profile) -> None:
    if profile.userns != "off":
        pytest.skip("user namespaces are on")
    buildkit = suite_run.check("buildkit-rootless")
    log = " ".join(buildkit["evidence"].get("buildkitd_log", []))
    assert log, "buildkitd's own output was not recorded"
    assert "user namespaces" in buildkit["summary"]
    assert "no space left on device" in log or "max_user_namespaces" in log
    lsm = suite_run.check("lsm")
    assert "buildkit-rootless" in lsm["evidence"]["blocks"], lsm["evidence"]
    assert lsm["status"] == "fail"


def test_cache_fuse_fails_on_the_class_not_on_emptydir(suite_run: SuiteRun, profile: Profile) -> None:
    if profile.cache_fs != "fuse":
        pytest.skip("the cache class is not FUSE-backed")
    overlay = suite_run.check("overlay-cache")["evidence"]
    assert overlay["emptydir"]["overlay"] is True
    assert overlay["cache_class"]["overlay"] is False
    assert overlay["cache_class"]["reason"], "the kernel's or mount's reason was not recorded"
    assert "fuse" in overlay["cache_class"]["fs_type"].lower()
    dind = suite_run.mode("dind")
    assert dind["usable"]
    assert any("cache" in warning.lower() for warning in dind["warnings"])


def test_pushed_manifest_is_read_back(suite_run: SuiteRun) -> None:
    buildkit = suite_run.check("buildkit-rootless")
    if buildkit["status"] != "pass":
        pytest.skip("rootless BuildKit does not work on this profile")
    readback = buildkit["evidence"]["readback"]
    assert readback["ok"] is True, readback
    assert readback["digest"] == buildkit["evidence"]["digest"]
    assert "manifest" in readback["media_type"]
    assert buildkit["evidence"]["base"] == "ok", "the build did not start from a base image pulled from the registry"
    assert "RUN step" in buildkit["summary"]


CONTAINER_ROLES = {"dind": "dind", "job": "dind", "buildkitd": "buildkit", "kaniko": "kaniko", "creator": "builder"}
"""The image role each container of a mode's spec runs (the job container runs the DinD image: no --image-job)."""


def test_snippets_are_the_tested_specs(suite_run: SuiteRun, testbed_env: dict[str, str]) -> None:
    """The config to paste is the spec a probe ran: the run's images, resources and pod fields, in every container.

    Every recommended mode has its snippet, and every container of it (GitLab's job and service too, when given)
    runs the image the run was given for that role, as the report lists it, with the run's requests and limits; the
    pod carries the probe pod's own pod fields, not its deadline and grace period.
    """
    recommendation = suite_run.report["recommendation"]
    snippets = recommendation["snippets"]
    given = {
        "dind": testbed_env["TESTBED_IMAGE_DIND"],
        "buildkit": testbed_env["TESTBED_IMAGE_BUILDKIT"],
        "kaniko": testbed_env["TESTBED_IMAGE_KANIKO"],
        "builder": testbed_env["TESTBED_IMAGE_BUILDER"],
    }
    listed = {role: image["ref"] for role, image in suite_run.report["cluster"]["images"].items()}
    assert {role: listed.get(role) for role in given} == given, listed
    modes = ("full_docker", "build_only", "from_source")
    recommended = {recommendation[key] for key in modes if key in recommendation} - {"none"}
    for mode in recommended:
        assert mode in snippets, f"no config to paste for the recommended mode {mode}: {sorted(snippets)}"
        spec = yaml.safe_load(snippets[mode])["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            role = CONTAINER_ROLES.get(container["name"])
            assert role is not None, f"{mode}: a container no mode has: {container['name']}"
            assert container["image"] == given[role], (mode, container["name"], container["image"])
            assert container["resources"] == Resources().to_spec(), (mode, container["name"], container["resources"])
        pod_fields = (spec["restartPolicy"], spec["automountServiceAccountToken"], spec["enableServiceLinks"])
        assert pod_fields == ("Never", False, False), spec
        assert "activeDeadlineSeconds" not in spec
        assert "terminationGracePeriodSeconds" not in spec
    if "dind" in snippets:  # docker-run proved the nested run in the classic layout: that is the pod printed
        spec = yaml.safe_load(snippets["dind"])["spec"]
        assert "initContainers" not in spec, spec
        assert [c["name"] for c in spec["containers"]] == ["dind", "job"]
    if "gitlab" in snippets:
        job = yaml.safe_load(snippets["gitlab"])["docker-build"]
        assert job["image"] == given["dind"], job
        assert [service["name"] for service in job["services"]] == [given["dind"]], job


def test_kaniko_rejection_quotes_pod_security(suite_run: SuiteRun, profile: Profile) -> None:
    """Under restricted, Kaniko's own spec (not the probe's helpers) is refused, in the API server's words."""
    if profile.psa_default != "restricted":
        pytest.skip("Kaniko's spec is admitted below Pod Security restricted")
    kaniko = suite_run.check("kaniko")
    answer = kaniko["evidence"]["admission_of_the_tested_spec"]
    assert answer["admitted"] is False
    assert answer["source"] == "pod-security-admission"
    assert answer["message"] in kaniko["summary"]
    assert "runAsNonRoot" in answer["message"] or "runAsUser=0" in answer["message"], answer["message"]
    assert '"registry"' not in kaniko["evidence"]["admission"]["message"], "the registry helper was refused too"
    dry_run = suite_run.check("privileged-admission")["evidence"]["specs"]["kaniko"]
    assert dry_run["admitted"] is False


def test_kaniko_build_is_read_back(suite_run: SuiteRun) -> None:
    kaniko = suite_run.check("kaniko")
    if kaniko["status"] != "pass":
        pytest.skip("Kaniko does not work on this profile")
    evidence = kaniko["evidence"]
    assert evidence["readback"]["ok"] is True, evidence["readback"]
    assert evidence["readback"]["digest"] == evidence["digest"]
    assert evidence["steps"]["base"]["message"].startswith("sha256:"), "the base was not pushed to the registry"
    assert "RUN step" in kaniko["summary"]
    snippet = yaml.safe_load(suite_run.report["recommendation"]["snippets"].get("kaniko", "{}") or "{}")
    if suite_run.report["recommendation"]["build_only"] == "kaniko":
        (container,) = snippet["spec"]["containers"]
        assert container["securityContext"]["runAsUser"] == 0
        assert "privileged" not in container["securityContext"]


def test_the_docker_release_probed_is_in_the_evidence(suite_run: SuiteRun, profile: Profile) -> None:
    """Docker 29 by default (as docker:dind today), 20.10 with --dind legacy: the report says which ran."""
    run = suite_run.check("docker-run")
    if run["status"] != "pass":
        pytest.skip("no nested docker run on this profile")
    evidence = run["evidence"]
    if profile.dind == "legacy":
        assert evidence["server_version"].startswith("20.10."), evidence
        assert (evidence["driver"], evidence["image_store"]) == ("overlay2", "graphdriver"), evidence
    else:
        assert evidence["server_version"].startswith("29."), evidence
        assert (evidence["driver"], evidence["image_store"]) == ("overlayfs", "containerd"), evidence
    assert f"Docker {evidence['server_version']}" in run["summary"]
    sharing = suite_run.check("socket-sharing")["evidence"]["classic"]
    assert sharing["server_version"] == evidence["server_version"], sharing


def test_progress_is_shown_while_waiting(suite_run: SuiteRun) -> None:
    """A wait longer than the progress interval prints what each probe is doing; a run over at once has no wait."""
    slowest = max(check["duration_s"] for check in suite_run.report["checks"])
    if slowest < PROGRESS_EVERY_S + 1:
        pytest.skip(f"every probe finished within {slowest:.1f}s: nothing waited long enough to show progress")
    assert re.search(r"^  \[\s*\d+\.\ds\] [a-z-]+: \S", suite_run.output, re.MULTILINE), suite_run.output[:3000]


def test_a_baseline_of_the_same_profile_says_no_change(
    suite_run: SuiteRun, profile: Profile, testbed_env: dict[str, str]
) -> None:
    """--baseline against this profile's own report: one 'no change' line and an empty changes block."""
    if profile.name != "permissive":
        pytest.skip("shown once, on the permissive profile")
    again = run_suite(
        testbed_env,
        suite_run.out_dir.parent / "baseline-same",
        "--baseline",
        str(suite_run.out_dir / "report.json"),
        "--fail-on-regression",
    )
    assert again.exit_code == 0, again.output[-3000:]
    assert again.report["changes"]["none"] is True, again.report["changes"]
    assert re.search(r"^since the baseline of \S+: no change$", again.output, re.MULTILINE), again.output[-3000:]


def test_source_builds_are_their_own_answer(suite_run: SuiteRun, expected: dict[str, Any]) -> None:
    """from_source names buildpacks where they work; where no Dockerfile builder does, the report says so plainly."""
    if "from_source" not in expected:
        pytest.skip("no from_source expectation for this profile")
    recommendation = suite_run.report["recommendation"]
    assert recommendation["from_source"] == expected["from_source"], recommendation["reasons"]
    sentence = "Dockerfile builds have no verified path on this cluster (build_only: none), but source builds do"
    source_only = recommendation["build_only"] == "none" and recommendation["from_source"] == "buildpacks"
    assert any(reason.startswith(sentence) for reason in recommendation["reasons"]) == source_only
    assert f"from source, no Dockerfile (build + push): {expected['from_source']}" in suite_run.output
    if source_only:
        assert sentence in suite_run.output


def test_buildpacks_build_is_read_back_in_the_restricted_shape(
    suite_run: SuiteRun, testbed_env: dict[str, str]
) -> None:
    """A pass is a source build pushed and read back, run as stored by the API server: restricted, non-root."""
    buildpacks = suite_run.check("buildpacks")
    if buildpacks["status"] != "pass":
        pytest.skip("buildpacks do not work on this profile")
    evidence = buildpacks["evidence"]
    assert evidence["builder"] == testbed_env["TESTBED_IMAGE_BUILDER"]
    assert evidence["readback"]["ok"] is True, evidence["readback"]
    assert evidence["digest"].startswith("sha256:"), "the creator's report gave no digest"
    assert evidence["readback"]["digest"] == evidence["digest"]
    stored = evidence["stored_security_context"]
    assert stored["runAsNonRoot"] is True
    assert stored["allowPrivilegeEscalation"] is False
    assert stored["capabilities"]["drop"] == ["ALL"]
    assert stored["seccompProfile"]["type"] == "RuntimeDefault"
    assert "from source (no Dockerfile)" in buildpacks["summary"]
    snippet = yaml.safe_load(suite_run.report["recommendation"]["snippets"].get("buildpacks", "{}") or "{}")
    if suite_run.report["recommendation"]["from_source"] == "buildpacks":
        (container,) = snippet["spec"]["containers"]
        assert container["name"] == "creator"
        assert container["image"] == testbed_env["TESTBED_IMAGE_BUILDER"]
        assert container["securityContext"] == {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
