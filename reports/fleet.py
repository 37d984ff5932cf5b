"""The report of a fleet run: each cluster's own report, and what holds on every cluster (issue 21).

A CI job may land on any cluster of the fleet, so a mode is usable fleet-wide only where it was proven on every
probed cluster, and a cluster no probe reached keeps every mode from being usable fleet-wide (nothing is proven
there). The combining is reports.levels', the same as across the node pools of an --each-pool run, with 'cluster'
as the level's word; each cluster's report is exactly what a run against that cluster alone would have built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from probes.model import FleetRun, Mode, RunResult, UnprobedCluster, Verdict
from reports import changes, json_report, levels
from reports.recommend import ModeAssessment, Recommendation
from reports.report import LabelledVerdict, Report, build_report, proved_nothing

NO_CLUSTER_CAUSE = "no cluster was probed: nothing is proven anywhere"


@dataclass(frozen=True)
class ClusterReport:
    """One probed cluster of a fleet run (its kubeconfig context) and its own report, as if probed alone."""

    context: str
    report: Report

    @property
    def name(self) -> str:
        """The context: what the fleet level names the cluster by."""
        return self.context


@dataclass(frozen=True)
class FleetReport:
    """A fleet run's clusters' reports, what holds on every cluster, and the v1 JSON built from them."""

    fleet: FleetRun
    clusters: tuple[ClusterReport, ...]
    assessments: tuple[ModeAssessment, ...]
    """Every mode, usable only when usable on every probed cluster and no cluster went unprobed."""
    recommendation: Recommendation
    json: dict[str, Any]
    notes: tuple[str, ...] = ()
    """What the fleet report says beyond its clusters' reports (a cluster the baseline does not have)."""
    unprobed_losses: tuple[str, ...] = ()
    """Clusters usable in a baseline and not probed now: regressions no cluster report can hold."""

    @property
    def unprobed(self) -> tuple[UnprobedCluster, ...]:
        """The clusters no probe reached, in the order the contexts were given."""
        return self.fleet.unprobed

    @property
    def required_mode(self) -> Mode | None:
        """--require-mode of the run."""
        return self.fleet.required_mode

    @property
    def regressions(self) -> tuple[str, ...]:
        """What --fail-on-regression fails on: every cluster's losses as 'ctx: loss', then clusters not probed now."""
        own = tuple(f"{cluster.context}: {lost}" for cluster in self.clusters for lost in cluster.report.regressions)
        return (*own, *self.unprobed_losses)

    def is_usable(self, mode: Mode) -> bool:
        """The --require-mode gate: is this mode usable on every cluster? ('none' asks for nothing: always true)."""
        return json_report.required_mode_usable(mode, self.assessments)

    def unusable_clusters(self, mode: Mode) -> tuple[str, ...]:
        """The contexts where the mode is not usable (on every pool, for --each-pool), then the unprobed ones."""
        return levels.unusable(mode, self.clusters, tuple(cluster.context for cluster in self.unprobed))

    def verdicts(self) -> tuple[LabelledVerdict, ...]:
        """Every verdict of every cluster, labelled 'ctx/check', or 'ctx/pool/check' for an --each-pool cluster."""
        return tuple(
            (f"{cluster.context}/{label}", verdict)
            for cluster in self.clusters
            for label, verdict in cluster.report.verdicts()
        )

    def proved_nothing(self) -> tuple[LabelledVerdict, ...]:
        """Checks that ran and proved nothing either way (inconclusive), then those skipped; every cluster's."""
        return proved_nothing(self.verdicts())

    def columns(self) -> tuple[tuple[str, RunResult], ...]:
        """The check matrix's columns: each cluster ('ctx'), or each pool of an --each-pool cluster ('ctx/pool')."""
        found: list[tuple[str, RunResult]] = []
        for cluster in self.clusters:
            if cluster.report.pools:
                found += [(f"{cluster.context}/{pool.name}", pool.report.run) for pool in cluster.report.pools]
            else:
                found.append((cluster.context, cluster.report.run))
        return tuple(found)

    def check_ids(self) -> tuple[str, ...]:
        """Every known check in catalog order, then checks any cluster ran that the catalog lacks."""
        ran = (verdict.id for _, run in self.columns() for verdict in run.verdicts)
        return tuple(dict.fromkeys((*self.fleet.capabilities, *ran)))

    def check_matrix(self) -> tuple[tuple[str, tuple[Verdict | None, ...]], ...]:
        """Check by cluster (or cluster/pool): one row per check, one cell per column, None when not run there."""
        runs = [run for _, run in self.columns()]
        return tuple((check_id, tuple(run.verdict(check_id) for run in runs)) for check_id in self.check_ids())


def unprobed_cause(cluster: UnprobedCluster) -> str:
    """Why a mode is not proven on every cluster when a cluster could not be probed."""
    return f"cluster {cluster.context} not probed ({cluster.reason}): nothing is proven there"


def _missing_notes(fleet: FleetRun, baseline: Mapping[str, Any] | None, which: str) -> tuple[str, ...]:
    """A note per probed cluster the baseline fleet report has no entry for: it is compared with nothing."""
    if baseline is None:
        return ()
    return tuple(
        f"cluster {cluster.context} is not in the {which}: nothing to compare it with"
        for cluster in fleet.clusters
        if changes.fleet_entry(baseline, cluster.context) is None
    )


def _unprobed_losses(fleet: FleetRun, baseline: Mapping[str, Any] | None, which: str) -> tuple[str, ...]:
    """A cluster the baseline proved modes on and no probe reached now: those modes are lost there."""
    found = []
    for cluster in fleet.unprobed:
        entry = changes.fleet_entry(baseline, cluster.context)
        modes = entry.get("modes") if entry is not None else None
        usable = [str(m.get("id")) for m in modes if isinstance(m, Mapping) and m.get("usable")] if modes else []
        if usable:
            found.append(
                f"{cluster.context}: cluster not probed in this run ({cluster.reason}); usable in the {which}: "
                f"{', '.join(usable)}"
            )
    return tuple(found)


def build_fleet_report(
    fleet: FleetRun, baseline: Mapping[str, Any] | None = None, *, pinned: Mapping[str, Any] | None = None
) -> FleetReport:
    """Each cluster's own report (against its entry of the baseline fleet reports), then what holds on all of them.

    baseline and pinned are fleet reports (reports.changes.load_fleet_baseline): a cluster is compared with the entry
    of its context, and with nothing (a note says so) when the baseline has no such entry.
    """
    clusters = tuple(
        ClusterReport(
            cluster.context,
            build_report(
                cluster.run,
                changes.fleet_entry(baseline, cluster.context),
                pinned=changes.fleet_entry(pinned, cluster.context),
            ),
        )
        for cluster in fleet.clusters
    )
    causes = tuple(unprobed_cause(cluster) for cluster in fleet.unprobed)
    if not clusters:
        causes = (NO_CLUSTER_CAUSE, *causes)
    assessments = levels.block_unprobed(levels.assess(clusters, levels.CLUSTER), causes)
    recommendation = levels.recommend_every(clusters, assessments, levels.CLUSTER)
    notes = (*_missing_notes(fleet, baseline, "baseline"), *_missing_notes(fleet, pinned, "pinned baseline"))
    losses = (*_unprobed_losses(fleet, baseline, "baseline"), *_unprobed_losses(fleet, pinned, "pinned baseline"))
    unprobed = tuple(cluster.context for cluster in fleet.unprobed)
    required = fleet.required_mode
    document = json_report.build_fleet_json(
        fleet,
        assessments,
        recommendation,
        clusters=[(cluster.context, cluster.report.json) for cluster in clusters],
        unusable_clusters=() if required is None else levels.unusable(required, clusters, unprobed),
        notes=notes,
    )
    return FleetReport(
        fleet=fleet,
        clusters=clusters,
        assessments=assessments,
        recommendation=recommendation,
        json=document,
        notes=notes,
        unprobed_losses=tuple(dict.fromkeys(losses)),
    )
