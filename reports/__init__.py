"""Reports: terminal table, JSON v1 and Markdown, and the recommendation behind them.

Pure logic over probes.model: no Kubernetes, no docker. The facade below is all the plugin needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reports import json_report, markdown, prometheus, terminal
from reports.changes import load_baseline, load_fleet_baseline
from reports.fleet import ClusterReport, FleetReport, build_fleet_report
from reports.recommend import ModeAssessment, Recommendation
from reports.report import PoolReport, Report, build_report

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ClusterReport",
    "FleetReport",
    "ModeAssessment",
    "PoolReport",
    "Recommendation",
    "Report",
    "build_fleet_report",
    "build_report",
    "load_baseline",
    "load_fleet_baseline",
    "render_markdown",
    "render_terminal",
    "write_json",
    "write_markdown",
    "write_prometheus",
]


def render_terminal(report: Report | FleetReport, config_elsewhere: str = "") -> list[str]:
    """Lines for the end of the pytest run, without ANSI colour (config_elsewhere: where the config was put)."""
    if isinstance(report, FleetReport):
        return terminal.render_fleet(report, config_elsewhere)
    return terminal.render(report, config_elsewhere)


def render_markdown(report: Report | FleetReport) -> str:
    """The Markdown document for a PR comment or $GITHUB_STEP_SUMMARY."""
    if isinstance(report, FleetReport):
        return markdown.render_fleet(report)
    return markdown.render(report)


def write_json(report: Report | FleetReport, path: Path) -> None:
    """Write the "dindcheck/report/v1" JSON (--report-json)."""
    json_report.write(report.json, path)


def write_prometheus(report: Report | FleetReport, path: Path, *, pool: str = "") -> None:
    """Write Prometheus text format (--report-prom), for a node-exporter textfile collector or a pushgateway.

    A fleet report's series each carry the cluster's `context` label.

    Written to a temporary file and renamed: a textfile collector reading the directory never sees half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(prometheus.render_prometheus(report.json, pool=pool), encoding="utf-8")
    partial.replace(path)


def write_markdown(report: Report | FleetReport, path: Path) -> None:
    """Write the Markdown report (--report-md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(report), encoding="utf-8")
