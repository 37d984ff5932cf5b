"""Prometheus text exposition of a report (--report-prom): for a textfile collector or a pushgateway.

Every check gets one series per status (1 for its status, 0 for the others), so an alert can say
`dindcheck_check_status{status="fail"} == 1` and a dashboard can graph any status over time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATUSES = ("pass", "fail", "inconclusive", "skipped")


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def _pools(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(pool name, the part of the report with its checks and modes); one unnamed pool without a pools block."""
    pools = report.get("pools")
    if isinstance(pools, list) and pools:
        return [(str(pool.get("pool", "")), pool) for pool in pools if isinstance(pool, Mapping)]
    return [("", report)]


def render_prometheus(report: Mapping[str, Any]) -> str:
    """The report as Prometheus text format (HELP and TYPE lines, gauges), ending with a newline."""
    cluster = str((report.get("cluster") or {}).get("server", ""))
    status_lines: list[str] = []
    duration_lines: list[str] = []
    mode_lines: list[str] = []
    for pool, part in _pools(report):
        for check in part.get("checks") or []:
            for status in STATUSES:
                labels = _labels(cluster=cluster, pool=pool, check=check["id"], status=status)
                status_lines.append(f"dindcheck_check_status{labels} {int(check['status'] == status)}")
            labels = _labels(cluster=cluster, pool=pool, check=check["id"])
            duration_lines.append(f"dindcheck_check_duration_seconds{labels} {float(check.get('duration_s', 0)):g}")
        for mode in part.get("modes") or []:
            labels = _labels(cluster=cluster, pool=pool, mode=mode["id"])
            mode_lines.append(f"dindcheck_mode_usable{labels} {int(bool(mode.get('usable')))}")
    timing = report.get("timing") or {}
    lines = [
        "# HELP dindcheck_check_status 1 for the status a check ended with, 0 for the others.",
        "# TYPE dindcheck_check_status gauge",
        *status_lines,
        "# HELP dindcheck_check_duration_seconds How long a check took.",
        "# TYPE dindcheck_check_duration_seconds gauge",
        *duration_lines,
        "# HELP dindcheck_mode_usable 1 when the mode was proven usable on the cluster (and pool).",
        "# TYPE dindcheck_mode_usable gauge",
        *mode_lines,
        "# HELP dindcheck_run_duration_seconds Wall time of the run.",
        "# TYPE dindcheck_run_duration_seconds gauge",
        f"dindcheck_run_duration_seconds{_labels(cluster=cluster)} {float(timing.get('total_s', 0)):g}",
    ]
    return "\n".join(lines) + "\n"
