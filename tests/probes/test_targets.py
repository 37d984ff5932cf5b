"""Where a run probes: targeting options, taints and tolerations, and one node per pool (pure logic over nodes)."""

from __future__ import annotations

from typing import Any

import pytest

from probes.engine import place, short_name
from probes.exceptions import UsageError
from probes.model import Placement
from probes.targets import (
    NodeView,
    Taint,
    parse_node_selector,
    parse_toleration,
    pool_targets,
    single_target,
    tolerates,
)

CI_TAINT = Taint("dedicated", "ci", "NoSchedule")
DEFAULT = NodeView("node-a", ready=True, schedulable=True, labels={"dindcheck.io/pool": "default"})
CI = NodeView("node-ci", ready=True, schedulable=True, labels={"dindcheck.io/pool": "ci"}, taints=(CI_TAINT,))
CI_2 = NodeView("node-ci-2", ready=True, schedulable=True, labels={"dindcheck.io/pool": "ci"}, taints=(CI_TAINT,))
NOT_READY = NodeView("node-b", ready=False, schedulable=True, labels={"dindcheck.io/pool": "gpu"})
CLUSTER = (DEFAULT, CI_2, CI, NOT_READY)


@pytest.mark.parametrize(
    ("text", "toleration"),
    [
        ("dedicated=ci:NoSchedule", {"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}),
        ("dedicated:NoExecute", {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}),
        ("dedicated", {"key": "dedicated", "operator": "Exists"}),
        ("all", {"operator": "Exists"}),
    ],
)
def test_toleration_forms(text: str, toleration: dict[str, str]) -> None:
    assert parse_toleration(text) == toleration


@pytest.mark.parametrize("text", ["dedicated=ci:NoRun", "=ci:NoSchedule", ":NoSchedule"])
def test_a_bad_toleration_is_a_usage_error_naming_it(text: str) -> None:
    with pytest.raises(UsageError, match="--toleration"):
        parse_toleration(text)


def test_node_selector_needs_key_value() -> None:
    assert parse_node_selector(["dindcheck.io/pool=ci", "zone=a"]) == {"dindcheck.io/pool": "ci", "zone": "a"}
    with pytest.raises(UsageError, match="--node-selector 'ci'"):
        parse_node_selector(["ci"])


def test_kubernetes_toleration_rules() -> None:
    assert tolerates(parse_toleration("dedicated=ci:NoSchedule"), CI_TAINT)
    assert tolerates(parse_toleration("dedicated"), CI_TAINT)  # Exists, any effect
    assert tolerates(parse_toleration("all"), CI_TAINT)
    assert not tolerates(parse_toleration("dedicated=gpu:NoSchedule"), CI_TAINT)
    assert not tolerates(parse_toleration("dedicated=ci:NoExecute"), CI_TAINT)
    assert not tolerates(parse_toleration("other:NoSchedule"), CI_TAINT)


def test_no_targeting_leaves_placement_to_the_scheduler() -> None:
    target = single_target((), Placement())
    assert target.pool == ""
    assert not target.placement.targeted


def test_a_selector_matching_no_node_names_itself() -> None:
    with pytest.raises(UsageError, match=r"--node-selector dindcheck.io/pool=nope: no node matches"):
        single_target(CLUSTER, Placement(node_selector={"dindcheck.io/pool": "nope"}))


def test_a_selector_matching_only_unready_nodes_says_so() -> None:
    with pytest.raises(UsageError, match="1 matching node"):
        single_target(CLUSTER, Placement(node_selector={"dindcheck.io/pool": "gpu"}))


def test_tainted_matches_without_toleration_name_the_taint_and_the_flag() -> None:
    with pytest.raises(UsageError, match=r"tainted dedicated=ci:NoSchedule \(add --toleration dedicated=ci:NoSchedule"):
        single_target(CLUSTER, Placement(node_selector={"dindcheck.io/pool": "ci"}))


def test_a_tolerated_selector_targets_the_ci_nodes() -> None:
    placement = Placement(
        node_selector={"dindcheck.io/pool": "ci"}, tolerations=(parse_toleration("dedicated=ci:NoSchedule"),)
    )
    target = single_target(CLUSTER, placement)
    assert target.nodes == ("node-ci-2", "node-ci")
    assert target.placement == placement


def test_one_node_per_pool_the_same_every_run() -> None:
    found, notes = pool_targets(CLUSTER, "dindcheck.io/pool", Placement(tolerations=(parse_toleration("all"),)))
    assert [(t.pool, t.node) for t in found] == [("ci", "node-ci"), ("default", "node-a")]
    ci = found[0]
    assert ci.nodes == ("node-ci", "node-ci-2")
    assert "first by name" in ci.chosen_because
    assert ci.placement.node == "node-ci"
    assert ci.placement.tolerations == ({"operator": "Exists"},)
    assert found[1].chosen_because == "the pool's only Ready node"
    assert notes == ()  # the gpu pool has no Ready node: nothing to probe, nothing to say


def test_an_untolerated_pool_is_left_out_and_named() -> None:
    found, notes = pool_targets(CLUSTER, "dindcheck.io/pool", Placement())
    assert [t.pool for t in found] == ["default"]
    expected = (
        "pool ci not probed: every Ready node is tainted dedicated=ci:NoSchedule "
        "(add --toleration dedicated=ci:NoSchedule, or --toleration all)"
    )
    assert notes == (expected,)


def test_nodes_without_the_label_are_named() -> None:
    unlabelled = NodeView("plain", ready=True, schedulable=True)
    found, notes = pool_targets((DEFAULT, unlabelled), "dindcheck.io/pool", Placement())
    assert [t.pool for t in found] == ["default"]
    assert notes == ("--each-pool dindcheck.io/pool: not probed, no dindcheck.io/pool label: plain",)


def test_no_pool_at_all_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no Ready node has the label agentpool"):
        pool_targets(CLUSTER, "agentpool", Placement())


def test_placement_is_merged_into_the_pod_spec() -> None:
    spec: dict[str, Any] = {"nodeSelector": {"sysbox-runtime": "running"}, "containers": []}
    place(
        spec,
        Placement(node_selector={"dindcheck.io/pool": "ci"}, tolerations=(parse_toleration("all"),), node="node-ci"),
    )
    assert spec["nodeSelector"] == {"dindcheck.io/pool": "ci", "sysbox-runtime": "running"}
    assert spec["tolerations"] == [{"operator": "Exists"}]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-ci"]}]}]


def test_no_placement_leaves_the_spec_alone() -> None:
    spec: dict[str, Any] = {"containers": []}
    place(spec, Placement())
    assert spec == {"containers": []}


def test_short_names_are_dns_labels_and_stay_apart() -> None:
    assert short_name("ci") == "ci"
    long_a, long_b = short_name("gke-ci-pool-a"), short_name("gke-ci-pool-b")
    assert long_a != long_b
    assert len(long_a) <= 10
    assert all(ch.isalnum() or ch == "-" for ch in short_name("Pool_X.1"))


def test_the_config_to_paste_targets_the_pool_with_the_taints_met_not_everything() -> None:
    found, _ = pool_targets(CLUSTER, "dindcheck.io/pool", Placement(tolerations=(parse_toleration("all"),)))
    ci, default = found
    assert ci.paste == Placement(
        node_selector={"dindcheck.io/pool": "ci"},
        tolerations=({"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"},),
    )
    assert default.paste == Placement(node_selector={"dindcheck.io/pool": "default"})


def test_a_single_targeted_run_pastes_its_selector_and_the_taints_met() -> None:
    target = single_target(
        CLUSTER, Placement(node_selector={"dindcheck.io/pool": "ci"}, tolerations=(parse_toleration("all"),))
    )
    assert target.paste.node_selector == {"dindcheck.io/pool": "ci"}
    assert target.paste.tolerations == (
        {"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"},
    )
