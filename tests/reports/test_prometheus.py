"""--report-prom: valid Prometheus text, one series per check status, mode usability, escaped labels."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import reports
from reports import build_report
from reports.prometheus import STATUSES, render_prometheus
from tests.reports.conftest import PROFILES, two_pools

CLUSTER = "https://127.0.0.1:6443"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


def built(profile: str) -> dict[str, Any]:
    return build_report(PROFILES[profile]()).json


def test_every_family_is_a_documented_gauge() -> None:
    families = {
        family.name: family for family in text_string_to_metric_families(render_prometheus(built("permissive")))
    }
    assert set(families) == {
        "dindcheck_check_status",
        "dindcheck_check_duration_seconds",
        "dindcheck_mode_usable",
        "dindcheck_run_timestamp_seconds",
        "dindcheck_run_duration_seconds",
    }
    assert all(family.type == "gauge" and family.documentation for family in families.values())


def test_every_check_has_every_status_series_and_modes_are_gauges() -> None:
    report = built("deny-privileged")
    parsed = samples(render_prometheus(report))
    for check in report["checks"]:
        values = {
            status: parsed[key("dindcheck_check_status", cluster=CLUSTER, pool="", check=check["id"], status=status)]
            for status in STATUSES
        }
        assert values == {status: float(status == check["status"]) for status in STATUSES}
        assert parsed[key("dindcheck_check_duration_seconds", cluster=CLUSTER, pool="", check=check["id"])] == 1.5
    assert parsed[key("dindcheck_check_status", cluster=CLUSTER, pool="", check="privileged-admission", status="fail")]
    usable = {mode["id"]: float(mode["usable"]) for mode in report["modes"]}
    assert usable == {
        "buildkit-rootless": 1.0,
        "kaniko": 0.0,
        "sysbox": 0.0,
        "dind": 0.0,
        "host-socket": 0.0,
        "buildpacks": 0.0,
    }
    for mode, value in usable.items():
        assert parsed[key("dindcheck_mode_usable", cluster=CLUSTER, pool="", mode=mode)] == value
    assert sum(1 for name, _ in parsed if name == "dindcheck_check_status") == 4 * len(report["checks"])


def test_run_timestamp_and_duration() -> None:
    parsed = samples(render_prometheus(built("permissive")))
    started = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC).timestamp()
    assert parsed[key("dindcheck_run_timestamp_seconds", cluster=CLUSTER, pool="")] == started
    assert parsed[key("dindcheck_run_duration_seconds", cluster=CLUSTER, pool="")] == 84.25


def test_timestamp_keeps_every_digit_and_an_offset() -> None:
    report = built("permissive")
    report["generated_at"] = "2026-11-25T08:24:59+01:00"
    text = render_prometheus(report)
    assert 'dindcheck_run_timestamp_seconds{cluster="https://127.0.0.1:6443",pool=""} 1795591499.0\n' in text


def test_an_unparsable_timestamp_leaves_only_that_series_out() -> None:
    report = built("permissive")
    report["generated_at"] = "yesterday"
    parsed = samples(render_prometheus(report))
    assert not any(name == "dindcheck_run_timestamp_seconds" for name, _ in parsed)
    assert key("dindcheck_run_duration_seconds", cluster=CLUSTER, pool="") in parsed


def test_label_values_are_escaped() -> None:
    report = built("permissive")
    report["cluster"]["server"] = 'https://a"b\\c\nd'
    report["checks"][0]["id"] = 'odd "check"\\'
    text = render_prometheus(report)
    assert 'cluster="https://a\\"b\\\\c\\nd"' in text
    assert len(text.splitlines()) == len(render_prometheus(built("permissive")).splitlines())
    parsed = samples(text)
    assert any(dict(labels).get("cluster") == 'https://a"b\\c\nd' for _, labels in parsed)
    assert any(dict(labels).get("check") == 'odd "check"\\' for _, labels in parsed)


def test_the_pool_option_labels_a_single_run() -> None:
    parsed = samples(render_prometheus(built("permissive"), pool="gpu-a100"))
    assert {dict(labels)["pool"] for _, labels in parsed} == {"gpu-a100"}


def test_pools_each_get_their_series() -> None:
    report = built("permissive")
    denied = built("deny-privileged")
    report["pools"] = [
        {"pool": "default", "checks": report["checks"], "modes": report["modes"]},
        {"pool": "locked", "checks": denied["checks"], "modes": denied["modes"]},
    ]
    parsed = samples(render_prometheus(report))
    assert parsed[key("dindcheck_mode_usable", cluster=CLUSTER, pool="default", mode="dind")] == 1
    assert parsed[key("dindcheck_mode_usable", cluster=CLUSTER, pool="locked", mode="dind")] == 0
    assert not any(dict(labels).get("pool") == "" for name, labels in parsed if not name.startswith("dindcheck_run_"))
    assert key("dindcheck_run_duration_seconds", cluster=CLUSTER, pool="") in parsed


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_parses(profile: str) -> None:
    assert samples(render_prometheus(built(profile)))


def test_write_prometheus_leaves_no_partial_file(tmp_path: Path) -> None:
    report = build_report(PROFILES["permissive"]())
    path = tmp_path / "textfile" / "dindcheck.prom"
    reports.write_prometheus(report, path, pool="ci")
    assert path.read_text(encoding="utf-8") == render_prometheus(report.json, pool="ci")
    assert [p.name for p in path.parent.iterdir()] == ["dindcheck.prom"]


def test_a_multi_pool_report_gives_each_pool_its_series() -> None:
    report = build_report(two_pools()).json
    parsed = samples(render_prometheus(report))
    for pool, dind, overlay in (("default", 1, "pass"), ("ci", 0, "fail")):
        assert parsed[key("dindcheck_mode_usable", cluster=CLUSTER, pool=pool, mode="dind")] == dind
        assert parsed[key("dindcheck_mode_usable", cluster=CLUSTER, pool=pool, mode="buildkit-rootless")] == 1
        labels = {"cluster": CLUSTER, "pool": pool, "check": "overlay-cache"}
        assert parsed[key("dindcheck_check_status", **labels, status=overlay)] == 1
        assert parsed[key("dindcheck_check_duration_seconds", **labels)] == 1.5
    assert sum(1 for name, _ in parsed if name == "dindcheck_check_status") == 4 * 16
    assert not any(dict(labels).get("pool") == "" for name, labels in parsed if not name.startswith("dindcheck_run_"))
    assert parsed[key("dindcheck_run_duration_seconds", cluster=CLUSTER, pool="")] == 84.25
