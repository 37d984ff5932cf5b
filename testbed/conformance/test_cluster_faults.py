"""The cluster's own faults mid-run (issue 20): the API server away for 20 s, away past the bound, throttling.

Each case injects its fault with a knob of testbed/faults/ when a condition holds (a probe pod runs), never after a
sleep, and asserts on the JSON report, the exit code and what is left in the cluster. Runs on the permissive profile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.conformance.harness import (
    REPO,
    SuiteRun,
    kubectl,
    kubectl_answer,
    labelled_objects,
    statuses,
    suite_command,
    wait_until,
    wait_until_clean,
    with_kubeconfig,
)
from testbed.conformance.test_rbac import NAMESPACE, rbac_applied, service_account_kubeconfig

FAULTS = REPO / "testbed" / "faults"
USAGE_ERROR = 4
API_AWAY = "the API server was unavailable"
RUN_FINISHES_S = 600.0
POD_RUNNING_S = 90.0
__all__ = ["rbac_applied"]  # the fixture of deploy/rbac.yaml, shared with the RBAC proof


def probe_pod_running(env: dict[str, str]) -> bool:
    """A probe pod of the run is Running: the probes are in the middle of their work."""
    pods = kubectl(
        env,
        "get",
        "pods",
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=dindcheck",
        "-o",
        "jsonpath={.items[*].status.phase}",
    )
    return "Running" in pods.split()


def api_answers(env: dict[str, str]) -> bool:
    """The API server answers /readyz."""
    return kubectl_answer(env, "get", "--raw=/readyz").returncode == 0


def start_run(env: dict[str, str], out: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The suite as a user starts it, in the background."""
    return subprocess.Popen(
        suite_command(env, out),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(extra_env or {})},
    )


def when_probing(env: dict[str, str], proc: subprocess.Popen[str]) -> None:
    """Wait until a probe pod runs (the run is mid-probe); fail if the run ended first."""

    def running() -> bool:
        assert proc.poll() is None, "the run ended before a probe pod ran"
        return probe_pod_running(env)

    wait_until(running, "a probe pod Running", timeout_s=POD_RUNNING_S)


def finished(proc: subprocess.Popen[str], out: Path) -> tuple[int, str, dict[str, Any]]:
    """Wait for the run; its exit code, output and JSON report."""
    output, _ = proc.communicate(timeout=RUN_FINISHES_S)
    (out / "output.txt").write_text(output)
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return proc.returncode, output, report


def apiserver_down(seconds: int) -> subprocess.Popen[str]:
    """The knob, in the background: the API server stops now and is back (answering /readyz) when it exits."""
    return subprocess.Popen(
        [str(FAULTS / "apiserver-down"), str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def knob_done(knob: subprocess.Popen[str]) -> str:
    """Wait for a knob; its output (it must have succeeded)."""
    output, _ = knob.communicate(timeout=300)
    assert knob.returncode == 0, output
    return output


@pytest.fixture
def report_dir(out_root: Path, request: pytest.FixtureRequest) -> Path:
    out = out_root / f"cluster-fault-{request.node.name.removeprefix('test_')[:40]}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").unlink(missing_ok=True)
    return out


def no_pass_on_lost_evidence(report: dict[str, Any], baseline: SuiteRun) -> None:
    """Every check has its undisturbed verdict, or is inconclusive naming the API's absence.

    Never a pass or fail that the undisturbed run did not give, never a verdict about the cluster from lost evidence.
    """
    before = statuses(baseline)
    for check in report["checks"]:
        if API_AWAY in check["summary"]:
            assert check["status"] == "inconclusive", check
            assert "api_unavailable" in check["evidence"], check
        else:
            assert check["status"] == before[check["id"]], (check, before[check["id"]])


@pytest.mark.usefixtures("permissive")
def test_api_server_down_20s_mid_probe(testbed_env: dict[str, str], suite_run: SuiteRun, report_dir: Path) -> None:
    """The run rides out a 20 s outage (bound 60 s): it finishes, no verdict comes from lost evidence, nothing left."""
    proc = start_run(testbed_env, report_dir)
    when_probing(testbed_env, proc)
    knob = apiserver_down(20)
    code, output, report = finished(proc, report_dir)
    knob_output = knob_done(knob)
    assert report, output[-3000:]
    failed = any(check["status"] == "fail" for check in report["checks"])
    assert code == (1 if failed else 0), output[-3000:]
    assert "Traceback" not in output
    assert "cleanup incomplete" not in output, output[-3000:]
    no_pass_on_lost_evidence(report, suite_run)
    notes = report["cluster"]["notes"]
    assert any(note.startswith(API_AWAY) for note in notes), (notes, knob_output)
    assert wait_until_clean(testbed_env, 60) == []


DELETE_LINE = re.compile(
    r"did not answer within \d+s \(DINDCHECK_API_BOUND_S\).*\(label (\S+)\): (kubectl .*)$", re.MULTILINE
)


@pytest.mark.usefixtures("permissive")
def test_api_server_away_past_the_bound(testbed_env: dict[str, str], suite_run: SuiteRun, report_dir: Path) -> None:
    """Bound 5 s, API away 45 s: exit 4 with the label to delete printed; once back, that deletes everything left."""
    proc = start_run(testbed_env, report_dir, {"DINDCHECK_API_BOUND_S": "5"})
    when_probing(testbed_env, proc)
    knob = apiserver_down(45)
    code, output, report = finished(proc, report_dir)
    assert knob.poll() is None, "the run must end while the API server is still away"
    knob_done(knob)
    assert code == USAGE_ERROR, output[-3000:]
    assert "the API server was unavailable for longer than 5s (DINDCHECK_API_BOUND_S" in output
    assert "Traceback" not in output
    said = DELETE_LINE.search(output)
    assert said, output[-3000:]
    label, command = said.group(1), said.group(2)
    assert label.startswith("dindcheck.io/run=")
    if report:
        no_pass_on_lost_evidence(report, suite_run)
    namespace = shlex.split(command)[shlex.split(command).index("-n") + 1]
    left = labelled_objects(testbed_env)
    assert f"namespace/{namespace}" in left, f"nothing was deleted while the API was away, yet: {left}"
    for part in command.split(" && "):
        words = shlex.split(part)
        assert words[0] == "kubectl", part
        kubectl(testbed_env, *words[1:])
    assert wait_until_clean(testbed_env, 120) == []


THROTTLE_SUBJECT = f"{NAMESPACE}/dindcheck"


@pytest.fixture
def throttled() -> Iterator[None]:
    subprocess.run([str(FAULTS / "throttle"), "on", THROTTLE_SUBJECT], check=True, timeout=120)
    try:
        yield
    finally:
        subprocess.run([str(FAULTS / "throttle"), "off", THROTTLE_SUBJECT], check=True, timeout=120)


@pytest.mark.usefixtures("rbac_applied", "throttled")
def test_throttled_run_finishes_with_the_same_verdicts_and_says_so(
    testbed_env: dict[str, str], suite_run: SuiteRun, out_root: Path, report_dir: Path
) -> None:
    """APF gives the run's ServiceAccount one seat, no queue: 429s with Retry-After, honoured; verdicts unchanged."""
    kubeconfig = service_account_kubeconfig(testbed_env, out_root / "throttled-kubeconfig")
    env = with_kubeconfig(testbed_env, kubeconfig, "--namespace", NAMESPACE)
    started = time.monotonic()
    code, output, report = finished(start_run(env, report_dir), report_dir)
    assert report, output[-3000:]
    assert statuses_of(report) == statuses(suite_run), output[-3000:]
    assert code == suite_run.exit_code, output[-3000:]
    throttling = report.get("throttled")
    assert throttling, output[-3000:]
    assert throttling["responses"] > 0
    assert throttling["waited_s"] > 0
    assert "API server throttling:" in output
    assert time.monotonic() - started < RUN_FINISHES_S
    assert (
        kubectl(
            testbed_env,
            "get",
            "pods,pvc",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/managed-by=dindcheck",
            "-o",
            "name",
        ).strip()
        == ""
    )
    assert wait_until_clean(testbed_env, 60) == []


def statuses_of(report: dict[str, Any]) -> dict[str, str]:
    """Check id -> status of a report."""
    return {check["id"]: check["status"] for check in report.get("checks", [])}


@pytest.fixture(autouse=True)
def api_back_after(testbed_env: dict[str, str]) -> Iterator[None]:
    """Whatever a case did, the next one starts with an API server that answers."""
    yield
    wait_until(lambda: api_answers(testbed_env), "the API server answering /readyz", timeout_s=180)
