"""The finished report: one value every renderer reads, so terminal, JSON and Markdown never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from probes.model import (
    Mode,
    OverlayResult,
    PoolResult,
    RunResult,
    Status,
    TestedSpec,
    UnprobedPool,
    Verdict,
    summarize_unprobed,
)
from reports import changes, json_report, levels, recommend
from reports.changes import Changes
from reports.snippets import spec_selinux_type

LabelledVerdict = tuple[str, Verdict]
"""(label, verdict): the label is the check id, or 'pool/check' in a multi-pool report."""


@dataclass(frozen=True)
class PoolReport:
    """One pool of an --each-pool run and its own report, as if only that pool had been probed (no baseline)."""

    pool: PoolResult
    report: Report

    @property
    def name(self) -> str:
        """The pool label's value."""
        return self.pool.name


@dataclass(frozen=True)
class Report:
    """A run's verdicts, the per-mode assessment, the recommendation, and the v1 JSON built from them.

    For an --each-pool run (pools non-empty) the run has no verdicts of its own; assessments and recommendation are
    what holds on every pool, and each pool's own report is in `pools`.
    """

    run: RunResult
    assessments: tuple[recommend.ModeAssessment, ...]
    recommendation: recommend.Recommendation
    json: dict[str, Any]
    changes: changes.Changes | None = None
    """What changed since the --baseline report (None without a baseline)."""
    pools: tuple[PoolReport, ...] = ()
    """Each probed pool's report, in the run's pool order; empty for a single-pool run."""
    since_pinned: Changes | None = None
    """What changed since the --pinned-baseline report (None without one): its losses fail until the pin moves."""

    @property
    def regressions(self) -> tuple[str, ...]:
        """What --fail-on-regression fails on: losses since the baseline and since the pinned baseline, each once."""
        return changes.failing_regressions(self.changes, self.since_pinned)

    def is_usable(self, mode: Mode) -> bool:
        """The --require-mode gate: is this mode usable (on every pool)? ('none' asks for nothing: always true)."""
        return json_report.required_mode_usable(mode, self.assessments)

    def unusable_pools(self, mode: Mode) -> tuple[str, ...]:
        """The pools where the mode is not usable, in pool order, then the unprobed ones: what --require-mode names.

        Always empty for a single-pool run (there are no named pools): ask is_usable there.
        """
        return levels.unusable(mode, self.pools, tuple(pool.name for pool in self.run.unprobed_pools))

    def unusable_pools_in_words(self, mode: Mode) -> tuple[str, ...]:
        """unusable_pools for people: many unprobed pools are counted ('300 unprobed pools'), not listed."""
        if not summarize_unprobed(self.run.unprobed_pools):
            return self.unusable_pools(mode)
        unprobed = {pool.name for pool in self.run.unprobed_pools}
        probed = tuple(name for name in self.unusable_pools(mode) if name not in unprobed)
        return (*probed, f"{len(unprobed)} unprobed pools")

    def tested_specs(self, mode: Mode) -> tuple[TestedSpec, ...]:
        """The pod specs of a mode its config is printed from: the run's, or those of the first pool that proved one."""
        if not self.pools:
            return self.run.tested_specs(mode)
        source = levels.proven_on(mode, self.pools)
        return source.report.tested_specs(mode) if source is not None else ()

    def selinux_types(self) -> tuple[str, ...]:
        """The SELinux types (--selinux-type) the modes' pods ran as: every verdict holds for pods that run as them."""
        ran_as = {
            selinux_type
            for assessment in self.assessments
            for tested in self.tested_specs(assessment.mode)
            if (selinux_type := spec_selinux_type(tested.spec))
        }
        return tuple(sorted(ran_as))

    def cache_class(self) -> OverlayResult | None:
        """The cache StorageClass result that holds on every pool (the run's own for a single-pool run)."""
        if not self.pools:
            return recommend.tested_cache_class(self.run)
        return levels.cache_on_every(self.pools)

    def verdicts(self) -> tuple[LabelledVerdict, ...]:
        """Every verdict of the run, labelled: check ids, or 'pool/check' pool by pool for a multi-pool run."""
        if self.pools:
            return tuple((f"{pool.name}/{label}", v) for pool in self.pools for label, v in pool.report.verdicts())
        return tuple((verdict.id, verdict) for verdict in self.run.verdicts)

    def check_ids(self) -> tuple[str, ...]:
        """Every known check in catalog order (so a deselected one shows), then checks any pool ran that it lacks."""
        ran = (verdict.id for verdict in self.run.verdicts)
        if self.pools:
            ran = (verdict.id for pool in self.pools for verdict in pool.report.run.verdicts)
        return tuple(dict.fromkeys((*self.run.capabilities, *ran)))

    def check_rows(self) -> tuple[tuple[str, Verdict | None], ...]:
        """Every check with its verdict, None when not run; for a multi-pool run, pool by pool as 'pool/check'."""
        if self.pools:
            return tuple((f"{pool.name}/{label}", v) for pool in self.pools for label, v in pool.report.check_rows())
        return tuple((check_id, self.run.verdict(check_id)) for check_id in self.check_ids())

    def check_matrix(self) -> tuple[tuple[str, tuple[Verdict | None, ...]], ...]:
        """Check by pool: one row per check (check_ids order), one cell per pool (pools order), None when not run."""
        runs = [pool.report.run for pool in self.pools] or [self.run]
        return tuple((check_id, tuple(run.verdict(check_id) for run in runs)) for check_id in self.check_ids())

    def proved_nothing(self) -> tuple[LabelledVerdict, ...]:
        """Checks that ran and proved nothing either way (inconclusive), then those that were skipped; every pool's."""
        return proved_nothing(self.verdicts())


def proved_nothing(verdicts: tuple[LabelledVerdict, ...]) -> tuple[LabelledVerdict, ...]:
    """The inconclusive verdicts, then the skipped ones, each in the order given."""
    order = (Status.INCONCLUSIVE, Status.SKIPPED)
    return tuple((label, v) for status in order for label, v in verdicts if v.status is status)


def unprobed_cause(pool: UnprobedPool) -> str:
    """Why a mode is not proven on every pool when a pool could not be probed."""
    return f"pool {pool.name} not probed ({pool.reason}): nothing is proven there"


def unprobed_causes(unprobed: tuple[UnprobedPool, ...]) -> tuple[str, ...]:
    """What blocks every mode on every pool while pools are unprobed: each named with why, or many summed up."""
    if not unprobed:
        return ()
    summary = summarize_unprobed(unprobed)
    return (f"{summary}: nothing is proven there",) if summary else tuple(unprobed_cause(pool) for pool in unprobed)


def build_report(
    run: RunResult, baseline: Mapping[str, Any] | None = None, *, pinned: Mapping[str, Any] | None = None
) -> Report:
    """Assess every mode, recommend, build the JSON once, and compare it with the baseline reports when given.

    An --each-pool run first gets one report per pool; its own assessments and recommendation then combine them, and
    a pool that could not be probed keeps every mode from being usable on every pool.
    """
    pool_reports = tuple(PoolReport(pool, build_report(run.for_pool(pool))) for pool in run.pools)
    unprobed_names = tuple(pool.name for pool in run.unprobed_pools)
    if pool_reports:
        assessments = levels.block_unprobed(levels.assess(pool_reports), unprobed_causes(run.unprobed_pools))
        recommendation = levels.recommend_every(pool_reports, assessments)
    else:
        assessments = recommend.assess(run)
        recommendation = recommend.recommend(run, assessments)
    unusable = () if run.required_mode is None else levels.unusable(run.required_mode, pool_reports, unprobed_names)
    document = json_report.build_report_json(
        run,
        assessments,
        recommendation,
        pools=[(pool.pool, pool.report.json) for pool in pool_reports],
        unusable_pools=unusable,
    )
    found = since_pinned = None
    if baseline is not None:
        found = changes.compute_changes(baseline, document)
    if pinned is not None:
        since_pinned = changes.compute_changes(pinned, document)
    if found is not None:
        document["changes"] = found.to_json()
    if since_pinned is not None:
        document["changes_since_pinned"] = since_pinned.to_json()
    return Report(
        run=run,
        assessments=assessments,
        recommendation=recommendation,
        json=document,
        changes=found,
        pools=pool_reports,
        since_pinned=since_pinned,
    )
