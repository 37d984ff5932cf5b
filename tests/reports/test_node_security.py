"""Each probed node's cgroup version and LSM in the cluster block, as the lsm check read them from inside a pod.

The API does not say either; only a node the lsm check ran on has them, and a node it did not run on says "not
observed" (JSON null), never a guess.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

import reports
from probes.model import ClusterInfo, Facts, NodeInfo, NodeSecurity, RunResult, Status, Verdict
from reports import json_report, markdown, terminal
from reports.fleet import build_fleet_report
from tests.reports.conftest import CLUSTER, NODE, make_run, make_verdict, permissive, two_pools
from tests.reports.test_fleet import SERVER_A, fleet, on

APPARMOR = NodeSecurity(cgroup="v2", lsm=("apparmor",), apparmor_profile="cri-containerd.apparmor.d (enforce)")
SELINUX = NodeSecurity(
    cgroup="v2",
    lsm=("selinux",),
    selinux_mode="enforcing",
    selinux_label="system_u:system_r:container_t:s0:c123,c456",
)
NONE_ACTIVE = NodeSecurity(cgroup="v1", lsm=())
OTHER = replace(NODE, name="testbed-1")
NOT_OBSERVED = {"cgroup": None, "lsm": None, "apparmor_profile": None, "selinux_mode": None, "selinux_label": None}


def lsm_on(node: str, security: NodeSecurity | None, status: Status = Status.PASS) -> Verdict:
    """The lsm check's verdict as the engine records it: the node its pod ran on, the facts the probe read."""
    facts = Facts() if security is None else Facts(node_security=security)
    return replace(make_verdict("lsm", status), facts=facts, nodes=(node,))


def without_lsm(verdicts: tuple[Verdict, ...]) -> tuple[Verdict, ...]:
    return tuple(verdict for verdict in verdicts if verdict.id != "lsm")


def run_with(*verdicts: Verdict, nodes: tuple[NodeInfo, ...] = (NODE, OTHER)) -> RunResult:
    """The run as the plugin completes it: the probed nodes, and each node's facts attached."""
    run = make_run(*verdicts)
    probed = tuple(sorted({node for verdict in verdicts for node in verdict.nodes}))
    cluster = replace(CLUSTER, nodes=nodes, probed_nodes=probed).with_security_of(verdicts)
    return replace(run, cluster=cluster)


# ----- the model: a node gets the facts of the check that ran on it alone -----------------------------------------


def test_a_node_gets_the_facts_of_the_check_that_ran_on_it_and_no_other_node_does() -> None:
    cluster = replace(CLUSTER, nodes=(NODE, OTHER)).with_security_of((lsm_on("testbed-0", APPARMOR),))
    assert [node.security for node in cluster.nodes] == [APPARMOR, None]


def test_facts_of_a_check_that_ran_on_two_nodes_are_given_to_neither() -> None:
    two = replace(lsm_on("testbed-0", APPARMOR), nodes=("testbed-0", "testbed-1"))
    cluster = replace(CLUSTER, nodes=(NODE, OTHER)).with_security_of((two,))
    assert [node.security for node in cluster.nodes] == [None, None]


def test_checks_without_node_facts_change_nothing() -> None:
    cluster = replace(CLUSTER, nodes=(NODE,))
    assert cluster.with_security_of((lsm_on("testbed-0", None, Status.INCONCLUSIVE),)) == cluster


@pytest.mark.parametrize(
    ("security", "said"),
    [
        (APPARMOR, "cgroup v2, AppArmor (cri-containerd.apparmor.d enforce)"),
        (SELINUX, "cgroup v2, SELinux enforcing (system_u:system_r:container_t:s0:c123,c456)"),
        (NONE_ACTIVE, "cgroup v1, no AppArmor or SELinux"),
        (
            NodeSecurity(cgroup="", lsm=("apparmor",), apparmor_profile="unconfined"),
            "cgroup version not read, AppArmor (unconfined)",
        ),
        (NodeSecurity(cgroup="v2", lsm=("selinux",)), "cgroup v2, SELinux"),
    ],
)
def test_a_node_is_described_by_what_was_read(security: NodeSecurity, said: str) -> None:
    assert security.describe() == said


# ----- JSON v1: additive keys on each node, null where not observed -------------------------------------------------


def test_json_node_entries_carry_what_was_read_and_null_for_a_node_not_observed() -> None:
    report = reports.build_report(run_with(lsm_on("testbed-0", APPARMOR)))
    nodes = {node["name"]: node for node in report.json["cluster"]["nodes"]}
    assert {key: nodes["testbed-0"][key] for key in NOT_OBSERVED} == {
        "cgroup": "v2",
        "lsm": ["apparmor"],
        "apparmor_profile": "cri-containerd.apparmor.d (enforce)",
        "selinux_mode": None,
        "selinux_label": None,
    }
    assert {key: nodes["testbed-1"][key] for key in NOT_OBSERVED} == NOT_OBSERVED
    assert nodes["testbed-1"]["kernel"] == NODE.kernel  # the API's facts stay as they were
    assert json_report.validate(report.json)


def test_json_of_an_selinux_node_and_a_node_with_no_lsm_active() -> None:
    selinux = reports.build_report(run_with(lsm_on("testbed-0", SELINUX), nodes=(NODE,)))
    assert selinux.json["cluster"]["nodes"][0]["selinux_mode"] == "enforcing"
    assert selinux.json["cluster"]["nodes"][0]["selinux_label"] == SELINUX.selinux_label
    assert selinux.json["cluster"]["nodes"][0]["apparmor_profile"] is None
    none_active = reports.build_report(run_with(lsm_on("testbed-0", NONE_ACTIVE), nodes=(NODE,)))
    assert none_active.json["cluster"]["nodes"][0]["lsm"] == []
    assert none_active.json["cluster"]["nodes"][0]["cgroup"] == "v1"
    assert json_report.validate(selinux.json)
    assert json_report.validate(none_active.json)


@pytest.mark.parametrize(("key", "value"), [("cgroup", "v3"), ("cgroup", ""), ("lsm", "apparmor"), ("selinux_mode", 1)])
def test_the_schema_rejects_node_facts_of_another_shape(key: str, value: object) -> None:
    document = reports.build_report(run_with(lsm_on("testbed-0", APPARMOR))).json
    document["cluster"]["nodes"][0][key] = value
    with pytest.raises(jsonschema.ValidationError):
        json_report.validate(document)


def test_a_report_written_before_the_keys_still_validates() -> None:
    document = reports.build_report(run_with(lsm_on("testbed-0", APPARMOR))).json
    for node in document["cluster"]["nodes"]:
        for key in NOT_OBSERVED:
            del node[key]
    assert json_report.validate(document)


def test_each_pool_node_gets_its_own_pools_facts() -> None:
    run = two_pools()
    default_node, ci_node = (pool.node for pool in run.pools)
    pools = (
        replace(run.pools[0], verdicts=(*without_lsm(run.pools[0].verdicts), lsm_on(default_node, NONE_ACTIVE))),
        replace(run.pools[1], verdicts=(*without_lsm(run.pools[1].verdicts), lsm_on(ci_node, SELINUX))),
    )
    verdicts = [verdict for pool in pools for verdict in pool.verdicts]
    run = replace(run, pools=pools, cluster=run.cluster.with_security_of(verdicts))
    report = reports.build_report(run)
    nodes = {node["name"]: node for node in report.json["cluster"]["nodes"]}
    assert nodes[default_node]["cgroup"] == "v1"
    assert nodes[ci_node]["lsm"] == ["selinux"]
    assert all(node["cgroup"] is None for name, node in nodes.items() if name not in (default_node, ci_node))
    assert json_report.validate(report.json)
    lines = terminal.render(report)
    assert (
        f"node security (read by the lsm check): {default_node}: cgroup v1, no AppArmor or SELinux; {ci_node}: "
        "cgroup v2, SELinux enforcing (system_u:system_r:container_t:s0:c123,c456)"
    ) in lines


def test_a_fleet_reports_each_clusters_node_facts(tmp_path: Path) -> None:
    observed = on(SERVER_A, permissive())
    observed = replace(
        observed,
        verdicts=(*without_lsm(observed.verdicts), lsm_on("testbed-0", APPARMOR)),
        cluster=observed.cluster.with_security_of((lsm_on("testbed-0", APPARMOR),)),
    )
    report = build_fleet_report(fleet(("a", observed)))
    path = tmp_path / "fleet.json"
    reports.write_json(report, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["clusters"][0]["cluster"]["nodes"][0]["cgroup"] == "v2"
    assert document["clusters"][0]["cluster"]["nodes"][0]["lsm"] == ["apparmor"]
    assert json_report.validate(document)


# ----- terminal and Markdown: the probed nodes, each with what was read or "not observed" ---------------------------


def read_on_one_of_two(security: NodeSecurity) -> reports.Report:
    """The lsm check read security on testbed-0; docker-run alone ran on testbed-1."""
    verdicts = (lsm_on("testbed-0", security), replace(make_verdict("docker-run"), nodes=("testbed-1",)))
    return reports.build_report(run_with(*verdicts))


def test_terminal_names_each_probed_nodes_cgroup_and_lsm() -> None:
    lines = terminal.render(read_on_one_of_two(APPARMOR))
    assert (
        "node security (read by the lsm check): testbed-0: cgroup v2, AppArmor (cri-containerd.apparmor.d enforce); "
        "testbed-1: not observed"
    ) in lines


def test_terminal_says_not_observed_when_the_lsm_check_was_inconclusive() -> None:
    lines = terminal.render(reports.build_report(run_with(lsm_on("testbed-0", None, Status.INCONCLUSIVE))))
    assert "node security (read by the lsm check): testbed-0: not observed" in lines


def test_no_node_security_line_without_probed_nodes_or_listed_nodes() -> None:
    unprobed = terminal.render(reports.build_report(make_run(make_verdict("lsm"))))
    assert not any(line.startswith("node security") for line in unprobed)
    unlisted = terminal.render(reports.build_report(run_with(lsm_on("testbed-0", APPARMOR), nodes=())))
    assert not any(line.startswith("node security") for line in unlisted)


def test_markdown_notes_each_probed_nodes_cgroup_and_lsm() -> None:
    text = markdown.render(read_on_one_of_two(SELINUX))
    assert (
        "- Node security, as the lsm check read it from inside a pod: `testbed-0`: cgroup v2, SELinux enforcing "
        "(system_u:system_r:container_t:s0:c123,c456); `testbed-1`: not observed."
    ) in text.splitlines()


def test_cluster_info_without_nodes_keeps_its_json() -> None:
    assert ClusterInfo(server="", version="").with_security_of(()).to_json()["nodes"] == []
