"""The README's RBAC (deploy/rbac.yaml) is exactly what a run needs, proven with a ServiceAccount bound to it alone.

A run under those rules reaches the admin run's verdicts and leaves nothing; with one rule removed it exits 4 before
creating anything, naming the missing permission.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.conformance.harness import (
    DEPLOY_USER,
    RBAC_MANIFEST,
    RBAC_NAMESPACE,
    KubeContext,
    Profile,
    SuiteRun,
    kubectl,
    rbac_deployed,
    run_suite,
    service_account_user,
    statuses,
    wait_until_allowed,
    wait_until_clean,
    wait_until_rbac_granted,
    with_kubeconfig,
    write_kubeconfig,
)

RBAC = RBAC_MANIFEST
NAMESPACE = RBAC_NAMESPACE
USAGE_ERROR = 4
MANAGED = "app.kubernetes.io/managed-by=dindcheck"  # the nightly Job's own pods live in the namespace too


@pytest.fixture(scope="module")
def rbac_applied(profile: Profile, testbed_env: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
    if profile.name != "permissive":
        pytest.skip("the RBAC proof runs on the permissive profile")
    with rbac_deployed(testbed_env) as documents:
        yield documents


def service_account_kubeconfig(env: dict[str, str], path: Path) -> Path:
    """A kubeconfig holding only a token of the dindcheck ServiceAccount (what a CI system would be given)."""
    return write_kubeconfig(env, path, [KubeContext("dindcheck", service_account_user(env, namespace=NAMESPACE))])


@pytest.mark.usefixtures("rbac_applied")
def test_minimal_rbac_reaches_the_admin_verdicts(
    suite_run: SuiteRun, testbed_env: dict[str, str], out_root: Path
) -> None:
    kubeconfig = service_account_kubeconfig(testbed_env, out_root / "rbac-kubeconfig")
    env = with_kubeconfig(testbed_env, kubeconfig, "--namespace", NAMESPACE)
    run = run_suite(env, out_root / "rbac-minimal")
    assert run.report, run.output[-3000:]
    assert statuses(run) == statuses(suite_run), run.output[-3000:]
    assert kubectl(testbed_env, "get", "pods,pvc", "-n", NAMESPACE, "-l", MANAGED, "-o", "name").strip() == ""
    assert wait_until_clean(testbed_env, 30) == []
    assert not any(note.startswith("RBAC:") for note in run.report["cluster"]["notes"]), run.report["cluster"]


def test_one_rule_removed_is_named_before_anything_is_created(
    rbac_applied: list[dict[str, Any]], testbed_env: dict[str, str], out_root: Path
) -> None:
    role = next(doc for doc in rbac_applied if doc["kind"] == "Role")
    pods_rule = next(rule for rule in role["rules"] if rule["resources"] == ["pods"])
    pods_rule["verbs"] = [verb for verb in pods_rule["verbs"] if verb != "deletecollection"]
    kubectl(testbed_env, "apply", "-f", "-", stdin=yaml.safe_dump(role))
    wait_until_allowed(testbed_env, DEPLOY_USER, ("deletecollection", "pods", "-n", NAMESPACE), allowed=False)
    try:
        kubeconfig = service_account_kubeconfig(testbed_env, out_root / "rbac-kubeconfig-less")
        env = with_kubeconfig(testbed_env, kubeconfig, "--namespace", NAMESPACE)
        run = run_suite(env, out_root / "rbac-one-rule-removed")
        assert run.exit_code == USAGE_ERROR, run.output[-3000:]
        assert "RBAC: the run may not deletecollection pods" in run.output
        assert "Traceback" not in run.output
        assert kubectl(testbed_env, "get", "pods,pvc", "-n", NAMESPACE, "-l", MANAGED, "-o", "name").strip() == ""
    finally:
        kubectl(testbed_env, "apply", "-f", str(RBAC))
        wait_until_rbac_granted(testbed_env)
