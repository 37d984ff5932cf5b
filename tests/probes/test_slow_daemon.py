"""A slow node is not a broken cluster: dockerd's waits follow --timeout, and a dockerd still starting proves nothing.

On the emulated vm node the TLS layout failed with "the client certificates never appeared ... within 60s" while
docker:dind's entrypoint was still making its RSA keys, and the waits counted loop turns (each as slow as the
node's `docker info`), not seconds. The waits here run in a real sh against stand-in `docker` commands.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from probes.definitions import docker_run, socket_sharing, sysbox
from probes.definitions._docker import (
    DAEMON_WAIT_S,
    daemon_wait_s,
    still_starting,
    wait_for_daemon,
)
from probes.engine import ProbeContext, Progress, RunScope, key_values
from probes.exceptions import ExecChannelError
from probes.model import Status
from probes.settings import ProbeSettings
from tests.probes.ended_container import EndedContainer

NOT_ANSWERING = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
STARTING_LOG = 'level=info msg="Starting up" | level=info msg="containerd not running, starting managed containerd"'
SERVING_LOG = (
    'level=info msg="Daemon has completed initialization" | level=info msg="API listen on /var/run/docker.sock"'
)
ERROR_LOG = 'level=info msg="Starting up" | level=error msg="failed to mount overlay: invalid argument"'


def _context(timeout_s: float) -> ProbeContext:
    task = docker_run.PROBE.task(ProbeSettings())
    connection: Any = SimpleNamespace(core=None, api_client=None)
    return ProbeContext(task, connection, RunScope("ns", "run1", timeout_s=timeout_s), Progress(), threading.Event())


def _stand_in_docker(tmp_path: Path, info: str) -> dict[str, str]:
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\ncase "$1" in\n  version) echo 29.8.1 ;;\n  info) {info} ;;\nesac\n')
    fake.chmod(0o755)
    return {"PATH": f"{tmp_path}:/usr/bin:/bin"}


@pytest.mark.parametrize(("timeout_s", "wait_s"), [(120, DAEMON_WAIT_S), (60, DAEMON_WAIT_S), (600, 5 * DAEMON_WAIT_S)])
def test_the_daemon_wait_grows_with_timeout_never_below_the_usual(timeout_s: float, wait_s: float) -> None:
    assert daemon_wait_s(_context(timeout_s)) == wait_s


def test_the_daemon_wait_is_seconds_of_wall_time_not_loop_turns(tmp_path: Path) -> None:
    """Before: 300 turns of `docker info` + 0.2 s; a node whose `docker info` takes 0.5 s waited 210 s, not 60."""
    env = _stand_in_docker(tmp_path, f"sleep 0.5; echo '{NOT_ANSWERING}' >&2; exit 1")
    started = time.monotonic()
    done = subprocess.run(
        ["sh", "-c", wait_for_daemon(2)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert time.monotonic() - started < 6
    found = key_values(done.stdout)
    assert found["daemon"] == "unreachable"
    assert found["daemon_wait_s"] == "2"
    assert NOT_ANSWERING in found["daemon_error"]


def test_a_refusal_that_lasts_ends_the_wait_early_with_its_words(tmp_path: Path) -> None:
    """A socket that keeps answering "permission denied" (SELinux's connectto, or its mode) will not open later."""
    refused = "permission denied while trying to connect to the docker API at unix:///var/run/docker.sock"
    env = _stand_in_docker(tmp_path, f"echo 'Server: {refused}'; exit 1")
    started = time.monotonic()
    done = subprocess.run(
        ["sh", "-c", wait_for_daemon(8)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert time.monotonic() - started < 6, "a quarter of the 8 s wait, not all of it"
    found = key_values(done.stdout)
    assert found["daemon"] == "unreachable"
    assert refused in found["daemon_error"]
    assert int(found["denied_for_s"]) >= 2


def test_a_refusal_that_passes_does_not_end_the_wait(tmp_path: Path) -> None:
    """The socket's group is set just after dockerd creates it: a refusal in between is not the answer."""
    marker = tmp_path / "chowned"
    refusal = "echo 'Server: permission denied while trying to connect'; exit 1"
    env = _stand_in_docker(tmp_path, f"[ -e {marker} ] || {{ touch {marker}; {refusal}; }}; echo ok")
    found = key_values(
        subprocess.run(["sh", "-c", wait_for_daemon(30)], env=env, capture_output=True, text=True, check=False).stdout
    )
    assert found["daemon"] == "ok"


def test_the_daemon_wait_still_reports_how_long_a_daemon_took(tmp_path: Path) -> None:
    marker = tmp_path / "up"
    env = _stand_in_docker(tmp_path, f"[ -e {marker} ] || {{ touch {marker}; exit 1; }}; echo ok")
    found = key_values(
        subprocess.run(["sh", "-c", wait_for_daemon(30)], env=env, capture_output=True, text=True, check=False).stdout
    )
    assert found["daemon"] == "ok"
    assert float(found["waited_s"]) >= 0.2


def test_the_certs_wait_is_bounded_by_its_own_seconds(tmp_path: Path) -> None:
    """GitLab's form: certs that never appear end the wait after certs_wait_s, with the listing, not 300 turns."""
    certs = tmp_path / "certs"
    certs.mkdir()
    env = {**_stand_in_docker(tmp_path, f"echo 'open {certs}/ca.pem: no such file or directory' >&2; exit 1")}
    env["DOCKER_CERT_PATH"] = str(certs)
    started = time.monotonic()
    script = "certs_wait_s=1\n" + socket_sharing.TLS_WAIT_FOR_CERTS
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert time.monotonic() - started < 6
    found = key_values(done.stdout)
    assert (found["certs"], found["certs_wait_s"], found["daemon"]) == ("missing", "1", "unreachable")


def test_the_tls_script_stretches_both_waits_with_the_runs_slowness() -> None:
    script = socket_sharing.tls_script(_context(600))
    assert script.startswith("certs_wait_s=300\n")
    assert "daemon_wait_s=300\n" in script


@pytest.mark.parametrize(
    ("error", "log", "starting"),
    [
        (NOT_ANSWERING, STARTING_LOG, True),
        (NOT_ANSWERING, "", True),
        ("", STARTING_LOG, True),
        ("dial tcp 127.0.0.1:2376: i/o timeout", "Generating RSA private key, 4096 bit long modulus", True),
        (NOT_ANSWERING, SERVING_LOG, False),
        (NOT_ANSWERING, ERROR_LOG, False),
        (NOT_ANSWERING, 'level=fatal msg="failed to start daemon: ..."', False),
        ("permission denied while trying to connect to the Docker daemon socket", STARTING_LOG, False),
    ],
    ids=["starting", "silent", "no-error-text", "tls-keygen", "serving", "error", "fatal", "an-answer"],
)
def test_still_starting_only_without_an_answer_an_error_or_a_listener(error: str, log: str, starting: bool) -> None:
    assert still_starting(error, log) is starting


def test_docker_run_with_dockerd_still_starting_is_inconclusive() -> None:
    evidence = {
        "daemon": "unreachable",
        "daemon_error": NOT_ANSWERING,
        "daemon_wait_s": "60",
        "dockerd_log": STARTING_LOG,
    }
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.INCONCLUSIVE, outcome.summary
    assert outcome.summary.startswith("dockerd did not answer within 60s, but its container still runs")
    assert "larger --timeout" in outcome.summary


@pytest.mark.parametrize(
    ("log", "said"),
    [
        (SERVING_LOG, "dockerd runs (its log: API listen on), but the job never reached it: "),
        (ERROR_LOG, "dockerd did not start: "),
    ],
)
def test_docker_run_with_dockerd_serving_or_erring_but_unreachable_fails(log: str, said: str) -> None:
    outcome = docker_run.verdict({"daemon": "unreachable", "daemon_error": NOT_ANSWERING, "dockerd_log": log})
    assert outcome.status is Status.FAIL
    assert outcome.summary.startswith(said), outcome.summary


def test_sysbox_with_dockerd_still_starting_is_inconclusive() -> None:
    evidence = {"daemon": "unreachable", "daemon_error": NOT_ANSWERING, "daemon_wait_s": "300", "uid_map": "0 1 2"}
    outcome = sysbox.verdict({**evidence, "dockerd_log": STARTING_LOG})
    assert outcome.status is Status.INCONCLUSIVE
    assert "dockerd in the sysbox pod did not answer within 300s" in outcome.summary


def test_sysbox_with_dockerd_exited_fails_with_its_last_words() -> None:
    ended = {"exit_code": 1, "reason": "Error", "log": f'{STARTING_LOG} | level=fatal msg="failed to start daemon: x"'}
    outcome = sysbox.verdict({"daemon": "unreachable", "daemon_error": NOT_ANSWERING, "dockerd_exit": ended})
    assert outcome.status is Status.FAIL
    assert 'exited 1 (Error); dockerd\'s last words: level=fatal msg="failed to start daemon: x"' in outcome.summary


def _classic(log: str, **extra: Any) -> dict[str, Any]:
    found = socket_sharing.layout_result(
        {"daemon": "unreachable", "daemon_error": NOT_ANSWERING, "daemon_wait_s": "60"}, ""
    )
    return {**found, "dockerd_log": log, **extra}


def test_socket_sharing_with_dockerd_still_starting_is_inconclusive() -> None:
    outcome = socket_sharing.verdict({"classic": _classic(STARTING_LOG), "native_sidecar": {"supported": False}})
    assert outcome.status is Status.INCONCLUSIVE
    assert outcome.summary.startswith("dockerd did not answer within 60s")


@pytest.mark.parametrize(
    "classic",
    [_classic(SERVING_LOG), _classic(STARTING_LOG, dockerd_exit={"exit_code": 1, "reason": "Error"})],
    ids=["serving", "exited"],
)
def test_socket_sharing_with_dockerd_serving_or_exited_fails(classic: dict[str, Any]) -> None:
    outcome = socket_sharing.verdict({"classic": classic, "native_sidecar": {"supported": False}})
    assert outcome.status is Status.FAIL
    assert outcome.summary.startswith("dockerd never answered on the shared socket")


class DockerdEndedUnreported(EndedContainer):
    """A ProbeContext whose dind container stopped before the kubelet reported it (a busy node's status lag)."""

    def exec(self, _pod: str, _container: str, _script: str, **_limits: float) -> Any:
        """The channel fails: the container has stopped."""
        raise ExecChannelError("exec failed: cannot exec in a stopped state: unknown")

    def logs(self, _pod: str, _container: str, **_kwargs: Any) -> str:
        """What the daemon said last."""
        return "failed to start daemon: Error initializing network controller\n"


def test_a_dockerd_that_ended_before_its_status_said_so_is_its_exit_not_the_channels() -> None:
    evidence: dict[str, Any] = {}
    ctx = DockerdEndedUnreported("dind", reads_before_the_status_shows_it=3)
    assert docker_run._host_facts(ctx, "dc-run1-docker-run", evidence) is False  # type: ignore[arg-type]
    assert evidence["dockerd_exit"]["exit_code"] == 1
    assert "Error initializing network controller" in evidence["dockerd_exit"]["log"]
