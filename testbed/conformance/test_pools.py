"""Node pools on the two-node testbed (testbed/up --nodes 2): the verdict is about the nodes where CI runs.

The ci node (label dindcheck.io/pool=ci, taint dedicated=ci:NoSchedule) runs containerd 2 and keeps cache volumes on
FUSE; the default node runs containerd 1.6 with the cache on ext4. Each case runs the suite as a user does and reads
its JSON report and JUnit file.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from testbed.conformance.harness import Profile, SuiteRun, kubectl, run_suite, wait_until_clean

POOL_LABEL = "dindcheck.io/pool"
CI_TARGET = ("--node-selector", f"{POOL_LABEL}=ci", "--toleration", "dedicated=ci:NoSchedule")
EACH_POOL = ("--each-pool", POOL_LABEL, "--toleration", "all")


@pytest.fixture(scope="module", autouse=True)
def two_nodes(profile: Profile) -> None:
    if profile.nodes < 2:
        pytest.skip("node pools are shown on the two-node testbed (testbed/up --nodes 2)")


@pytest.fixture(scope="module")
def pool_nodes(testbed_env: dict[str, str]) -> dict[str, str]:
    """Pool name -> its node's name, from the Node objects."""
    found: dict[str, str] = {}
    for line in kubectl(testbed_env, "get", "nodes", "-L", POOL_LABEL, "--no-headers").splitlines():
        fields = line.split()
        found[fields[-1]] = fields[0]
    return found


@pytest.fixture(scope="module")
def pools_dir(out_root: Path, profile: Profile) -> Path:
    return out_root / profile.name


@pytest.fixture(scope="module")
def ci_run(testbed_env: dict[str, str], suite_run: SuiteRun, pools_dir: Path) -> SuiteRun:
    del suite_run  # runs after the session's default run, never at the same time
    return run_suite(testbed_env, pools_dir / "pool-ci", *CI_TARGET)


@pytest.fixture(scope="module")
def pools_run(testbed_env: dict[str, str], ci_run: SuiteRun, pools_dir: Path) -> SuiteRun:
    del ci_run
    return run_suite(testbed_env, pools_dir / "each-pool", *EACH_POOL, "--require-mode", "dind")


def checks_nodes(report: dict[str, object], checks_key: str = "checks") -> set[str]:
    checks = report[checks_key]
    assert isinstance(checks, list)
    return {check["evidence"]["node"] for check in checks if "node" in check["evidence"]}


def test_an_untargeted_run_stays_off_the_tainted_pool(suite_run: SuiteRun, pool_nodes: dict[str, str]) -> None:
    """No targeting: the scheduler places pods, the ci taint keeps them on the default node, the report says so."""
    assert suite_run.report["cluster"]["probed_nodes"] == [pool_nodes["default"]]
    assert checks_nodes(suite_run.report) == {pool_nodes["default"]}


def test_a_selector_with_its_toleration_probes_only_the_ci_node(ci_run: SuiteRun, pool_nodes: dict[str, str]) -> None:
    report = ci_run.report
    assert report, ci_run.output[-3000:]
    assert report["cluster"]["probed_nodes"] == [pool_nodes["ci"]]
    assert checks_nodes(report) == {pool_nodes["ci"]}
    assert report["cluster"]["placement"]["node_selector"] == {POOL_LABEL: "ci"}
    overlay = ci_run.check("overlay-cache")
    assert overlay["status"] == "fail", overlay
    assert "fuse" in overlay["summary"].lower(), overlay["summary"]


def test_each_pool_reports_both_pools_with_their_own_verdicts(pools_run: SuiteRun, pool_nodes: dict[str, str]) -> None:
    report = pools_run.report
    assert report, pools_run.output[-3000:]
    pools = {pool["pool"]: pool for pool in report["pools"]}
    assert set(pools) == {"ci", "default"}
    for name, pool in pools.items():
        assert pool["node"] == pool_nodes[name]
        assert checks_nodes(pool) == {pool_nodes[name]}
    overlay = {name: next(c for c in pool["checks"] if c["id"] == "overlay-cache") for name, pool in pools.items()}
    assert overlay["default"]["status"] == "pass", overlay["default"]
    assert overlay["ci"]["status"] == "fail", overlay["ci"]
    runtimes = {node["name"]: node["container_runtime"] for node in report["cluster"]["nodes"]}
    assert runtimes[pool_nodes["default"]].startswith("containerd://1."), runtimes
    assert runtimes[pool_nodes["ci"]].startswith("containerd://2."), runtimes
    for name, pool in pools.items():  # a pool's verdict names its own node's runtime, not the other pool's
        host_socket = next(c for c in pool["checks"] if c["id"] == "host-socket")
        assert host_socket["evidence"]["node_runtimes"] == [runtimes[pool_nodes[name]]], host_socket
    assert report["checks"] == []  # no check ran "on the cluster": each pool carries its own


def test_the_every_pool_config_says_what_the_other_pools_own_spec_differs_in(pools_run: SuiteRun) -> None:
    """The top-level DinD pod is one pool's; the other pool's own differs at least in placement, and says so."""
    recommendation = pools_run.report["recommendation"]
    assert recommendation["full_docker"] == "dind", recommendation["reasons"]
    (reason,) = [reason for reason in recommendation["reasons"] if reason.startswith("config to paste for dind")]
    assert reason.startswith("config to paste for dind: the pod spec proven on pool ci; pool default: differs in ")
    assert "placement (nodeSelector, tolerations)" in reason, reason
    said = [line[2:] for line in recommendation["snippets"]["dind"].splitlines() if line.startswith("# ")]
    assert any(line.startswith("pool default: differs in placement (nodeSelector, tolerations)") for line in said), said
    spec = yaml.safe_load(recommendation["snippets"]["dind"])["spec"]
    assert spec["nodeSelector"] == {POOL_LABEL: "ci"}, spec


def test_each_pool_ids_and_junit_carry_the_pool(pools_run: SuiteRun) -> None:
    tree = ET.parse(pools_run.out_dir / "junit.xml")  # noqa: S314 - our own pytest's output
    names = {case.get("name") for case in tree.iter("testcase")}
    assert {"test_docker_run[pool=ci]", "test_docker_run[pool=default]"} <= names, names


def test_require_mode_dind_across_pools(pools_run: SuiteRun) -> None:
    """The ci pool's failing cache class is a warning for DinD, not a blocker, so --require-mode dind passes.

    DinD keeps /var/lib/docker on an emptyDir (overlay passed on the node disk there); the cache class only says
    where not to keep the layer cache.
    """
    pools = {pool["pool"]: pool for pool in pools_run.report["pools"]}
    ci_dind = next(m for m in pools["ci"]["modes"] if m["id"] == "dind")
    assert ci_dind["usable"] is True, ci_dind
    assert any("cache" in warning.lower() for warning in ci_dind["warnings"]), ci_dind
    assert pools_run.exit_code == 0, pools_run.output[-3000:]
    assert "--require-mode dind: usable on every pool" in pools_run.output


def test_a_selector_matching_nothing_exits_4_in_seconds(testbed_env: dict[str, str], pools_dir: Path) -> None:
    started = time.monotonic()
    run = run_suite(testbed_env, pools_dir / "no-match", "--node-selector", f"{POOL_LABEL}=nope")
    assert run.exit_code == 4, run.output[-3000:]
    assert time.monotonic() - started < 20
    assert f"--node-selector {POOL_LABEL}=nope: no node matches" in run.output


def test_the_ci_pool_without_toleration_is_a_usage_error_naming_the_taint(
    testbed_env: dict[str, str], pools_dir: Path
) -> None:
    run = run_suite(testbed_env, pools_dir / "no-toleration", "--node-selector", f"{POOL_LABEL}=ci")
    assert run.exit_code == 4, run.output[-3000:]
    assert "--toleration dedicated=ci:NoSchedule" in run.output


DIND_CHECKS = ("privileged-admission", "socket-sharing", "docker-run")
ONLY_DIND_CHECKS = ("-k", "privileged_admission or socket_sharing or docker_run")


def test_a_cordoned_pool_is_named_and_fails_the_gate(
    testbed_env: dict[str, str], pools_dir: Path, pool_nodes: dict[str, str]
) -> None:
    """The ci pool exists by label but its only node is cordoned: no probe reaches it, so dind is not proven there."""
    ci = pool_nodes["ci"]
    kubectl(testbed_env, "cordon", ci)
    try:
        run = run_suite(testbed_env, pools_dir / "cordoned", *EACH_POOL, "--require-mode", "dind", *ONLY_DIND_CHECKS)
    finally:
        kubectl(testbed_env, "uncordon", ci)
    assert run.exit_code == 1, run.output[-3000:]
    reason = f"no Ready, schedulable node: {ci} cordoned"
    assert "dindcheck: --require-mode dind: NOT usable on pool(s) ci" in run.output, run.output[-3000:]
    assert f"dindcheck: --require-mode dind: pool ci was not probed: {reason}" in run.output
    report = run.report
    assert report["unprobed_pools"] == [{"pool": "ci", "nodes": [ci], "reason": reason}]
    assert [pool["pool"] for pool in report["pools"]] == ["default"]
    default_dind = next(m for m in report["pools"][0]["modes"] if m["id"] == "dind")
    assert default_dind["usable"] is True, default_dind  # proven on the pool that was probed, not on every pool
    assert report["required_mode"] == {"mode": "dind", "usable": False, "unusable_pools": ["ci"]}


def test_dind_checks_spread_over_two_nodes_prove_no_node_does_it_all(
    testbed_env: dict[str, str], pools_dir: Path, pool_nodes: dict[str, str]
) -> None:
    """No selector and every taint tolerated: the scheduler spreads the probe pods over both nodes.

    The pods' placement is the scheduler's, so the test reads where each check ran: spread, dind is not usable and
    the reason names the nodes; all on one node, dind is usable (and the spread case was not exercised: skipped).
    """
    run = run_suite(
        testbed_env, pools_dir / "spread", "--toleration", "all", "--require-mode", "dind", *ONLY_DIND_CHECKS
    )
    assert run.report, run.output[-3000:]
    ran_on = {check_id: run.check(check_id)["evidence"].get("node", "") for check_id in DIND_CHECKS}
    nodes = {node for where in ran_on.values() for node in where.split(", ") if node}
    assert nodes <= set(pool_nodes.values()), ran_on
    dind = run.mode("dind")
    if len(nodes) == 1:
        assert dind["usable"] is True, dind
        assert run.exit_code == 0, run.output[-3000:]
        pytest.skip(f"the scheduler put every dind check on {nodes.pop()} this time: the spread case was not exercised")
    assert dind["usable"] is False, dind
    assert dind["blocked_by"] == list(DIND_CHECKS), dind
    reason = next(r for r in run.report["recommendation"]["reasons"] if r.startswith("dind not usable: "))
    assert "proven on different nodes: " in reason, reason
    for check_id, where in ran_on.items():
        assert f"{check_id} on {where}" in reason, (check_id, reason)
    assert run.exit_code == 1, run.output[-3000:]


def test_nothing_is_left_behind_on_either_node(testbed_env: dict[str, str], pools_run: SuiteRun) -> None:
    del pools_run
    assert wait_until_clean(testbed_env, 60) == []
    pods = kubectl(testbed_env, "get", "pods", "-A", "-o", "wide", "--no-headers")
    assert "dc-" not in pods, pods
