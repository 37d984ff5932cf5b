"""Reports: terminal table, JSON v1 and Markdown, and the recommendation behind them.

Pure logic over probes.model: no Kubernetes, no docker. The facade below is all the plugin needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reports import json_report, markdown, prometheus, terminal
from reports.changes import load_baseline
from reports.recommend import ModeAssessment, Recommendation
from reports.report import PoolReport, Report, build_report

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ModeAssessment",
    "PoolReport",
    "Recommendation",
    "Report",
    "build_report",
    "load_baseline",
    "render_markdown",
    "render_terminal",
    "write_json",
    "write_markdown",
    "write_prometheus",
]


def render_terminal(report: Report, config_elsewhere: str = "") -> list[str]:
    """Lines for the end of the pytest run, without ANSI colour (config_elsewhere: where the config was put)."""
    return terminal.render(report, config_elsewhere)


def render_markdown(report: Report) -> str:
    """The Markdown document for a PR comment or $GITHUB_STEP_SUMMARY."""
    return markdown.render(report)


def write_json(report: Report, path: Path) -> None:
    """Write the "dindcheck/report/v1" JSON (--report-json)."""
    json_report.write(report.json, path)


def write_prometheus(report: Report, path: Path, *, pool: str = "") -> None:
    """Write Prometheus text format (--report-prom), for a node-exporter textfile collector or a pushgateway.

    Written to a temporary file and renamed: a textfile collector reading the directory never sees half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(prometheus.render_prometheus(report.json, pool=pool), encoding="utf-8")
    partial.replace(path)


def write_markdown(report: Report, path: Path) -> None:
    """Write the Markdown report (--report-md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(report), encoding="utf-8")
