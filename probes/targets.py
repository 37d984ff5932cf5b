"""Which nodes a run probes: the whole cluster as scheduled, one targeted pool, or every pool at once.

A verdict is about the nodes where CI runs. Real clusters keep CI on dedicated, tainted node pools, so a run can be
pointed at them (--node-selector, --toleration, --node) or run once per pool (--each-pool LABEL). Everything here
is decided from the Node objects before any pod exists: a selector that matches no Ready node, or nodes whose taints
the run does not tolerate, are usage errors within seconds, never a run whose pods stay Pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from probes.exceptions import UsageError
from probes.model import NO_PLACEMENT, Placement, UnprobedPool

BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
"""Taint effects that keep a pod off a node unless tolerated (PreferNoSchedule only discourages)."""
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATE_ALL: Mapping[str, str] = {"operator": "Exists"}
HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass(frozen=True)
class Taint:
    """A node taint, as `kubectl describe node` shows it."""

    key: str
    value: str
    effect: str

    def describe(self) -> str:
        """key=value:Effect (key:Effect without a value)."""
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True)
class NodeView:
    """What targeting needs to know of a node."""

    name: str
    ready: bool
    schedulable: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True)
class Target:
    """Where one full set of probes runs: the run as a whole (pool ''), or one pool of --each-pool."""

    pool: str
    placement: Placement
    node: str = ""
    """The node that stands for the pool (each pool's probes all run there)."""
    chosen_because: str = ""
    nodes: tuple[str, ...] = ()
    """Every Ready node of the pool."""
    paste: Placement = NO_PLACEMENT
    """The placement the config to paste carries: the pool's label, and tolerations of the taints actually met
    (never 'tolerate everything', which --toleration all means for a probe, not for a CI pod)."""


WHOLE_CLUSTER = Target(pool="", placement=NO_PLACEMENT)


def parse_node_selector(values: list[str]) -> dict[str, str]:
    """['KEY=VALUE', ...] -> {KEY: VALUE}; UsageError names a value that is no KEY=VALUE."""
    selector: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--node-selector {text!r}: expected KEY=VALUE, e.g. dindcheck.io/pool=ci")
        selector[key.strip()] = value.strip()
    return selector


def parse_toleration(text: str) -> Mapping[str, str]:
    """'KEY[=VALUE][:EFFECT]' or 'all' -> a Kubernetes toleration; UsageError names what is wrong."""
    if text.strip() == "all":
        return dict(TOLERATE_ALL)
    body, colon, effect = text.rpartition(":") if ":" in text else (text, "", "")
    if colon and effect not in TAINT_EFFECTS:
        raise UsageError(f"--toleration {text!r}: the effect must be one of {', '.join(TAINT_EFFECTS)}")
    key, sep, value = body.partition("=")
    if not key.strip():
        raise UsageError(f"--toleration {text!r}: expected KEY[=VALUE]:EFFECT (e.g. dedicated=ci:NoSchedule) or all")
    toleration = {"key": key.strip(), "operator": "Equal" if sep else "Exists"}
    if sep:
        toleration["value"] = value.strip()
    if effect:
        toleration["effect"] = effect
    return toleration


def tolerates(toleration: Mapping[str, str], taint: Taint) -> bool:
    """Kubernetes' rule: effect empty or equal, key empty (with Exists) or equal, and Exists or an equal value."""
    if toleration.get("effect") and toleration["effect"] != taint.effect:
        return False
    key = toleration.get("key", "")
    if key and key != taint.key:
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return True
    return bool(key) and toleration.get("value", "") == taint.value


def blocking_taints(node: NodeView, tolerations: tuple[Mapping[str, str], ...]) -> tuple[Taint, ...]:
    """The node's taints that keep a pod with these tolerations off it."""
    return tuple(
        taint
        for taint in node.taints
        if taint.effect in BLOCKING_EFFECTS and not any(tolerates(t, taint) for t in tolerations)
    )


def _matches(node: NodeView, selector: Mapping[str, str]) -> bool:
    return all(node.labels.get(key) == value for key, value in selector.items())


def _describe_selector(placement: Placement) -> str:
    parts = [f"--node-selector {key}={value}" for key, value in placement.node_selector.items()]
    if placement.node:
        parts.append(f"--node {placement.node}")
    return " ".join(parts)


def _usable(node: NodeView, tolerations: tuple[Mapping[str, str], ...]) -> bool:
    return node.ready and node.schedulable and not blocking_taints(node, tolerations)


def _taint_advice(nodes: list[NodeView], tolerations: tuple[Mapping[str, str], ...]) -> str:
    taints = sorted({taint.describe() for node in nodes for taint in blocking_taints(node, tolerations)})
    flags = " ".join(f"--toleration {taint}" for taint in taints)
    return f"tainted {', '.join(taints)} (add {flags}, or --toleration all)"


def met_tolerations(nodes: list[NodeView], tolerations: tuple[Mapping[str, str], ...]) -> tuple[Mapping[str, str], ...]:
    """Tolerations for exactly the blocking taints of these nodes that the run's tolerations let it past."""
    if not tolerations:
        return ()
    met = {taint for node in nodes for taint in node.taints if taint.effect in BLOCKING_EFFECTS}
    return tuple(
        {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
        if t.value
        else {"key": t.key, "operator": "Exists", "effect": t.effect}
        for t in sorted(met, key=lambda taint: (taint.key, taint.effect))
    )


def _first_by_name(takers: list[NodeView], members: int, whose: str) -> tuple[NodeView, str]:
    """The node that stands for a set of nodes, and why: the first by name, so every run probes the same node.

    One node proves everything a mode needs (a mode's checks passing on different nodes prove nothing together).
    """
    chosen = min(takers, key=lambda node: node.name)
    if members == 1:
        return chosen, f"the {whose} only Ready node"
    return chosen, (
        f"the first by name of the {whose} {len(takers)} Ready node(s) that take the probe pods (of {members}): "
        "the same node every run"
    )


def single_target(nodes: tuple[NodeView, ...], placement: Placement) -> Target:
    """The run's one target; with a selector or node, at least one Ready node must take its pods.

    A selector matching several nodes is probed on one of them (as each pool of --each-pool is), so the checks a
    mode needs are proven on the same node; the config to paste keeps the selector, never that node.
    """
    if not (placement.node_selector or placement.node):
        return Target(pool="", placement=placement)
    wanted = [node for node in nodes if _matches(node, placement.node_selector)]
    if placement.node:
        wanted = [node for node in wanted if node.name == placement.node]
    ready = [node for node in wanted if node.ready and node.schedulable]
    what = _describe_selector(placement)
    if not ready:
        seen = f"{len(wanted)} matching node(s), none Ready and schedulable" if wanted else "no node matches"
        raise UsageError(f"{what}: {seen} (kubectl get nodes --show-labels lists them)")
    takers = [node for node in ready if _usable(node, placement.tolerations)]
    if not takers:
        raise UsageError(f"{what}: every matching Ready node is {_taint_advice(ready, placement.tolerations)}")
    paste = Placement(
        node_selector=placement.node_selector,
        tolerations=met_tolerations(takers, placement.tolerations),
        node=placement.node,
    )
    chosen, why = _first_by_name(takers, len(ready), "selection's")
    if placement.node:
        why = "named by --node"
    return Target(
        pool="",
        placement=replace(placement, node=chosen.name),
        node=chosen.name,
        chosen_because=why,
        nodes=tuple(node.name for node in takers),
        paste=paste,
    )


def _not_ready_reason(members: list[NodeView]) -> str:
    """Why none of a pool's nodes takes pods: each node with its state (NotReady, cordoned, or both)."""

    def state(node: NodeView) -> str:
        words = [word for word, bad in (("NotReady", not node.ready), ("cordoned", not node.schedulable)) if bad]
        return f"{node.name} {' and '.join(words)}"

    return f"no Ready, schedulable node: {', '.join(map(state, members))}"


@dataclass(frozen=True)
class PoolPlan:
    """Where an --each-pool run goes: a target per pool it can probe, the pools it cannot (and why), and notes."""

    targets: tuple[Target, ...]
    unprobed: tuple[UnprobedPool, ...] = ()
    notes: tuple[str, ...] = ()


def pool_targets(nodes: tuple[NodeView, ...], label: str, placement: Placement) -> PoolPlan:
    """One target per value of label among the nodes (that match the selector); the pools no probe can reach.

    Each pool is probed on one node: the first by name of its Ready, schedulable nodes whose taints the run
    tolerates, so tonight's run probes the same node as last night's. A pool that exists by label but none of whose
    nodes would take the probe pods (NotReady, cordoned, or tainted without a --toleration) is unprobed, with why:
    nothing is proven on it, which the report and --require-mode must say.
    """
    pools: dict[str, list[NodeView]] = {}
    unlabelled: list[str] = []
    for node in sorted(nodes, key=lambda n: n.name):
        if not _matches(node, placement.node_selector):
            continue
        if label in node.labels:
            pools.setdefault(node.labels[label], []).append(node)
        elif node.ready and node.schedulable:
            unlabelled.append(node.name)
    where = f" matching {_describe_selector(placement)}" if placement.node_selector else ""
    if not pools:
        raise UsageError(f"--each-pool {label}: no node{where} has the label {label} (kubectl get nodes -L {label})")
    notes: list[str] = []
    if unlabelled:
        notes.append(f"--each-pool {label}: not probed, no {label} label: {', '.join(unlabelled)}")
    targets: list[Target] = []
    unprobed: list[UnprobedPool] = []
    for pool, members in sorted(pools.items()):
        ready = [node for node in members if node.ready and node.schedulable]
        takers = [node for node in ready if _usable(node, placement.tolerations)]
        if not takers:
            reason = (
                f"every Ready node is {_taint_advice(ready, placement.tolerations)}"
                if ready
                else _not_ready_reason(members)
            )
            kind = "every Ready node tainted" if ready else "no Ready, schedulable node"
            unprobed.append(
                UnprobedPool(name=pool, nodes=tuple(node.name for node in members), reason=reason, kind=kind)
            )
            continue
        chosen, why = _first_by_name(takers, len(ready), "pool's")
        targets.append(
            Target(
                pool=pool,
                placement=Placement(node=chosen.name, tolerations=placement.tolerations),
                node=chosen.name,
                chosen_because=why,
                nodes=tuple(node.name for node in ready),
                paste=Placement(
                    node_selector={label: pool}, tolerations=met_tolerations([chosen], placement.tolerations)
                ),
            )
        )
    if not targets:
        left = "; ".join(f"pool {pool.name}: {pool.reason}" for pool in unprobed)
        raise UsageError(f"--each-pool {label}: no pool to probe among the nodes{where}: {left}")
    return PoolPlan(targets=tuple(targets), unprobed=tuple(unprobed), notes=tuple(notes))


def node_view(node: Any) -> NodeView:
    """A NodeView from a kubernetes client V1Node."""
    conditions = {c.type: c.status for c in (node.status.conditions or [])}
    taints = tuple(
        Taint(key=str(t.key), value=str(t.value or ""), effect=str(t.effect)) for t in (node.spec.taints or [])
    )
    return NodeView(
        name=str(node.metadata.name),
        ready=conditions.get("Ready") == "True",
        schedulable=not node.spec.unschedulable,
        labels=dict(node.metadata.labels or {}),
        taints=taints,
    )
