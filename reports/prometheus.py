"""Prometheus text exposition of a report (--report-prom): for a node-exporter textfile collector or a pushgateway.

Every check gets one series per status (1 for its status, 0 for the others), so an alert can say
`dindcheck_check_status{status="fail"} == 1` and a dashboard can graph any status over time. Every series carries
`cluster` and `pool`, so runs against several clusters or node pools can share one collector directory or gateway
without two files claiming the same series; a fleet run's series also carry `context` (the kubeconfig context).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class _Series:
    """The samples of each metric family, gathered cluster by cluster, so each family has one HELP and TYPE."""

    status: list[str] = field(default_factory=list)
    duration: list[str] = field(default_factory=list)
    mode: list[str] = field(default_factory=list)
    timestamp: list[str] = field(default_factory=list)
    run_duration: list[str] = field(default_factory=list)


def _add(series: _Series, report: Mapping[str, Any], pool: str, scope: Mapping[str, str]) -> None:
    """One cluster's report's series; scope is the fleet's context label (empty for a single-cluster run)."""
    cluster = str((report.get("cluster") or {}).get("server", ""))
    for name, part in _pools(report, pool):
        for check in part.get("checks") or []:
            if not isinstance(check, Mapping) or "id" not in check:
                continue
            for status in STATUSES:
                labels = _labels(cluster=cluster, **scope, pool=name, check=check["id"], status=status)
                series.status.append(f"dindcheck_check_status{labels} {int(check.get('status') == status)}")
            labels = _labels(cluster=cluster, **scope, pool=name, check=check["id"])
            series.duration.append(f"dindcheck_check_duration_seconds{labels} {_number(check.get('duration_s', 0))}")
        for mode in part.get("modes") or []:
            if not isinstance(mode, Mapping) or "id" not in mode:
                continue
            labels = _labels(cluster=cluster, **scope, pool=name, mode=mode["id"])
            series.mode.append(f"dindcheck_mode_usable{labels} {int(bool(mode.get('usable')))}")
    run = _labels(cluster=cluster, **scope, pool=pool)
    timing = report.get("timing") or {}
    started = _timestamp(report.get("generated_at"))
    if started is not None:
        series.timestamp.append(f"dindcheck_run_timestamp_seconds{run} {_number(started)}")
    series.run_duration.append(f"dindcheck_run_duration_seconds{run} {_number(timing.get('total_s', 0))}")


def _add_unprobed(series: _Series, report: Mapping[str, Any], pool: str) -> None:
    """A cluster of a fleet no probe reached: every mode 0 there (nothing is proven), so an alert sees it."""
    modes = [mode["id"] for mode in report.get("modes") or [] if isinstance(mode, Mapping) and "id" in mode]
    for unprobed in report.get("unprobed_clusters") or []:
        if not isinstance(unprobed, Mapping):
            continue
        scope = {"cluster": str(unprobed.get("server", "")), "context": str(unprobed.get("context", ""))}
        series.mode.extend(f"dindcheck_mode_usable{_labels(**scope, pool=pool, mode=mode)} 0" for mode in modes)


def render_prometheus(report: Mapping[str, Any], *, pool: str = "") -> str:
    """The report as Prometheus text format (HELP and TYPE lines, gauges), ending with a newline.

    pool names the run's node pool when the report has no `pools` block (one run per pool, e.g. with a node
    selector); a `pools` block names its own pools and pool is then used only for the run-level series.
    A fleet report (a `clusters` block) gives each cluster's series, each with its `context` label; its unprobed
    clusters have every mode at 0.
    """
    series = _Series()
    clusters = report.get("clusters")
    if isinstance(clusters, list):
        for entry in clusters:
            if isinstance(entry, Mapping):
                _add(series, entry, pool, {"context": str(entry.get("context", ""))})
        _add_unprobed(series, report, pool)
    else:
        _add(series, report, pool, {})
    lines = [
        *_family(
            "dindcheck_check_status", "1 for the status a check ended with, 0 for the other three.", series.status
        ),
        *_family("dindcheck_check_duration_seconds", "How long a check took.", series.duration),
        *_family("dindcheck_mode_usable", "1 when the mode was proven usable on the cluster (and pool).", series.mode),
        *_family(
            "dindcheck_run_timestamp_seconds",
            "When the run started (the report's generated_at), in Unix seconds: alert when it gets old.",
            series.timestamp,
        ),
        *_family("dindcheck_run_duration_seconds", "Wall time of the run.", series.run_duration),
    ]
    return "\n".join(lines) + "\n"
