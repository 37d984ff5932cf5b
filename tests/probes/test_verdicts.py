"""Every probe's verdict over recorded outputs: a pass claims exactly what the probe did, causes are named."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from probes import specs
from probes.definitions import (
    _registry,
    buildkit_rootless,
    docker_run,
    host_socket,
    kaniko,
    lsm,
    overlay_cache,
    socket_sharing,
    sysbox,
)
from probes.definitions._docker import WAIT_FOR_DAEMON
from probes.definitions._registry import ManifestReadback
from probes.engine import CommandResult, Outcome, RunScope, key_values
from probes.exceptions import AdmissionRejectedError
from probes.model import Admission, Status
from probes.settings import Images, ProbeSettings
from tests.probes.pod_security import restricted_violations

# ----- sysbox: dockerd without privileged + a nested run + a real user namespace ---------------------------------
SYSBOX_OK: dict[str, Any] = {
    "daemon": "ok",
    "import": "ok",
    "run_none": "ok",
    "run_bridge": "ok",
    "driver": "overlay2",
    "uid_map": "0 165536 65536",
}


def test_sysbox_passes_only_with_dockerd_a_nested_run_and_a_remapped_root() -> None:
    outcome = sysbox.verdict(dict(SYSBOX_OK))
    assert outcome.status is Status.PASS
    assert "uid_map 0 165536 65536" in outcome.summary


def test_sysbox_pod_that_started_but_ran_no_dockerd_fails() -> None:
    """The old probe passed as soon as a pod started."""
    evidence = {"daemon": "unreachable", "daemon_error": "Cannot connect", "uid_map": "0 165536 65536"}
    outcome = sysbox.verdict({**evidence, "dockerd_log": 'level=error msg="failed to mount overlay"'})
    assert outcome.status is Status.FAIL
    assert "never answered" in outcome.summary


def test_sysbox_without_a_user_namespace_is_not_sysbox() -> None:
    outcome = sysbox.verdict({**SYSBOX_OK, "uid_map": "0 0 4294967295"})
    assert outcome.status is Status.FAIL
    assert "no user namespace" in outcome.summary


def test_sysbox_nested_run_failure_fails_with_its_error() -> None:
    outcome = sysbox.verdict({**SYSBOX_OK, "run_bridge": "failed", "run_bridge_error": "OCI runtime create failed"})
    assert outcome.status is Status.FAIL
    assert "OCI runtime create failed" in outcome.summary


def test_a_missing_sysbox_handler_is_final_other_sandbox_errors_are_not() -> None:
    message = (
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: "
        'no runtime for "sysbox-runc" is configured'
    )
    assert sysbox.handler_missing("FailedCreatePodSandBox", message)
    assert not sysbox.handler_missing("FailedCreatePodSandBox", "failed to setup network for sandbox: plugin timeout")
    assert not sysbox.handler_missing("FailedMount", message)


def test_sysbox_with_an_unreadable_uid_map_proves_no_isolation() -> None:
    evidence = {key: value for key, value in SYSBOX_OK.items() if key != "uid_map"}
    outcome = sysbox.verdict(evidence)
    assert outcome.status is Status.FAIL
    assert "uid_map unreadable" in outcome.summary


def test_real_userns_reads_uid_map_lines() -> None:
    assert sysbox.real_userns("0 100000 65536")
    assert not sysbox.real_userns("0 0 4294967295")
    assert not sysbox.real_userns("")


# ----- rootless BuildKit: a RUN step on a pulled base, pushed, read back ----------------------------------------
REF = "localhost:5000/dindcheck/probe:abcde"
BUILT = """buildkitd=ok
snapshotter=overlayfs
base=ok
base_digest=sha256:aaa
build_push=ok
build_push_digest=sha256:bbb
"""


def built(stdout: str = BUILT) -> tuple[Outcome, dict[str, Any]]:
    evidence: dict[str, Any] = {"image": REF}
    return buildkit_rootless.verdict(CommandResult(0, stdout, "", 1.0), REF, evidence), evidence


def test_buildkit_build_with_run_step_then_readback_passes() -> None:
    outcome, evidence = built()
    assert outcome.status is Status.PASS
    assert "RUN step" in outcome.summary
    readback = ManifestReadback(
        True, "api-server pod proxy", "sha256:bbb", "application/vnd.oci.image.manifest.v1+json"
    )
    assert _registry.readback_verdict(outcome, readback, evidence, builder="BuildKit").status is Status.PASS


def test_buildkit_readback_404_is_a_fail_not_a_pass() -> None:
    outcome, evidence = built()
    readback = ManifestReadback(False, "api-server pod proxy", error="404 Not Found: MANIFEST_UNKNOWN", not_found=True)
    final = _registry.readback_verdict(outcome, readback, evidence, builder="BuildKit")
    assert final.status is Status.FAIL
    assert "no manifest" in final.summary


def test_buildkit_readback_of_another_digest_fails() -> None:
    outcome, evidence = built()
    readback = ManifestReadback(True, "http from this machine", "sha256:other", "oci")
    assert _registry.readback_verdict(outcome, readback, evidence, builder="BuildKit").status is Status.FAIL


def test_buildkit_unreadable_registry_after_a_push_proves_nothing() -> None:
    outcome, evidence = built()
    readback = ManifestReadback(False, "http from this machine", error="timed out")
    assert _registry.readback_verdict(outcome, readback, evidence, builder="BuildKit").status is Status.INCONCLUSIVE


def test_buildkit_run_step_failure_names_the_masked_proc() -> None:
    stdout = BUILT.replace("build_push=ok", "build_push=failed") + (
        "\nbuild_push_error=runc run failed: unable to start container process: error mounting "
        '"proc" to rootfs at "/proc": mount proc:/proc (via /proc/self/fd/6), flags: 0xe: operation not permitted'
    )
    outcome, _ = built(stdout)
    assert outcome.status is Status.FAIL
    assert "--oci-worker-no-process-sandbox" in outcome.summary
    assert "building FROM it with a RUN step" in outcome.summary


def test_buildkit_unreachable_registry_is_inconclusive() -> None:
    stdout = "buildkitd=ok\nbase=failed\nbase_error=failed to do request: dial tcp 127.0.0.1:9: connection refused"
    outcome, _ = built(stdout)
    assert outcome.status is Status.INCONCLUSIVE
    assert "connection refused" in outcome.summary


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("newuidmap: write to uid_map failed: Operation not permitted; newuidmap: Could not set caps", "cannot gain"),
        ("[rootlesskit:parent] error: failed to share mount point: /: permission denied", "AppArmor confines"),
        ("fork/exec /proc/self/exe: operation not permitted", "forbids creating user namespaces"),
        ("sysctl kernel.apparmor_restrict_unprivileged_userns is 1", "AppArmor restricts unprivileged"),
    ],
)
def test_buildkit_known_failures_are_named_fails(error: str, cause: str) -> None:
    stdout = BUILT.replace("build_push=ok", "build_push=failed") + f"\nbuild_push_error={error}"
    outcome, _ = built(stdout)
    assert outcome.status is Status.FAIL
    assert cause in outcome.summary
    assert error[:30] in outcome.summary, "the summary lost BuildKit's own words"


@pytest.mark.parametrize(
    "error",
    [
        "failed to authorize: 401 Unauthorized",
        "dial tcp: lookup reg.corp: no such host",
        "tls: failed to verify certificate: x509: certificate signed by unknown authority",
    ],
)
def test_buildkit_push_problems_prove_nothing_about_buildkit(error: str) -> None:
    stdout = BUILT.replace("build_push=ok", "build_push=failed") + f"\nbuild_push_error={error}"
    outcome, _ = built(stdout)
    assert outcome.status is Status.INCONCLUSIVE
    assert "--registry" in (outcome.remediation or "")


def test_buildkit_unknown_build_failure_fails_with_its_words() -> None:
    stdout = BUILT.replace("build_push=ok", "build_push=failed") + "\nbuild_push_error=process did not complete: 2"
    outcome, _ = built(stdout)
    assert outcome.status is Status.FAIL
    assert "process did not complete: 2" in outcome.summary


def test_buildkit_userns_disabled_is_named() -> None:
    log = "[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: no space left on device"
    outcome = buildkit_rootless.verdict(
        CommandResult(0, "buildkitd=unreachable\nbuildkitd_error=connection refused", "", 1.0),
        REF,
        {},
        log=lambda: log,
    )
    assert outcome.status is Status.FAIL
    assert "user namespaces are disabled" in outcome.summary


# ----- host socket: absence is the kubelet's hostPath type check, nothing else -----------------------------------
def test_socket_absent_only_from_the_hostpath_type_check() -> None:
    message = 'MountVolume.SetUp failed for volume "docker-sock" : hostPath type check failed: /var/run/docker.sock'
    assert host_socket.socket_absent("FailedMount", message + " is not a socket file")
    assert not host_socket.socket_absent("FailedMount", "rpc error: open /var/lib/kubelet/x: no such file or directory")
    assert not host_socket.socket_absent("BackOff", "hostPath type check failed")


def test_host_socket_passes_only_when_the_daemon_answers() -> None:
    assert host_socket.verdict({"server": "24.0.7"}).status is Status.PASS
    assert host_socket.verdict({"server": "Cannot connect to the Docker daemon"}).status is Status.FAIL


# ----- overlay: the mount's own words first ----------------------------------------------------------------------
def test_overlay_reason_quotes_the_mount_before_the_node_wide_kernel_log() -> None:
    reason = overlay_cache.overlay_reason(
        "mount: /cache/m: wrong fs type, bad option, bad superblock on overlay",
        "overlayfs: upper fs does not support tmpfile",
    )
    assert reason.startswith("mount: /cache/m: wrong fs type")
    assert reason.endswith("(kernel log on the node: overlayfs: upper fs does not support tmpfile)")
    assert overlay_cache.overlay_reason("", "") == ""


def test_overlay_fails_on_the_class_and_names_it() -> None:
    evidence = {
        "emptydir": {"overlay": True, "fs_type": "ext4", "reason": ""},
        "cache_class": {"storage_class": "fuse-cache", "overlay": False, "fs_type": "fuse.bindfs", "reason": "boom"},
    }
    outcome = overlay_cache.verdict(evidence, "fuse-cache", "")
    assert outcome.status is Status.FAIL
    assert "fuse-cache" in outcome.summary
    facts = overlay_cache.overlay_facts(evidence)
    cache = facts.cache_overlay()
    assert cache is not None
    assert cache.overlay is False


def test_overlay_pod_on_the_class_that_never_ran_proves_nothing_about_it() -> None:
    evidence = {
        "emptydir": {"overlay": True, "fs_type": "ext4"},
        "cache_class": {"storage_class": "slow", "overlay": None, "reason": "pod with the PVC did not run: x"},
    }
    outcome = overlay_cache.verdict(evidence, "slow", "Unschedulable: pvc unbound")
    assert outcome.status is Status.INCONCLUSIVE
    assert "Unschedulable: pvc unbound" in outcome.summary
    cache = overlay_cache.overlay_facts(evidence).cache_overlay()
    assert cache is not None
    assert cache.overlay is None


def test_overlay_failing_on_the_emptydir_fails_with_the_mount_error() -> None:
    evidence = {"emptydir": {"overlay": False, "fs_type": "xfs", "reason": "mount: permission denied"}}
    outcome = overlay_cache.verdict(evidence, None, "")
    assert outcome.status is Status.FAIL
    assert "mount: permission denied" in outcome.summary
    empty = overlay_cache.overlay_facts(evidence).emptydir_overlay()
    assert empty is not None
    assert (empty.overlay, empty.fs_type) == (False, "xfs")


def test_overlay_without_a_cache_class_says_only_emptydir_was_tested() -> None:
    outcome = overlay_cache.verdict({"emptydir": {"overlay": True, "fs_type": "ext4"}}, None, "")
    assert outcome.status is Status.PASS
    assert "only emptyDir tested" in outcome.summary


# ----- socket sharing and docker run -------------------------------------------------------------------------------
def admitted_pod(*init_containers: Any) -> Any:
    return SimpleNamespace(spec=SimpleNamespace(init_containers=list(init_containers) or None))


def test_native_sidecar_counts_only_as_the_server_stored_it() -> None:
    """SidecarContainers off, or a webhook, drops restartPolicy: the pod then holds a plain init container."""
    assert socket_sharing.native_as_admitted(admitted_pod(SimpleNamespace(restart_policy="Always")))
    assert not socket_sharing.native_as_admitted(admitted_pod(SimpleNamespace(restart_policy=None)))
    assert not socket_sharing.native_as_admitted(admitted_pod())


def test_socket_sharing_passes_on_the_native_layout_alone() -> None:
    classic = socket_sharing.layout_result({"daemon": "unreachable", "daemon_error": "Cannot connect"}, "")
    native = {"supported": True, **socket_sharing.layout_result({"daemon": "ok", "client_uid": "1000"}, "")}
    native["ready_s"] = 3.2
    outcome = socket_sharing.verdict({"classic": classic, "native_sidecar": native})
    assert outcome.status is Status.PASS
    assert "classic sidecar failed (Cannot connect)" in outcome.summary
    assert "native sidecar ready in 3.2s" in outcome.summary


def test_socket_sharing_layout_without_output_says_so() -> None:
    assert socket_sharing.layout_result({}, "")["reason"] == "the job container's script printed nothing"
    assert socket_sharing.layout_result({}, "sh: docker: not found")["reason"] == "sh: docker: not found"


def test_socket_sharing_names_a_permission_denied_socket() -> None:
    layout = socket_sharing.layout_result(
        {
            "daemon": "unreachable",
            "daemon_error": "permission denied while trying to connect to the Docker daemon socket",
            "client_uid": "1000",
        },
        "",
    )
    outcome = socket_sharing.verdict({"classic": layout, "native_sidecar": {"supported": False}})
    assert outcome.status is Status.FAIL
    assert "--group" in (outcome.remediation or "")


def test_socket_sharing_pod_that_never_ran_is_inconclusive() -> None:
    outcome = socket_sharing.verdict(
        {
            "classic": {"ok": False, "pod_ran": False, "reason": "ImagePullBackOff"},
            "native_sidecar": {"supported": False},
        }
    )
    assert outcome.status is Status.INCONCLUSIVE


def test_docker_run_iptables_failure_is_named_with_its_remedy() -> None:
    log = "Error initializing network controller: ... Failed to initialize nft: Protocol not supported"
    outcome = docker_run.verdict({"daemon": "unreachable", "dockerd_log": log})
    assert outcome.status is Status.FAIL
    assert "iptables backend" in outcome.summary
    assert "DOCKER_IPTABLES_LEGACY=1" in (outcome.remediation or "")


def test_docker_run_warns_when_the_nested_mtu_exceeds_the_pods() -> None:
    evidence = {
        "daemon": "ok",
        "import": "ok",
        "run_none": "ok",
        "run_bridge": "ok",
        "pod_mtu": "1400",
        "inner_mtu": "1500",
    }
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert "WARNING" in outcome.summary
    assert "--mtu=1400" in (outcome.remediation or "")


def test_docker_run_needs_the_bridge() -> None:
    evidence = {"daemon": "ok", "import": "ok", "run_none": "ok", "run_bridge": "failed", "run_bridge_error": "x"}
    assert docker_run.verdict(evidence).status is Status.FAIL


# ----- lsm: unreadable files are absent, not empty ----------------------------------------------------------------
def test_lsm_script_marks_unreadable_files_absent() -> None:
    assert '[ -r "$2" ]' in lsm.READINGS
    outcome = lsm.verdict("max_user_namespaces=<absent>\nselinux_enforce=<absent>\nuserns_try=ok\n", 0, "")
    assert outcome.status is Status.PASS
    assert outcome.evidence["active"] == []


def test_lsm_without_readings_is_inconclusive() -> None:
    assert lsm.verdict("", 1, "sh: not found").status is Status.INCONCLUSIVE


# ----- Docker 29: an API-version refusal is named, and waiting for it ends at once ----------------------------------
# moby's version middleware, as Docker 29.0 answers a Docker 20.10 CLI (API 1.41).
REFUSED = (
    "Error response from daemon: client version 1.41 is too old. Minimum supported API version is 1.44, "
    "please upgrade your client to a newer version"
)


def test_docker_run_names_an_api_version_refusal_with_both_remedies() -> None:
    evidence = {"daemon": "api_refused", "daemon_error": REFUSED, "client_version": "20.10.24", "client_api": "1.41"}
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.FAIL
    assert "API version" in outcome.summary
    assert "Minimum supported API version is 1.44" in outcome.summary
    assert "20.10.24" in outcome.summary
    assert "DOCKER_MIN_API_VERSION" in (outcome.remediation or "")


def test_socket_sharing_names_an_api_version_refusal() -> None:
    classic = socket_sharing.layout_result(
        {"daemon": "api_refused", "daemon_error": REFUSED, "client_version": "20.10.24"}, ""
    )
    outcome = socket_sharing.verdict({"classic": classic, "native_sidecar": {"supported": False}})
    assert outcome.status is Status.FAIL
    assert "API version" in outcome.summary
    assert "20.10.24" in outcome.summary
    assert "DOCKER_MIN_API_VERSION" in (outcome.remediation or "")


def test_sysbox_names_an_api_version_refusal() -> None:
    outcome = sysbox.verdict({"daemon": "api_refused", "daemon_error": REFUSED})
    assert outcome.status is Status.FAIL
    assert "API version" in outcome.summary


def test_docker_run_records_the_release_and_the_image_store() -> None:
    evidence = {
        "daemon": "ok",
        "import": "ok",
        "run_none": "ok",
        "run_bridge": "ok",
        "driver": "overlayfs",
        "image_store": "containerd",
        "server_version": "29.8.1",
    }
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert "Docker 29.8.1, driver overlayfs (containerd image store)" in outcome.summary
    assert "degraded" not in outcome.summary


def _wait_with_fake_docker(tmp_path: Any, info_answer: str, info_rc: int) -> dict[str, str]:
    """WAIT_FOR_DAEMON run by a real sh against a stand-in `docker` whose `info` prints info_answer (a script)."""
    fake = tmp_path / "docker"
    fake.write_text(
        f'#!/bin/sh\ncase "$1" in\n  version) echo 20.10.24 ;;\n  info) {info_answer}; exit {info_rc} ;;\nesac\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run(
        ["sh", "-c", WAIT_FOR_DAEMON], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return key_values(done.stdout)


@pytest.mark.parametrize(
    "answer",
    [
        # Docker 20.10's CLI: the daemon's words in the Server section on stdout, a generic line on stderr
        (
            f"printf 'Client:\\n Debug Mode: false\\n\\nServer:\\nERROR: {REFUSED}\\n'; "
            "echo 'errors pretty printing info' >&2"
        ),
        f"echo '{REFUSED}' >&2",  # newer CLIs: on stderr
    ],
    ids=["cli-20.10", "cli-newer"],
)
def test_waiting_for_dockerd_stops_at_once_on_an_api_refusal(tmp_path: Any, answer: str) -> None:
    started = time.monotonic()
    found = _wait_with_fake_docker(tmp_path, answer, 1)
    assert time.monotonic() - started < 5
    assert found["daemon"] == "api_refused"
    assert "Minimum supported API version is 1.44" in found["daemon_error"]
    assert found["client_version"] == "20.10.24"


def test_waiting_for_dockerd_reports_success(tmp_path: Any) -> None:
    found = _wait_with_fake_docker(tmp_path, "echo 'Server Version: 29.8.1'", 0)
    assert found["daemon"] == "ok"
    assert "waited_s" in found


# ----- kaniko: every step's own exit, the digest from the termination message, named causes -------------------------
KANIKO_REF = "localhost:5000/dindcheck/kaniko:abcde"
DIGEST = "sha256:" + "b" * 64


def kaniko_steps(**failed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {
        "prepare": {"exit_code": 0, "reason": "Completed", "message": ""},
        "base": {"exit_code": 0, "reason": "Completed", "message": "sha256:" + "a" * 64},
        "kaniko": {"exit_code": 0, "reason": "Completed", "message": DIGEST},
    }
    steps.update(failed)
    return steps


def test_kaniko_passes_with_the_digest_of_its_termination_message() -> None:
    evidence: dict[str, Any] = {"image": KANIKO_REF}
    outcome = kaniko.verdict(kaniko_steps(), KANIKO_REF, evidence)
    assert outcome.status is Status.PASS
    assert evidence["digest"] == DIGEST
    assert DIGEST in outcome.summary
    readback = ManifestReadback(False, "api-server pod proxy", error="404 Not Found", not_found=True)
    assert _registry.readback_verdict(outcome, readback, evidence, builder="Kaniko").status is Status.FAIL


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        # the executor copies the Dockerfile under /kaniko first (chainguard-dev/kaniko v1.25)
        (
            "error resolving dockerfile path: copying dockerfile: open /kaniko/Dockerfile: read-only file system",
            "readOnlyRootFilesystem must be false",
        ),
        (
            (
                "error building image: error building stage: failed to get filesystem from image: chown /bin/sh: "
                "operation not permitted"
            ),
            "capability Kaniko needs",
        ),
    ],
)
def test_kaniko_known_failures_are_named(log: str, cause: str) -> None:
    steps = kaniko_steps(kaniko={"exit_code": 1, "reason": "Error", "message": "", "log": [log]})
    outcome = kaniko.verdict(steps, KANIKO_REF, {})
    assert outcome.status is Status.FAIL
    assert cause in outcome.summary


def test_kaniko_forced_non_root_is_named_from_the_kubelets_words() -> None:
    reason = (
        "container kaniko: CreateContainerConfigError: container's runAsUser breaks non-root policy "
        '(pod: "dc-abcde-kaniko-build_ns", container: kaniko)'
    )
    assert "must run as root" in kaniko.classify_failure(reason)


def test_kaniko_chown_without_a_kernel_refusal_is_no_capability_cause() -> None:
    assert kaniko.classify_failure("chown: changed ownership of /built") == ""


def test_kaniko_unreachable_registry_proves_nothing_about_kaniko() -> None:
    log = (
        "error checking push permissions -- make sure you entered the correct tag name, and that you are "
        'authenticated correctly, and try again: checking push permission for "r.example/a:b": creating push '
        'check transport for r.example failed: Get "https://r.example/v2/": dial tcp: lookup r.example: no such host'
    )
    steps = kaniko_steps(kaniko={"exit_code": 1, "reason": "Error", "message": "", "log": [log]})
    assert kaniko.verdict(steps, KANIKO_REF, {}).status is Status.INCONCLUSIVE


def test_kaniko_scaffolding_failures_and_missing_steps_prove_nothing() -> None:
    broken = kaniko_steps(prepare={"exit_code": 127, "reason": "Error", "message": "", "log": ["sh: ldd: not found"]})
    assert kaniko.verdict(broken, KANIKO_REF, {}).status is Status.INCONCLUSIVE
    never = {"prepare": kaniko_steps()["prepare"]}
    assert kaniko.verdict(never, KANIKO_REF, {}).status is Status.INCONCLUSIVE


def test_kaniko_run_step_failure_fails_with_its_words() -> None:
    log = "error building image: error building stage: failed to execute command: starting command: fork/exec"
    steps = kaniko_steps(kaniko={"exit_code": 1, "reason": "Error", "message": "", "log": [log]})
    outcome = kaniko.verdict(steps, KANIKO_REF, {})
    assert outcome.status is Status.FAIL
    assert "failed to execute command" in outcome.summary


# ----- builder probes refused: judged by the spec users paste, never by the probe's helper containers --------------
class DryRunOnly:
    """A ProbeContext that only answers the dry-run of a manifest, and remembers what it was asked."""

    def __init__(self, answer: Admission) -> None:
        self.answer = answer
        self.asked: list[dict[str, Any]] = []

    def pod_manifest(self, suffix: str, spec: dict[str, Any]) -> dict[str, Any]:
        """A manifest that is the spec, under a name."""
        return {"metadata": {"name": f"dc-test-{suffix}"}, "spec": spec}

    def dry_run(self, manifest: dict[str, Any]) -> Admission:
        """The one answer this context was made with."""
        self.asked.append(manifest)
        return self.answer


BUILDER_SPEC: dict[str, Any] = {"containers": [{"name": "buildkitd", "image": "moby/buildkit:rootless"}]}
POLICY_REFUSAL = AdmissionRejectedError(
    "containers must set runAsUser > 0: registry", source="validating-admission-policy", code=403
)


def refused(answer: Admission, exc: AdmissionRejectedError = POLICY_REFUSAL) -> tuple[Outcome, DryRunOnly]:
    ctx = DryRunOnly(answer)
    outcome = _registry.refused_outcome(ctx, "rootless BuildKit", BUILDER_SPEC, exc, {})  # type: ignore[arg-type]
    return outcome, ctx


def test_a_refusal_of_the_builders_own_spec_fails_in_its_words() -> None:
    outcome, ctx = refused(Admission(False, 403, "pod-security-admission", 'seccompProfile (container "buildkitd")'))
    assert outcome.status is Status.FAIL
    assert 'seccompProfile (container "buildkitd")' in outcome.summary
    assert ctx.asked == [{"metadata": {"name": "dc-test-dry"}, "spec": BUILDER_SPEC}], "not the spec alone"
    assert outcome.evidence["admission"]["message"] == POLICY_REFUSAL.message


def test_a_refusal_of_only_the_helpers_proves_nothing_about_the_builder() -> None:
    outcome, _ = refused(Admission(True, 201))
    assert outcome.status is Status.INCONCLUSIVE
    assert "spec alone is admitted" in outcome.summary
    assert "runAsUser > 0: registry" in outcome.summary
    assert "--registry" in (outcome.remediation or "")


def test_a_dry_run_without_an_answer_does_not_say_the_spec_is_admitted() -> None:
    outcome, _ = refused(Admission(None, 429, "api-throttling", "Too many requests"))
    assert outcome.status is Status.INCONCLUSIVE
    assert "admitted" not in outcome.summary.replace("gave no answer", "")
    assert "gave no answer" in outcome.summary


def test_a_refusal_that_was_no_policy_is_not_dry_run_again() -> None:
    quota = AdmissionRejectedError("exceeded quota: limits.cpu", source="resource-quota", code=403, decided=None)
    outcome, ctx = refused(Admission(False, 403), quota)
    assert outcome.status is Status.INCONCLUSIVE
    assert ctx.asked == []


class CapturedPod:
    """A ProbeContext that keeps the pod a probe creates and refuses it (no policy: the probe stops there)."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.scope = RunScope("ns", "run1")

    def pod_manifest(self, suffix: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec under a name."""
        return {"metadata": {"name": f"dc-run1-{suffix}"}, "spec": spec}

    def say(self, _message: str) -> None:
        """Progress goes nowhere."""

    def create_pod(self, manifest: dict[str, Any]) -> None:
        """Keep the pod; refuse it with an answer that is no policy's."""
        self.created.append(manifest)
        raise AdmissionRejectedError("Too many requests", source="api-throttling", code=429, decided=None)


def test_the_registry_helper_adds_no_pod_security_restricted_violation_to_the_builders_pod() -> None:
    """The BuildKit probe pod breaks Pod Security restricted exactly where BuildKit's own spec does, no more.

    So a policy that admits the builder admits the probe pod too: the registry helper is never why it looks refused.
    The rules are the standard's (tests/probes/pod_security.py), over the pod the probe really creates.
    """
    settings = ProbeSettings(images=Images(registry="registry:2", buildkit="moby/buildkit:rootless"))
    ctx = CapturedPod()
    outcome = buildkit_rootless.run(ctx, settings)  # type: ignore[arg-type]
    assert outcome.status is Status.INCONCLUSIVE, outcome.summary
    (probe_pod,) = ctx.created
    assert "registry" in {c["name"] for c in probe_pod["spec"]["containers"]}, "the probe pod carries the registry"
    builder_alone = specs.buildkit_pod_spec(settings.images, settings.resources)
    assert restricted_violations(probe_pod["spec"]) == restricted_violations(builder_alone)
    assert restricted_violations(builder_alone), (
        "BuildKit's Unconfined profiles break restricted: the rules must see it"
    )
    root = {**_registry.registry_container(settings), "securityContext": {"runAsUser": 0}}
    assert ("registry", "runAsUser=0") in restricted_violations({"containers": [root]}), "the rules must see root"


# ----- a --registry read-back proves the push only with the pushed digest -------------------------------------------
MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}'


class OneAnswerRegistry:
    """A local HTTP 'registry' that answers every GET with one status, body and headers (no digest unless given)."""

    def __init__(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        answer = (body, headers or {})

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                for key, value in answer[1].items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer[0])))
                self.end_headers()
                self.wfile.write(answer[0])

            def log_message(self, *_args: Any) -> None:
                """Quiet."""

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"127.0.0.1:{self.server.server_address[1]}/dindcheck/probe:abcde"

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_back_from(body: bytes, headers: dict[str, str] | None = None, *, pushed: str) -> Outcome:
    outcome, evidence = built()
    evidence["digest"] = pushed
    with OneAnswerRegistry(body, headers) as ref:
        evidence["image"] = ref
        readback = _registry.via_http(ref, insecure=True, docker_config=None)
    return _registry.readback_verdict(outcome, readback, evidence, builder="BuildKit")


def test_a_2xx_that_is_no_manifest_proves_no_push() -> None:
    """A proxy's or portal's 200 page: the old read-back took any 2xx for the manifest."""
    final = read_back_from(b"<html>Sign in to continue</html>", pushed="sha256:bbb")
    assert final.status is Status.INCONCLUSIVE, final.summary
    assert "no manifest" in final.summary
    assert "Sign in to continue" in final.summary


def test_a_manifest_without_a_digest_header_is_judged_by_the_sha256_of_its_bytes() -> None:
    body_digest = f"sha256:{hashlib.sha256(MANIFEST).hexdigest()}"
    final = read_back_from(MANIFEST, pushed=body_digest)
    assert final.status is Status.PASS, final.summary
    assert body_digest in final.summary
    other = read_back_from(MANIFEST, pushed="sha256:bbb")
    assert other.status is Status.FAIL, other.summary
    assert f"serves {body_digest} (body)" in other.summary


def test_the_registrys_digest_header_must_be_the_pushed_one() -> None:
    final = read_back_from(MANIFEST, {"Docker-Content-Digest": "sha256:bbb"}, pushed="sha256:bbb")
    assert final.status is Status.PASS
    stale = read_back_from(MANIFEST, {"Docker-Content-Digest": "sha256:old"}, pushed="sha256:bbb")
    assert stale.status is Status.FAIL
    assert "sha256:old (Docker-Content-Digest)" in stale.summary


def test_a_manifest_read_back_without_a_pushed_digest_proves_nothing() -> None:
    outcome, evidence = built(BUILT.replace("build_push_digest=sha256:bbb", "build_push_digest="))
    readback = ManifestReadback(True, "http from this machine", "sha256:bbb", "oci", digest_from="body")
    final = _registry.readback_verdict(outcome, readback, evidence, builder="BuildKit")
    assert final.status is Status.INCONCLUSIVE
    assert "BuildKit reported no digest" in final.summary


def test_a_read_back_without_any_digest_proves_nothing() -> None:
    outcome, evidence = built()
    readback = ManifestReadback(True, "api-server pod proxy", "", "oci")
    final = _registry.readback_verdict(outcome, readback, evidence, builder="BuildKit")
    assert final.status is Status.INCONCLUSIVE
    assert "the registry gave no digest" in final.summary


@pytest.mark.parametrize(
    "error",
    [
        (
            "failed to authorize: failed to fetch anonymous token: unexpected status from GET request to "
            "https://reg.corp/token: 403 Forbidden"
        ),
        (
            "GET https://reg.corp/v2/ci/probe/manifests/abc: unexpected status code 401 Unauthorized (HEAD responses "
            "have no body, use GET for details)"
        ),
        "push access denied: status: 403",
        "denied: requested access to the resource is denied",
    ],
)
def test_a_registrys_401_or_403_status_is_a_push_problem(error: str) -> None:
    assert _registry.is_push_problem(error)


@pytest.mark.parametrize(
    "error",
    [
        "failed to compute cache key: failed to calculate checksum of ref 4031a2b7-9c1e: not found",
        'process "/bin/sh -c echo built > /built" did not complete successfully: exit code: 1 (sha256:40193af0)',
        "error building image: error building stage: line 403: unknown instruction",
    ],
)
def test_a_401_or_403_that_is_no_registry_status_is_the_builders_failure(error: str) -> None:
    """The old substring test took any '401'/'403' (a ref id, a digest, a line number) for refused credentials."""
    assert not _registry.is_push_problem(error)
    stdout = BUILT.replace("build_push=ok", "build_push=failed") + f"\nbuild_push_error={error}"
    outcome, _ = built(stdout)
    assert outcome.status is Status.FAIL
    assert error[:40] in outcome.summary


# The Debian 20.10 dockerd's words on the vm node (AppArmor enforcing) with securityfs mounted in the dind container
APPARMOR_LOAD_ERROR = (
    "docker: Error response from daemon: AppArmor enabled on system but the docker-default profile could not be "
    "loaded: running `apparmor_parser apparmor_parser --version` failed with output:  error: exec: "
    '"apparmor_parser": executable file not found in $PATH.'
)


def test_docker_run_names_a_nested_dockerd_that_cannot_load_its_apparmor_profile() -> None:
    """Before: 'nested docker run fails: <the daemon's words>' with no cause and the generic remediation."""
    evidence = {"daemon": "ok", "import": "ok", "run_none": "failed", "run_none_error": APPARMOR_LOAD_ERROR}
    outcome = docker_run.verdict({**evidence, "run_bridge": "failed", "run_bridge_error": APPARMOR_LOAD_ERROR})
    assert outcome.status is Status.FAIL
    assert outcome.summary.startswith(
        "nested docker run fails: the nested dockerd takes AppArmor as enabled on this node but cannot load its "
        "docker-default profile: docker: Error response from daemon: AppArmor enabled"
    )
    assert "container=docker" in (outcome.remediation or "")
    assert "--security-opt apparmor=unconfined" in (outcome.remediation or "")
