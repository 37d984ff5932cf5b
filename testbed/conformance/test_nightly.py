"""The nightly CronJob as users apply it (deploy/), run inside the testbed under the minimal RBAC.

On the permissive profile its report matches an outside run's verdicts and becomes the pin; the testbed then moves
on through its profiles with the history kept, and on deny-privileged the same Job reports the dind regression
against the previous night and the pin and fails (exit 1, --fail-on-regression). The night after, last night's
report sees no change but the pin still does; a ConfigMap the Job cannot read stops it before it runs; and once the
pin is moved on purpose, dind is no longer named. The node count (--nodes 2) does not change which night runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.conformance.harness import REPO, Profile, SuiteRun, kubectl, statuses, wait_until_rbac_granted

NAMESPACE = "dindcheck"
CRONJOB = "dindcheck-nightly"
HISTORY = "dindcheck-reports"
HISTORY_ROLE = "dindcheck-history"
GATE_LINE = "--fail-on-regression: no longer usable:"


def knobs_but_nodes(profile: Profile) -> str:
    """The profile's name as on one node: the nights follow the policy knobs, not the node count."""
    return replace(profile, nodes=1).name


def deploy_documents(env: dict[str, str]) -> list[dict[str, Any]]:
    """deploy/ as a user applies it, with the testbed's images and the API server's address.

    The testbed runs no kube-proxy, so the in-cluster service address is not routed: the pod is pointed at the API
    server's own address instead (what KUBERNETES_SERVICE_HOST would resolve to on a real cluster).
    """
    documents = [
        doc
        for name in ("rbac.yaml", "cronjob.yaml")
        for doc in yaml.safe_load_all((REPO / "deploy" / name).read_text())
        if doc
    ]
    cronjob = next(doc for doc in documents if doc["kind"] == "CronJob")
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    container["image"] = env["TESTBED_IMAGE_DINDCHECK"]
    args = env["TESTBED_PYTEST_ARGS"].split()
    kubeconfig_at = args.index("--kubeconfig")
    del args[kubeconfig_at : kubeconfig_at + 2]
    api = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())["clusters"][0]["cluster"]["server"]
    host, port = api.removeprefix("https://").split(":")
    container["env"] = [
        {"name": "DINDCHECK_ARGS", "value": " ".join(args)},
        {"name": "KUBERNETES_SERVICE_HOST", "value": host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": port},
    ]
    return documents


def run_job(env: dict[str, str], name: str, timeout_s: float = 600) -> tuple[bool, str]:
    """Create a Job from the CronJob, wait until it completes or fails; (succeeded, its log)."""
    kubectl(env, "-n", NAMESPACE, "delete", "job", name, "--ignore-not-found", "--wait=true")
    kubectl(env, "-n", NAMESPACE, "create", "job", f"--from=cronjob/{CRONJOB}", name)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = json.loads(kubectl(env, "-n", NAMESPACE, "get", "job", name, "-o", "json"))["status"]
        if status.get("succeeded") or status.get("failed"):
            log = kubectl(env, "-n", NAMESPACE, "logs", f"job/{name}", "--tail=-1")
            return bool(status.get("succeeded")), log
        time.sleep(2)
    pytest.fail(f"job {name} did not finish within {timeout_s:.0f}s")


def stored(env: dict[str, str], key: str = "latest.json") -> dict[str, Any]:
    """A report the history ConfigMap holds: latest.json or pinned.json."""
    data = json.loads(kubectl(env, "-n", NAMESPACE, "get", "configmap", HISTORY, "-o", "json"))["data"]
    report: dict[str, Any] = json.loads(data[key])
    return report


def latest_report(env: dict[str, str]) -> dict[str, Any]:
    return stored(env)


def gate_line(log: str) -> str:
    """The Job's --fail-on-regression line ('' when it named nothing)."""
    return next((line for line in log.splitlines() if GATE_LINE in line), "")


def pin_latest(env: dict[str, str]) -> str:
    """The documented command that moves the pin, run from a checkout as the testbed's admin."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dindcheck.history",
            "pin",
            "--configmap",
            HISTORY,
            "--namespace",
            NAMESPACE,
            "--kubeconfig",
            env["KUBECONFIG"],
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.fixture
def nightly(testbed_env: dict[str, str]) -> dict[str, str]:
    if "TESTBED_IMAGE_DINDCHECK" not in testbed_env:
        pytest.skip("the testbed has no dindcheck image")
    return testbed_env


def test_nightly_job_matches_an_outside_run(
    profile: Profile, nightly: dict[str, str], suite_run: SuiteRun, out_root: Path
) -> None:
    if knobs_but_nodes(profile) != "permissive":
        pytest.skip("the first night runs on the permissive profile")
    kubectl(nightly, "apply", "-f", "-", stdin=yaml.safe_dump_all(deploy_documents(nightly)))
    wait_until_rbac_granted(nightly)
    kubectl(nightly, "-n", NAMESPACE, "delete", "configmap", HISTORY, "--ignore-not-found")
    succeeded, log = run_job(nightly, "night-1")
    (out_root / "nightly-1.log").write_text(log)
    assert succeeded, log[-3000:]
    report = latest_report(nightly)
    assert statuses(SuiteRun(0, report, 0, "", out_root)) == statuses(suite_run), log[-3000:]
    assert "no earlier report" in log
    assert "no pinned report yet" in log
    assert stored(nightly, "pinned.json") == report, "the first report stored is the pin"


def test_nightly_job_reports_the_regression(profile: Profile, nightly: dict[str, str], out_root: Path) -> None:
    if knobs_but_nodes(profile) != "deny-privileged":
        pytest.skip("the regression nights run on the deny-privileged profile")
    try:
        succeeded, log = run_job(nightly, "night-2")
        (out_root / "nightly-2.log").write_text(log)
        assert not succeeded, "the Job should fail: dind was usable last night and is not now"
        assert "dind" in [m.strip() for m in gate_line(log).split(GATE_LINE)[-1].split(",")], log[-3000:]
        report = latest_report(nightly)
        assert "dind" in report["changes"]["regressions"], report["changes"]
        assert "dind" in report["changes_since_pinned"]["regressions"], report["changes_since_pinned"]
        assert any(change["id"] == "privileged-admission" for change in report["changes"]["checks"]), report["changes"]

        # night 3: last night had already lost dind, so the rolling baseline sees no loss; the pin still does
        succeeded, log = run_job(nightly, "night-3")
        (out_root / "nightly-3.log").write_text(log)
        report = latest_report(nightly)
        assert "dind" not in report["changes"]["regressions"], report["changes"]
        # the same warnings as last night, naming this run's pods: no new warning
        assert report["changes"]["warnings"] == [], report["changes"]["warnings"]
        assert "dind" in report["changes_since_pinned"]["regressions"], report["changes_since_pinned"]
        assert "dind (lost since the pinned baseline of " in gate_line(log), log[-3000:]
        assert not succeeded

        # a history the Job cannot read (its Role loses get on ConfigMaps) stops it before any probe runs
        role = json.loads(kubectl(nightly, "-n", NAMESPACE, "get", "role", HISTORY_ROLE, "-o", "json"))
        role["rules"][0]["verbs"] = ["create", "update"]
        kubectl(nightly, "replace", "-f", "-", stdin=json.dumps(role))
        succeeded, log = run_job(nightly, "night-unreadable")
        (out_root / "nightly-unreadable.log").write_text(log)
        assert not succeeded, log[-3000:]
        assert "not running without them" in log, log[-3000:]
        assert "dindcheck compatibility report" not in log, log[-3000:]
        kubectl(nightly, "apply", "-f", "-", stdin=yaml.safe_dump_all(deploy_documents(nightly)))

        # the pin moved on purpose to a night without dind: dind is no longer named
        assert "pinned the report of" in pin_latest(nightly)
        succeeded, log = run_job(nightly, "night-4")
        (out_root / "nightly-4.log").write_text(log)
        report = latest_report(nightly)
        assert report["changes_since_pinned"]["lost"] == [], report["changes_since_pinned"]
        assert gate_line(log) == "", log[-3000:]
    finally:
        kubectl(
            nightly,
            "delete",
            "-f",
            "-",
            "--ignore-not-found",
            "--wait=false",
            stdin=yaml.safe_dump_all(deploy_documents(nightly)),
        )
