"""The finished report: one value every renderer reads, so terminal, JSON and Markdown never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.model import CAPABILITIES, Mode, RunResult, Verdict
from reports import json_report, recommend

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class Report:
    """A run's verdicts, the per-mode assessment, the recommendation, and the v1 JSON built from them."""

    run: RunResult
    assessments: tuple[recommend.ModeAssessment, ...]
    recommendation: recommend.Recommendation
    json: dict[str, Any]

    def is_usable(self, mode: Mode) -> bool:
        """The --require-mode gate: is this mode usable on the cluster? ('none' asks for nothing: always true)."""
        return json_report.required_mode_usable(mode, self.assessments)

    def check_rows(self) -> tuple[tuple[str, Verdict | None], ...]:
        """Every known check in contract order, None for those not run (so a deselected check shows), then extras."""
        known = tuple((check_id, self.run.verdict(check_id)) for check_id in CAPABILITIES)
        extras = tuple((verdict.id, verdict) for verdict in self.run.verdicts if verdict.id not in CAPABILITIES)
        return known + extras


def build_report(run: RunResult, images: Mapping[str, str] | None = None) -> Report:
    """Assess every mode, recommend, and build the JSON once; images are those the run used (for the snippets)."""
    assessments = recommend.assess(run)
    recommendation = recommend.recommend(run, assessments, images)
    return Report(
        run=run,
        assessments=assessments,
        recommendation=recommendation,
        json=json_report.build_report_json(run, assessments, recommendation),
    )
