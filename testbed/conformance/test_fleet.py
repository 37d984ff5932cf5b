"""A fleet run: two contexts probed at once from one process stand for two clusters with different verdicts.

The testbed has one cluster, so its two contexts differ where real clusters do: the admin context gets a fresh
namespace under the profile's Pod Security; the ServiceAccount context of deploy/rbac.yaml works in its own namespace
(the kubeconfig names it), labelled Pod Security baseline, as a locked-down cluster's CI namespace would be. Proven:
each cluster's verdicts are what a run of that context alone reaches, the report's cluster x mode matrix and the
fleet-wide answer, the gate naming the cluster that holds it back, test ids carrying the cluster, and nothing left on
either.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.conformance.harness import (
    MANAGED_BY,
    RBAC_NAMESPACE,
    KubeContext,
    Profile,
    SuiteRun,
    admin_user,
    kubectl,
    pod_manifest,
    rbac_deployed,
    run_suite,
    service_account_user,
    wait_until_clean,
    wait_until_enforced,
    with_kubeconfig,
    write_kubeconfig,
)

PSA_LABEL = "pod-security.kubernetes.io/enforce"
ADMIN, LOCKED = "admin", "ci-baseline"
TESTS_FAILED = 1


@pytest.fixture(scope="module")
def locked_namespace(profile: Profile, testbed_env: dict[str, str]) -> Iterator[str]:
    """deploy/rbac.yaml's namespace labelled Pod Security baseline, enforced before any run; its label restored."""
    if profile.name != "permissive":
        pytest.skip("the fleet proof runs on the permissive profile (its two contexts differ by their namespaces)")
    with rbac_deployed(testbed_env):
        namespace = json.loads(kubectl(testbed_env, "get", "namespace", RBAC_NAMESPACE, "-o", "json"))
        before = namespace["metadata"].get("labels", {}).get(PSA_LABEL)
        kubectl(testbed_env, "label", "namespace", RBAC_NAMESPACE, f"{PSA_LABEL}=baseline", "--overwrite")
        privileged = pod_manifest(
            "dc-psa-check", RBAC_NAMESPACE, testbed_env["TESTBED_IMAGE_TOOLS"], securityContext={"privileged": True}
        )
        wait_until_enforced(testbed_env, privileged, 'violates PodSecurity "baseline:latest"')
        try:
            yield RBAC_NAMESPACE
        finally:
            restored = f"{PSA_LABEL}={before}" if before else f"{PSA_LABEL}-"
            kubectl(testbed_env, "label", "namespace", RBAC_NAMESPACE, restored, "--overwrite")


@pytest.fixture(scope="module")
def fleet_env(testbed_env: dict[str, str], locked_namespace: str, out_root: Path) -> dict[str, str]:
    """The suite pointed at a kubeconfig of the two contexts."""
    contexts = [
        KubeContext(ADMIN, admin_user(testbed_env)),
        KubeContext(LOCKED, service_account_user(testbed_env, namespace=locked_namespace), locked_namespace),
    ]
    out_root.mkdir(parents=True, exist_ok=True)
    return with_kubeconfig(testbed_env, write_kubeconfig(testbed_env, out_root / "fleet-kubeconfig", contexts))


@pytest.fixture(scope="module")
def fleet_run(fleet_env: dict[str, str], out_root: Path) -> SuiteRun:
    return run_suite(fleet_env, out_root / "fleet", "--context", ADMIN, "--context", LOCKED, "--require-mode", "dind")


@pytest.fixture(scope="module")
def locked_alone(fleet_env: dict[str, str], out_root: Path) -> SuiteRun:
    """The locked-down context run alone (the same namespace): what the fleet run must reach for that cluster."""
    return run_suite(fleet_env, out_root / "fleet-locked-alone", "--context", LOCKED, "--namespace", RBAC_NAMESPACE)


def by_context(run: SuiteRun) -> dict[str, dict[str, Any]]:
    return {entry["context"]: entry for entry in run.report.get("clusters", [])}


def check_statuses(report: dict[str, Any]) -> dict[str, str]:
    return {check["id"]: check["status"] for check in report["checks"]}


def usable_modes(report: dict[str, Any]) -> set[str]:
    return {mode["id"] for mode in report["modes"] if mode["usable"]}


def test_each_cluster_gets_its_own_verdicts(fleet_run: SuiteRun, suite_run: SuiteRun, locked_alone: SuiteRun) -> None:
    clusters = by_context(fleet_run)
    assert list(clusters) == [ADMIN, LOCKED], fleet_run.output[-3000:]
    assert check_statuses(clusters[ADMIN]) == check_statuses(suite_run.report), "the admin context as run alone"
    assert check_statuses(clusters[LOCKED]) == check_statuses(locked_alone.report), "the locked context as run alone"
    assert clusters[LOCKED]["cluster"]["namespace"] == RBAC_NAMESPACE, "the context's own namespace"
    assert clusters[LOCKED]["cluster"]["namespace_labels"].get(PSA_LABEL) == "baseline"
    assert "dind" in usable_modes(clusters[ADMIN])
    assert "dind" not in usable_modes(clusters[LOCKED]), "Pod Security baseline refuses the privileged DinD pod"
    assert check_statuses(clusters[LOCKED])["privileged-admission"] == "fail"


def test_the_fleet_answer_is_what_holds_on_every_cluster(fleet_run: SuiteRun) -> None:
    clusters = by_context(fleet_run)
    everywhere = set.intersection(*(usable_modes(report) for report in clusters.values()))
    assert usable_modes(fleet_run.report) == everywhere
    assert fleet_run.report["checks"] == []
    assert fleet_run.report["unprobed_clusters"] == []


def test_the_gate_names_the_cluster_that_holds_it_back(fleet_run: SuiteRun) -> None:
    assert fleet_run.exit_code == TESTS_FAILED, fleet_run.output[-3000:]
    assert fleet_run.report["required_mode"]["usable"] is False
    assert fleet_run.report["required_mode"]["unusable_clusters"] == [LOCKED]
    assert f"dindcheck: --require-mode dind: NOT usable on cluster(s) {LOCKED}" in fleet_run.output


def test_test_ids_and_junit_carry_the_cluster(fleet_run: SuiteRun) -> None:
    cases = ET.parse(fleet_run.out_dir / "junit.xml").getroot().iter("testcase")  # noqa: S314 (the run's own file)
    names = {case.get("name", "") for case in cases}
    assert "test_docker_run[cluster=admin]" in names, sorted(names)
    assert f"test_docker_run[cluster={LOCKED}]" in names, sorted(names)
    markdown = (fleet_run.out_dir / "report.md").read_text()
    assert ADMIN in markdown
    assert LOCKED in markdown


def test_nothing_is_left_on_either_cluster(fleet_run: SuiteRun, testbed_env: dict[str, str]) -> None:
    assert fleet_run.report, fleet_run.output[-3000:]
    left = kubectl(testbed_env, "get", "pods,pvc,secrets,leases", "-n", RBAC_NAMESPACE, "-l", MANAGED_BY, "-o", "name")
    assert left.strip() == ""
    assert wait_until_clean(testbed_env, 30) == []
