"""The finished report: one value every renderer reads, so terminal, JSON and Markdown never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from probes.model import Mode, RunResult, Status, Verdict
from reports import changes, json_report, recommend


@dataclass(frozen=True)
class Report:
    """A run's verdicts, the per-mode assessment, the recommendation, and the v1 JSON built from them."""

    run: RunResult
    assessments: tuple[recommend.ModeAssessment, ...]
    recommendation: recommend.Recommendation
    json: dict[str, Any]
    changes: changes.Changes | None = None
    """What changed since the --baseline report (None without a baseline)."""

    def is_usable(self, mode: Mode) -> bool:
        """The --require-mode gate: is this mode usable on the cluster? ('none' asks for nothing: always true)."""
        return json_report.required_mode_usable(mode, self.assessments)

    def check_rows(self) -> tuple[tuple[str, Verdict | None], ...]:
        """Every known check in catalog order, None for those not run (so a deselected check shows), then extras."""
        known = tuple((check_id, self.run.verdict(check_id)) for check_id in self.run.capabilities)
        extras = tuple((v.id, v) for v in self.run.verdicts if v.id not in self.run.capabilities)
        return known + extras

    def proved_nothing(self) -> tuple[Verdict, ...]:
        """Checks that ran and proved nothing either way (inconclusive), then those that were skipped."""
        order = (Status.INCONCLUSIVE, Status.SKIPPED)
        return tuple(v for status in order for v in self.run.verdicts if v.status is status)


def build_report(run: RunResult, baseline: Mapping[str, Any] | None = None) -> Report:
    """Assess every mode, recommend, build the JSON once, and compare it with the baseline report when given."""
    assessments = recommend.assess(run)
    recommendation = recommend.recommend(run, assessments)
    document = json_report.build_report_json(run, assessments, recommendation)
    found = None
    if baseline is not None:
        found = changes.compute_changes(baseline, document)
        document["changes"] = found.to_json()
    return Report(run=run, assessments=assessments, recommendation=recommendation, json=document, changes=found)
