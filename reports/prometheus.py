"""Prometheus text exposition of a report (--report-prom): for a node-exporter textfile collector or a pushgateway.

Every check gets one series per status (1 for its status, 0 for the others), so an alert can say
`dindcheck_check_status{status="fail"} == 1` and a dashboard can graph any status over time. Every series carries
`cluster` and `pool`, so runs against several clusters or node pools can share one collector directory or gateway
without two files claiming the same series.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

STATUSES = ("pass", "fail", "inconclusive", "skipped")


def escape_label_value(value: object) -> str:
    """The exposition format's label escaping: backslash, double quote and line feed."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{key}="{escape_label_value(value)}"' for key, value in labels.items()) + "}"


def _number(value: object) -> str:
    """A sample value: repr keeps every digit (a %g timestamp would lose seconds); junk becomes NaN, not a crash."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "NaN"
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def _timestamp(generated_at: object) -> float | None:
    """generated_at (RFC 3339) as Unix seconds; None when it is missing or unparsable (the series is left out)."""
    try:
        moment = dt.datetime.fromisoformat(str(generated_at))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _pools(report: Mapping[str, Any], pool: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(pool name, the part of the report with its checks and modes); one set named `pool` without a pools block."""
    pools = report.get("pools")
    if isinstance(pools, list) and pools:
        return [(str(part.get("pool", "")), part) for part in pools if isinstance(part, Mapping)]
    return [(pool, report)]


def _family(name: str, help_text: str, samples: list[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples]


def render_prometheus(report: Mapping[str, Any], *, pool: str = "") -> str:
    """The report as Prometheus text format (HELP and TYPE lines, gauges), ending with a newline.

    pool names the run's node pool when the report has no `pools` block (one run per pool, e.g. with a node
    selector); a `pools` block names its own pools and pool is then used only for the run-level series.
    """
    cluster = str((report.get("cluster") or {}).get("server", ""))
    status_lines: list[str] = []
    duration_lines: list[str] = []
    mode_lines: list[str] = []
    for name, part in _pools(report, pool):
        for check in part.get("checks") or []:
            if not isinstance(check, Mapping) or "id" not in check:
                continue
            for status in STATUSES:
                labels = _labels(cluster=cluster, pool=name, check=check["id"], status=status)
                status_lines.append(f"dindcheck_check_status{labels} {int(check.get('status') == status)}")
            labels = _labels(cluster=cluster, pool=name, check=check["id"])
            duration_lines.append(f"dindcheck_check_duration_seconds{labels} {_number(check.get('duration_s', 0))}")
        for mode in part.get("modes") or []:
            if not isinstance(mode, Mapping) or "id" not in mode:
                continue
            labels = _labels(cluster=cluster, pool=name, mode=mode["id"])
            mode_lines.append(f"dindcheck_mode_usable{labels} {int(bool(mode.get('usable')))}")
    run = _labels(cluster=cluster, pool=pool)
    timing = report.get("timing") or {}
    started = _timestamp(report.get("generated_at"))
    lines = [
        *_family("dindcheck_check_status", "1 for the status a check ended with, 0 for the other three.", status_lines),
        *_family("dindcheck_check_duration_seconds", "How long a check took.", duration_lines),
        *_family("dindcheck_mode_usable", "1 when the mode was proven usable on the cluster (and pool).", mode_lines),
        *_family(
            "dindcheck_run_timestamp_seconds",
            "When the run started (the report's generated_at), in Unix seconds: alert when it gets old.",
            [] if started is None else [f"dindcheck_run_timestamp_seconds{run} {_number(started)}"],
        ),
        *_family(
            "dindcheck_run_duration_seconds",
            "Wall time of the run.",
            [f"dindcheck_run_duration_seconds{run} {_number(timing.get('total_s', 0))}"],
        ),
    ]
    return "\n".join(lines) + "\n"
