"""Where a run probes: targeting options, taints and tolerations, and one node per pool (pure logic over nodes)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from probes.engine import place, short_name
from probes.exceptions import UsageError
from probes.model import Placement, UnprobedPool
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


def test_a_tolerated_selector_is_probed_on_its_first_node_by_name() -> None:
    """A selector matching several nodes is probed on one, so a mode's checks are proven on the same node."""
    placement = Placement(
        node_selector={"dindcheck.io/pool": "ci"}, tolerations=(parse_toleration("dedicated=ci:NoSchedule"),)
    )
    target = single_target(CLUSTER, placement)
    assert target.nodes == ("node-ci-2", "node-ci")
    assert target.node == "node-ci"
    assert target.placement == replace(placement, node="node-ci")
    assert "first by name" in target.chosen_because
    assert target.paste.node == ""  # the config to paste targets the selection, never the probed node


def test_a_named_node_is_the_one_probed() -> None:
    target = single_target(CLUSTER, Placement(node="node-a"))
    assert (target.node, target.placement.node, target.paste.node) == ("node-a", "node-a", "node-a")
    assert target.chosen_because == "named by --node"


ALL = Placement(tolerations=(parse_toleration("all"),))


def test_one_node_per_pool_the_same_every_run() -> None:
    plan = pool_targets(CLUSTER, "dindcheck.io/pool", ALL)
    assert [(t.pool, t.node) for t in plan.targets] == [("ci", "node-ci"), ("default", "node-a")]
    ci = plan.targets[0]
    assert ci.nodes == ("node-ci", "node-ci-2")
    assert "first by name" in ci.chosen_because
    assert ci.placement.node == "node-ci"
    assert ci.placement.tolerations == ({"operator": "Exists"},)
    assert plan.targets[1].chosen_because == "the pool's only Ready node"
    assert plan.notes == ()


def test_a_pool_whose_nodes_are_all_not_ready_is_unprobed_and_says_why() -> None:
    """The gpu pool exists by label but no probe can run there: it is named, never silently dropped."""
    plan = pool_targets(CLUSTER, "dindcheck.io/pool", ALL)
    assert plan.unprobed == (
        UnprobedPool("gpu", ("node-b",), "no Ready, schedulable node: node-b NotReady", "no Ready, schedulable node"),
    )


def test_a_cordoned_pool_is_unprobed_and_says_why() -> None:
    cordoned = replace(CI, schedulable=False)
    both = replace(CI_2, ready=False, schedulable=False)
    plan = pool_targets((DEFAULT, cordoned, both), "dindcheck.io/pool", ALL)
    assert [t.pool for t in plan.targets] == ["default"]
    assert plan.unprobed == (
        UnprobedPool(
            "ci",
            ("node-ci", "node-ci-2"),
            "no Ready, schedulable node: node-ci cordoned, node-ci-2 NotReady and cordoned",
            "no Ready, schedulable node",
        ),
    )


def test_a_pool_with_one_cordoned_node_is_probed_on_another() -> None:
    plan = pool_targets((DEFAULT, replace(CI, schedulable=False), CI_2), "dindcheck.io/pool", ALL)
    assert [(t.pool, t.node, t.nodes) for t in plan.targets] == [
        ("ci", "node-ci-2", ("node-ci-2",)),
        ("default", "node-a", ("node-a",)),
    ]
    assert plan.unprobed == ()


def test_an_untolerated_pool_is_unprobed_and_names_the_toleration() -> None:
    plan = pool_targets(CLUSTER, "dindcheck.io/pool", Placement())
    assert [t.pool for t in plan.targets] == ["default"]
    ci = next(pool for pool in plan.unprobed if pool.name == "ci")
    assert ci.nodes == ("node-ci", "node-ci-2")
    assert ci.reason == (
        "every Ready node is tainted dedicated=ci:NoSchedule "
        "(add --toleration dedicated=ci:NoSchedule, or --toleration all)"
    )
    assert [pool.name for pool in plan.unprobed] == ["ci", "gpu"]


def test_nodes_without_the_label_are_named() -> None:
    unlabelled = NodeView("plain", ready=True, schedulable=True)
    plan = pool_targets((DEFAULT, unlabelled), "dindcheck.io/pool", Placement())
    assert [t.pool for t in plan.targets] == ["default"]
    assert plan.notes == ("--each-pool dindcheck.io/pool: not probed, no dindcheck.io/pool label: plain",)


def test_no_pool_at_all_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no node has the label agentpool"):
        pool_targets(CLUSTER, "agentpool", Placement())


def test_no_pool_that_can_be_probed_is_a_usage_error_naming_each() -> None:
    with pytest.raises(UsageError, match=r"no pool to probe.*pool ci: every Ready node is tainted.*pool gpu: no Ready"):
        pool_targets((CI, NOT_READY), "dindcheck.io/pool", Placement())


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
    ci, default = pool_targets(CLUSTER, "dindcheck.io/pool", ALL).targets
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
