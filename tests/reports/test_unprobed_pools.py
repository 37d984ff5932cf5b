"""A pool that exists by label but no probe reached (NotReady, cordoned, untolerated): nothing is proven on it.

The top level of an --each-pool report says what holds on every pool, so while such a pool exists no mode is usable
there, --require-mode names the pool, and every renderer says which pool was not probed and why.
"""

from __future__ import annotations

from dataclasses import replace

import reports
from probes.model import Mode, RunResult, UnprobedPool
from reports import json_report
from reports.recommend import DECISION_TABLE
from tests.reports.conftest import DEFAULT_NODES, default_pool_verdicts, make_pool, make_pools_run

CORDONED = UnprobedPool("ci", ("ci-1", "ci-2"), "no Ready, schedulable node: ci-1 cordoned, ci-2 NotReady")
CAUSE = f"pool ci not probed ({CORDONED.reason}): nothing is proven there"


def default_probed_ci_not(required_mode: Mode | None = Mode.DIND) -> RunResult:
    """The default pool proves everything the permissive profile does; the ci pool could not be probed."""
    run = make_pools_run(make_pool("default", DEFAULT_NODES, default_pool_verdicts()), required_mode=required_mode)
    return replace(run, unprobed_pools=(CORDONED,))


def test_a_mode_proven_on_every_probed_pool_is_not_usable_while_a_pool_was_not_probed() -> None:
    report = reports.build_report(default_probed_ci_not())
    assert report.pools[0].report.is_usable(Mode.DIND)  # the default pool keeps its own answer
    assert not report.is_usable(Mode.DIND)
    assert report.unusable_pools(Mode.DIND) == ("ci",)
    assert report.unusable_pools(Mode.NONE) == ()  # 'none' asks for nothing
    rules = {rule.mode: rule for rule in DECISION_TABLE}
    for assessment in report.assessments:
        assert not assessment.usable
        assert set(rules[assessment.mode].requires) <= set(assessment.blocked_by)
        assert CAUSE in assessment.causes
    assert (report.recommendation.full_docker, report.recommendation.build_only) == (Mode.NONE, Mode.NONE)
    assert f"dind not usable: {CAUSE}" in report.recommendation.reasons


def test_the_json_names_the_unprobed_pool_and_the_gate_counts_it() -> None:
    document = reports.build_report(default_probed_ci_not()).json
    assert json_report.validate(document) is True
    assert document["unprobed_pools"] == [{"pool": "ci", "nodes": ["ci-1", "ci-2"], "reason": CORDONED.reason}]
    assert document["required_mode"] == {"mode": "dind", "usable": False, "unusable_pools": ["ci"]}
    assert [pool["pool"] for pool in document["pools"]] == ["default"]


def test_every_pool_probed_gives_an_empty_unprobed_list() -> None:
    run = make_pools_run(make_pool("default", DEFAULT_NODES, default_pool_verdicts()), required_mode=Mode.DIND)
    report = reports.build_report(run)
    assert report.json["unprobed_pools"] == []
    assert report.is_usable(Mode.DIND)


def test_the_terminal_and_markdown_say_which_pool_was_not_probed_and_why() -> None:
    report = reports.build_report(default_probed_ci_not())
    lines = reports.render_terminal(report)
    assert f"pool ci NOT PROBED (node(s) ci-1, ci-2): {CORDONED.reason}; no mode is proven there" in lines
    assert "required mode dind: NOT usable on pool(s) ci" in lines
    markdown = reports.render_markdown(report)
    assert "**Pool `ci` NOT PROBED** (node(s) `ci-1`, `ci-2`)" in markdown
    assert "**Required mode `dind`:** NOT usable ❌ on pool(s) `ci`" in markdown


# --- a big cluster: hundreds of pools scaled to zero are summed up in one line, each kept in the JSON ---


def many_unprobed(count: int) -> tuple[UnprobedPool, ...]:
    """Count pools of 17 NotReady nodes each, as a big cluster's scaled-down pools are."""
    return tuple(
        UnprobedPool(
            f"pool-{index:03d}",
            tuple(f"node-{index:03d}-{member:02d}" for member in range(17)),
            f"no Ready, schedulable node: node-{index:03d}-00 NotReady, ...",
            "no Ready, schedulable node",
        )
        for index in range(count)
    )


def test_three_hundred_unprobed_pools_take_one_line_in_every_human_report() -> None:
    run = replace(default_probed_ci_not(), unprobed_pools=many_unprobed(300))
    report = reports.build_report(run)
    summary = (
        "300 pools NOT PROBED (5100 nodes): 300 with no Ready, schedulable node; pool-000, pool-001, pool-002 and "
        "297 more (each pool, its nodes and why: the JSON report's unprobed_pools)"
    )
    terminal = reports.render_terminal(report)
    assert f"{summary}; no mode is proven there" in terminal
    assert not [line for line in terminal if "pool-150" in line]
    assert len(terminal) < 100
    markdown = reports.render_markdown(report)
    assert f"**{summary}**. No mode is proven there" in markdown
    assert "pool-150" not in markdown
    for assessment in report.assessments:
        assert not assessment.usable
        assert assessment.causes.count(f"{summary}: nothing is proven there") == 1
        assert not [cause for cause in assessment.causes if "pool-150" in cause]
    assert len(report.json["unprobed_pools"]) == 300  # the machine-readable report keeps every pool
    assert len(report.json["required_mode"]["unusable_pools"]) == 300


def test_a_few_unprobed_pools_are_each_named() -> None:
    run = replace(default_probed_ci_not(), unprobed_pools=many_unprobed(5))
    terminal = reports.render_terminal(reports.build_report(run))
    assert len([line for line in terminal if "NOT PROBED (node(s) node-" in line]) == 5
