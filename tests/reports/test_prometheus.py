"""--report-prom: valid Prometheus text, one series per check status, mode usability, escaped labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from reports import build_report
from reports.prometheus import render_prometheus
from tests.reports.conftest import PROFILES


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_check_has_every_status_series_and_modes_are_gauges() -> None:
    report = build_report(PROFILES["deny-privileged"]()).json
    parsed = samples(render_prometheus(report))
    labels = (("check", "privileged-admission"), ("cluster", "https://127.0.0.1:6443"), ("pool", ""))
    assert parsed[("dindcheck_check_status", (*labels[:2], labels[2], ("status", "fail")))] == 1
    assert parsed[("dindcheck_check_status", (*labels[:2], labels[2], ("status", "pass")))] == 0
    mode = (("cluster", "https://127.0.0.1:6443"), ("mode", "dind"), ("pool", ""))
    assert parsed[("dindcheck_mode_usable", mode)] == 0
    checks = len(report["checks"])
    assert sum(1 for name, _ in parsed if name == "dindcheck_check_status") == 4 * checks


def test_label_values_are_escaped() -> None:
    report = build_report(PROFILES["permissive"]()).json
    report["cluster"]["server"] = 'https://a"b\\c\nd'
    parsed = samples(render_prometheus(report))
    assert any(dict(labels).get("cluster") == 'https://a"b\\c\nd' for _, labels in parsed)


def test_pools_each_get_their_series() -> None:
    report = build_report(PROFILES["permissive"]()).json
    report["pools"] = [
        {"pool": "default", "checks": report["checks"], "modes": report["modes"]},
        {"pool": "ci", "checks": report["checks"], "modes": report["modes"]},
    ]
    pools = {dict(labels).get("pool") for _, labels in samples(render_prometheus(report))}
    assert {"default", "ci"} <= pools
