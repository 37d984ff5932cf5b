"""Verdicts on an SELinux-enforcing node, over what the testbed's SELinux vm node recorded.

There, ordinary containers run as container_t with their pod's MCS categories and privileged ones as spc_t; the
reference policy (with its container module) denied a container_t job connectto on the privileged dockerd's socket,
rootlesskit CAP_SYS_ADMIN in its user namespace (cap_userns), and Kaniko's executor getpgid. Each check must name
SELinux as the cause, not the daemon, seccomp/AppArmor or Kaniko's snapshotter, and give SELinux's remedy.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from probes.definitions import buildkit_rootless, docker_run, kaniko, socket_sharing
from probes.definitions._docker import SELINUX_SOCKET_REMEDIATION, selinux_socket_refusal
from probes.definitions._selinux import confined_type
from probes.engine import CommandResult
from probes.exceptions import ExecChannelError
from probes.model import Status
from probes.settings import ProbeSettings
from tests.probes.ended_container import EndedContainer

JOB_LABEL = "system_u:system_r:container_t:s0:c423,c681"
REFUSED = "Server: permission denied while trying to connect to the docker API at unix:///var/run/docker.sock"
LISTENING_LOG = (
    'time="2026-12-06T04:05:17.638579323Z" level=info msg="Daemon has completed initialization" | '
    'time="2026-12-06T04:05:17.640057861Z" level=info msg="API listen on /var/run/docker.sock"'
)


def refused_docker_run(label: str) -> dict[str, Any]:
    return {
        "daemon": "unreachable",
        "daemon_error": REFUSED,
        "client_label": label,
        "client_version": "29.8.1",
        "daemon_wait_s": "300",
        "dockerd_log": LISTENING_LOG,
    }


def test_docker_run_names_selinux_when_a_container_t_job_is_refused_the_socket() -> None:
    outcome = docker_run.verdict(refused_docker_run(JOB_LABEL))
    assert outcome.status is Status.FAIL
    assert "did not start" not in outcome.summary, outcome.summary
    assert f"confined by SELinux as {JOB_LABEL}" in outcome.summary
    assert outcome.remediation == SELINUX_SOCKET_REMEDIATION
    assert "seLinuxOptions.type: spc_t" in outcome.remediation


def test_docker_run_does_not_say_a_listening_dockerd_did_not_start() -> None:
    outcome = docker_run.verdict(refused_docker_run(""))
    assert outcome.status is Status.FAIL
    assert "did not start" not in outcome.summary, outcome.summary
    assert "API listen on" in outcome.summary


@pytest.mark.parametrize(
    "label", ["", "system_u:system_r:spc_t:s0", "cri-containerd.apparmor.d (enforce)", "unconfined"]
)
def test_a_refusal_outside_container_t_is_not_put_on_selinux(label: str) -> None:
    assert selinux_socket_refusal(REFUSED, label) == ""
    assert confined_type(label) == ""


def test_only_a_refusal_is_put_on_selinux() -> None:
    assert selinux_socket_refusal("Cannot connect to the Docker daemon at unix:///var/run/docker.sock", JOB_LABEL) == ""


def refused_layout(label: str = JOB_LABEL) -> dict[str, Any]:
    values = {"daemon": "unreachable", "daemon_error": REFUSED, "client_label": label}
    return {**socket_sharing.layout_result(values, ""), "dockerd_log": LISTENING_LOG}


def test_socket_sharing_passes_over_tls_and_names_selinux_for_the_socket_layouts() -> None:
    tls = {**socket_sharing.layout_result({"daemon": "ok", "client_uid": "1000"}, ""), "ready_s": 378.5}
    native = {"supported": True, **refused_layout()}
    outcome = socket_sharing.verdict({"classic": refused_layout(), "native_sidecar": native, "tls": tls})
    assert outcome.status is Status.PASS
    assert outcome.summary.count(f"confined by SELinux as {JOB_LABEL}") == 2, outcome.summary
    assert outcome.remediation == SELINUX_SOCKET_REMEDIATION


def test_socket_sharing_without_tls_fails_on_selinux_not_on_the_sockets_group() -> None:
    outcome = socket_sharing.verdict({"classic": refused_layout(), "native_sidecar": {"supported": False}})
    assert outcome.status is Status.FAIL
    assert "SELinux" in outcome.summary
    assert "--group" not in (outcome.remediation or "")
    assert outcome.remediation == SELINUX_SOCKET_REMEDIATION


def test_socket_sharing_in_spc_t_keeps_the_sockets_group_remedy() -> None:
    layout = refused_layout("system_u:system_r:spc_t:s0")
    outcome = socket_sharing.verdict({"classic": layout, "native_sidecar": {"supported": False}})
    assert outcome.status is Status.FAIL
    assert "--group" in (outcome.remediation or "")


ROOTLESSKIT_REFUSED = (
    "[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: operation not permitted"
)


def test_rootless_buildkit_in_container_t_is_selinuxs_refusal() -> None:
    cause = buildkit_rootless.classify_failure(ROOTLESSKIT_REFUSED, JOB_LABEL)
    assert cause.startswith(f"SELinux confines the pod ({JOB_LABEL})"), cause
    assert "seLinuxOptions.type: spc_t" in cause
    assert "seLinuxOptions.type: spc_t" in buildkit_rootless.REMEDIATION


def test_rootless_buildkit_without_an_selinux_label_keeps_the_profiles_cause() -> None:
    assert buildkit_rootless.classify_failure(ROOTLESSKIT_REFUSED, "") == (
        "seccomp or AppArmor forbids creating user namespaces (needs Unconfined profiles)"
    )


KANIKO_LOG = """INFO[0010] Taking snapshot of full filesystem...
INFO[0010] Running: [/bin/sh -c echo "built by dindcheck rcl8r" > /built && test -s /built]
error building image: error building stage: failed to execute command: getting group id for process: \
permission denied"""


def test_kaniko_refused_getpgid_is_named_as_an_lsm_not_the_snapshotter() -> None:
    cause = kaniko.classify_failure(KANIKO_LOG)
    assert "SELinux" in cause, cause
    assert "snapshot" not in cause
    assert "seLinuxOptions.type: spc_t" in kaniko.REMEDIATION


class ExitedBuildkitd(EndedContainer):
    """A ProbeContext whose pod counted as running, then buildkitd exited.

    The SELinux node's timing: the build's exec fails, the registry container still runs and reads its label.
    """

    def __init__(self, reads_before_the_status_shows_it: int) -> None:
        super().__init__("buildkitd", reads_before_the_status_shows_it)

    def wait_running(self, name: str) -> Any:
        """The pod, as running."""
        return SimpleNamespace(metadata=SimpleNamespace(name=name))

    def say(self, _message: str) -> None:
        """Progress goes nowhere."""

    def exec(self, _pod: str, container: str, _script: str, **_limits: float) -> CommandResult:
        """In buildkitd the channel fails (its container stopped); the registry container answers its label."""
        if container == "buildkitd":
            raise ExecChannelError("exec failed: cannot exec in a stopped state: unknown")
        return CommandResult(0, JOB_LABEL + "\n", "", 0.1)

    def logs(self, _pod: str, _container: str, **_kwargs: Any) -> str:
        """What rootlesskit said as it ended."""
        return ROOTLESSKIT_REFUSED + "\n"


@pytest.mark.parametrize("reads_before_the_status_shows_it", [0, 3], ids=["status-already-terminated", "status-lags"])
def test_a_buildkitd_that_exits_after_its_pod_ran_fails_in_its_own_words_not_the_channels(
    reads_before_the_status_shows_it: int,
) -> None:
    """The exec is refused ("cannot exec in a stopped state") before or after the kubelet reports the end.

    On a busy node (the CI's emulated ones) the pod's status still says running for a few seconds: the probe waits for
    the container's end to show instead of calling the check inconclusive on the channel's error.
    """
    evidence: dict[str, Any] = {}
    outcome = buildkit_rootless._build(
        ExitedBuildkitd(reads_before_the_status_shows_it),  # type: ignore[arg-type]
        ProbeSettings(),
        "dc-run1-buildkitd",
        "localhost:5000",
        True,
        evidence,
    )
    assert outcome.status is Status.FAIL, outcome.summary
    assert outcome.summary.startswith(f"buildkitd did not start: SELinux confines the pod ({JOB_LABEL})")
    assert evidence["pod_label"] == JOB_LABEL
