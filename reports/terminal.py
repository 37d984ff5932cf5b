"""The summary printed at the end of a pytest run: checks, modes, and what to use.

Plain text only (no ANSI): the plugin may colour the status words; CI logs and pipes stay readable either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabulate import tabulate

from probes.model import Mode, Status
from reports import changes

if TYPE_CHECKING:
    from reports.report import Report

SUMMARY_WIDTH = 72
WARNING_WIDTH = 60
TABLE_FORMAT = "simple"
NOT_RUN = "not run"


def shorten(text: str, width: int) -> str:
    """One line of at most width characters: long probe output must not wrap a terminal table."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3].rstrip() + "..."


def _checks_table(report: Report) -> list[str]:
    rows = [
        (check_id, NOT_RUN, "", "")
        if verdict is None
        else (check_id, verdict.status.value, f"{verdict.duration_s:.1f}s", shorten(verdict.summary, SUMMARY_WIDTH))
        for check_id, verdict in report.check_rows()
    ]
    return tabulate(rows, headers=("check", "status", "duration", "summary"), tablefmt=TABLE_FORMAT).splitlines()


def _warnings_cell(warnings: tuple[str, ...]) -> str:
    if not warnings:
        return ""
    more = f" (+{len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return shorten(warnings[0], WARNING_WIDTH - len(more)) + more


def _modes_table(report: Report) -> list[str]:
    rows = [
        (
            assessment.mode.value,
            "yes" if assessment.usable else "no",
            ", ".join(assessment.blocked_by),
            _warnings_cell(assessment.warnings),
        )
        for assessment in report.assessments
    ]
    return tabulate(rows, headers=("mode", "usable", "blocked by", "warnings"), tablefmt=TABLE_FORMAT).splitlines()


def render(report: Report) -> list[str]:
    """The lines to print; the caller owns the terminal (section headers, colours, writing)."""
    cluster = report.run.cluster
    recommendation = report.recommendation
    lines = [f"dindcheck: {cluster.server or 'unknown server'} (Kubernetes {cluster.version or 'unknown'})", ""]
    if report.changes is not None:
        lines += [*changes.changes_terminal_lines(report.changes), ""]
    lines += _checks_table(report)
    lines += ["", *_modes_table(report), ""]
    lines.append(f"full docker (docker run): {recommendation.full_docker.value}")
    lines.append(f"build only (build + push): {recommendation.build_only.value}")
    required = report.run.required_mode
    if required is not None:
        met = report.is_usable(required)
        lines.append(f"required mode {required.value}: {'usable' if met else 'NOT usable'}")
    lines.append("why:")
    lines += [f"  - {reason}" for reason in recommendation.reasons]
    if recommendation.full_docker is not Mode.NONE or recommendation.build_only is not Mode.NONE:
        lines.append("config to paste: see the Markdown report (--report-md) or recommendation.snippets in the JSON")
    lines.append(proved_nothing_line(report))
    return lines


def proved_nothing_line(report: Report) -> str:
    """The last line, whatever the flags: how many checks proved nothing, and why (a green run can hide them)."""
    nothing = report.proved_nothing()  # inconclusive first, then skipped
    ran = len(report.run.verdicts)
    if not nothing:
        return f"proved nothing: 0 of {ran} checks (every check that ran reached a verdict)"
    inconclusive = sum(v.status is Status.INCONCLUSIVE for v in nothing)
    counts = f"{inconclusive} inconclusive, {len(nothing) - inconclusive} skipped"
    parts = "; ".join(f"{v.id} {v.status.value}: {shorten(v.summary, 90)}" for v in nothing)
    return f"proved nothing: {len(nothing)} of {ran} checks ({counts}): {parts}"
