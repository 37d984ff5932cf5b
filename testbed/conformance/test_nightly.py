"""The nightly CronJob as users apply it (deploy/), run inside the testbed under the minimal RBAC.

On the permissive profile its report matches an outside run's verdicts; the testbed then moves on through its
profiles with the history kept, and on deny-privileged the same Job reports the dind regression against the
previous night and fails (exit 1, --fail-on-regression).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.conformance.harness import REPO, Profile, SuiteRun, kubectl, statuses, wait_until_rbac_granted

NAMESPACE = "dindcheck"
CRONJOB = "dindcheck-nightly"
HISTORY = "dindcheck-reports"


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


def latest_report(env: dict[str, str]) -> dict[str, Any]:
    data = json.loads(kubectl(env, "-n", NAMESPACE, "get", "configmap", HISTORY, "-o", "json"))["data"]
    report: dict[str, Any] = json.loads(data["latest.json"])
    return report


@pytest.fixture
def nightly(testbed_env: dict[str, str]) -> dict[str, str]:
    if "TESTBED_IMAGE_DINDCHECK" not in testbed_env:
        pytest.skip("the testbed has no dindcheck image")
    return testbed_env


def test_nightly_job_matches_an_outside_run(
    profile: Profile, nightly: dict[str, str], suite_run: SuiteRun, out_root: Path
) -> None:
    if profile.name != "permissive":
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


def test_nightly_job_reports_the_regression(profile: Profile, nightly: dict[str, str], out_root: Path) -> None:
    if profile.name != "deny-privileged":
        pytest.skip("the regression night runs on the deny-privileged profile")
    try:
        succeeded, log = run_job(nightly, "night-2")
        (out_root / "nightly-2.log").write_text(log)
        assert not succeeded, "the Job should fail: dind was usable last night and is not now"
        regressed = next((line for line in log.splitlines() if "--fail-on-regression: no longer usable:" in line), "")
        assert "dind" in [m.strip() for m in regressed.split("no longer usable:")[-1].split(",")], log[-3000:]
        report = latest_report(nightly)
        assert "dind" in report["changes"]["regressions"], report["changes"]
        assert any(change["id"] == "privileged-admission" for change in report["changes"]["checks"]), report["changes"]
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
