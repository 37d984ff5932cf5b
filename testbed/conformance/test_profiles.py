"""What the report must say on each testbed profile (issue: conformance in CI).

Statuses and modes come from the expectations table; quoted causes must come from the cluster's own answer, so
tests check that the summary carries what the evidence recorded from the API server or the pod, plus the source
the answer was classified as, never a message string of the test's own.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from dindcheck.plugin import PROGRESS_EVERY_S
from probes.definitions import catalog
from reports import json_report
from testbed.conformance.harness import Profile, SuiteRun, run_suite, wait_until_clean

ANY = "-"
# check statuses per profile ("-": whatever is true, stated honestly), then (full_docker, build_only); from_source:
# the source-build answer (buildpacks: the CNB lifecycle as a non-root user with no capabilities, what every profile
# here admits, Pod Security restricted included)
PERMISSIVE: dict[str, Any] = {
    "privileged-admission": {"pass"},
    "overlay-cache": {"pass"},
    "docker-run": {"pass"},
    "buildkit-rootless": {"pass"},
    "socket-sharing": {"pass"},
    "lsm": {"pass"},
    "sysbox": {"skipped"},
    "host-socket": {"skipped"},
    "kaniko": {"pass"},
    "buildpacks": {"pass"},
    "modes": ("dind", "buildkit-rootless"),
    "from_source": "buildpacks",
}
EXPECTED: dict[str, dict[str, Any]] = {
    "permissive": PERMISSIVE,
    "dind-legacy": PERMISSIVE,  # Docker 20.10 in the DinD image: every verdict as with Docker 29
    "two-nodes": PERMISSIVE,  # untargeted: the ci node's taint keeps every probe on the default node
    "pod-mtu-1400": PERMISSIVE,  # nested transfers stall: a WARNING in docker-run's summary, not a status change
    "deny-privileged": {
        "privileged-admission": {"fail"},
        "overlay-cache": ANY,
        "docker-run": {"skipped", "inconclusive"},
        "buildkit-rootless": {"pass"},
        "kaniko": {"pass"},
        "buildpacks": {"pass"},
        "modes": ("none", "buildkit-rootless"),
        "from_source": "buildpacks",
    },
    "deny-privileged+userns-off": {  # neither privileged nor user namespaces: Kaniko is the build path left
        "privileged-admission": {"fail"},
        "docker-run": {"skipped", "inconclusive"},
        "buildkit-rootless": {"fail"},
        "kaniko": {"pass"},
        "buildpacks": {"pass"},
        "modes": ("none", "kaniko"),
        "from_source": "buildpacks",
    },
    "psa-baseline": {
        "privileged-admission": {"fail"},
        "overlay-cache": ANY,
        "docker-run": {"skipped", "inconclusive"},
        "buildkit-rootless": {"fail"},
        "kaniko": {"pass"},  # root, default capabilities and seccomp, no escalation: what baseline allows
        "buildpacks": {"pass"},
        "modes": ("none", "kaniko"),
        "from_source": "buildpacks",
    },
    "psa-restricted": {
        "privileged-admission": {"fail"},
        "buildkit-rootless": {"fail"},
        "kaniko": {"fail"},  # restricted forbids running as root
        "buildpacks": {"pass"},  # the only build path left: from source, never a Dockerfile
        "modes": ("none", "none"),
        "from_source": "buildpacks",
    },
    "psa-restricted+two-nodes": {  # untargeted: the ci node's taint keeps every probe on the default node
        "privileged-admission": {"fail"},
        "buildkit-rootless": {"fail"},
        "kaniko": {"fail"},
        "buildpacks": {"pass"},
        "modes": ("none", "none"),
        "from_source": "buildpacks",
    },
    "userns-off": {
        "privileged-admission": {"pass"},
        "overlay-cache": {"pass"},
        "docker-run": {"pass"},
        "buildkit-rootless": {"fail"},
        "kaniko": {"pass"},
        "buildpacks": {"pass"},
        "modes": ("dind", "kaniko"),
        "from_source": "buildpacks",
    },
    "sysbox-class": {
        "privileged-admission": {"pass"},
        "sysbox": {"fail"},
        "kaniko": {"pass"},
        "modes": ("dind", "buildkit-rootless"),
    },
    "cache-fuse": {
        "privileged-admission": {"pass"},
        "overlay-cache": {"fail"},
        "docker-run": {"pass"},
        "buildkit-rootless": {"pass"},
        "kaniko": {"pass"},
        "modes": ("dind", "buildkit-rootless"),
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
    want = expected.get(check_id, ANY)
    check = suite_run.check(check_id)
    assert check["summary"], f"{check_id} has no summary"
    if check["status"] != "pass":
        assert check["remediation"], f"{check_id} {check['status']} without remediation"
    if want != ANY:
        assert check["status"] in want, f"{check_id}: {check['status']}: {check['summary']}"


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


def test_snippets_are_the_tested_specs(suite_run: SuiteRun, testbed_env: dict[str, str]) -> None:
    """The config to paste is the spec a probe ran: the run's images and resources, in every container."""
    snippets = suite_run.report["recommendation"]["snippets"]
    run_images = {
        testbed_env[key]
        for key in (
            "TESTBED_IMAGE_DIND",
            "TESTBED_IMAGE_BUILDKIT",
            "TESTBED_IMAGE_TOOLS",
            "TESTBED_IMAGE_KANIKO",
            "TESTBED_IMAGE_BUILDER",
        )
    }
    for mode in ("dind", "buildkit-rootless", "kaniko", "sysbox", "host-socket", "buildpacks"):
        if mode not in snippets:
            continue
        spec = yaml.safe_load(snippets[mode])["spec"]
        containers = spec.get("initContainers", []) + spec["containers"]
        assert {c["image"] for c in containers} <= run_images, containers
        assert all(c["resources"]["limits"] for c in containers), containers
        # the probe pod's pod fields, not its own deadline and grace
        assert (spec["restartPolicy"], spec["automountServiceAccountToken"], spec["enableServiceLinks"]) == (
            "Never",
            False,
            False,
        ), spec
        assert "activeDeadlineSeconds" not in spec
        assert "terminationGracePeriodSeconds" not in spec
    if "dind" in snippets:  # docker-run proved the nested run in the classic layout: that is the pod printed
        spec = yaml.safe_load(snippets["dind"])["spec"]
        assert "initContainers" not in spec, spec
        assert [c["name"] for c in spec["containers"]] == ["dind", "job"]


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
