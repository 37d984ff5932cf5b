"""A run's cluster block: each node the lsm check ran on carries what it read there, every other node null.

The cluster is replaced by fixed answers (tests/plugin/fixed_runner.py); the lsm verdicts are the probe's own reading
of recorded node states, and pairing them with the nodes is the plugin's own code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.plugin.fixed_runner import conftest, probe_tests, with_lsm_read
from tests.probes.test_lsm_readings import TESTBED, UBUNTU_2404

pytest_plugins = ("pytester",)


def run(pytester: pytest.Pytester, readings: dict[str, dict[str, str]], nodes: tuple[str, ...], *args: str) -> Any:
    """The run's JSON report, each node by name, and the run's terminal output."""
    pytester.makeconftest(conftest(with_lsm_read, readings, *nodes))
    pytester.makepyfile(test_lsm=probe_tests("lsm"), test_docker_run=probe_tests("docker-run"))
    report = Path(pytester.path) / "report.json"
    result = pytester.runpytest_subprocess("-p", "dindcheck.plugin", "--report-json", str(report), *args)
    document = json.loads(report.read_text(encoding="utf-8"))
    return {node["name"]: node for node in document["cluster"]["nodes"]}, result


def test_the_node_the_lsm_check_ran_on_carries_its_facts_and_another_node_null(pytester: pytest.Pytester) -> None:
    nodes, result = run(pytester, {"node-a": UBUNTU_2404}, ("default", "cordoned-ci"))
    assert nodes["node-a"]["cgroup"] == "v2"
    assert nodes["node-a"]["lsm"] == ["apparmor"]
    assert nodes["node-a"]["apparmor_profile"] == "cri-containerd.apparmor.d (enforce)"
    assert nodes["node-ci"]["cgroup"] is None
    assert nodes["node-ci"]["lsm"] is None
    result.stdout.fnmatch_lines(
        ["*node security (read by the lsm check): node-a: cgroup v2, AppArmor (cri-containerd.apparmor.d enforce)"]
    )


def test_an_inconclusive_lsm_check_leaves_its_node_not_observed(pytester: pytest.Pytester) -> None:
    nodes, result = run(pytester, {}, ("default",))
    assert nodes["node-a"]["cgroup"] is None
    assert nodes["node-a"]["lsm"] is None
    result.stdout.fnmatch_lines(["*node security (read by the lsm check): node-a: not observed"])


def test_a_deselected_lsm_check_leaves_every_node_not_observed(pytester: pytest.Pytester) -> None:
    nodes, result = run(pytester, {"node-a": UBUNTU_2404}, ("default",), "-k", "docker_run")
    assert nodes["node-a"]["cgroup"] is None
    result.stdout.fnmatch_lines(["*node security (read by the lsm check): node-a: not observed"])


def test_each_pool_node_gets_the_facts_its_own_pools_lsm_check_read(pytester: pytest.Pytester) -> None:
    readings = {"node-a": UBUNTU_2404, "node-ci": TESTBED}
    nodes, _ = run(
        pytester, readings, ("default", "tainted-ci"), "--each-pool", "dindcheck.io/pool", "--toleration", "all"
    )
    assert (nodes["node-a"]["cgroup"], nodes["node-a"]["lsm"]) == ("v2", ["apparmor"])
    assert (nodes["node-ci"]["cgroup"], nodes["node-ci"]["lsm"]) == ("v1", [])
