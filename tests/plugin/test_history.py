"""The nightly Job's report history: the latest report plus the last N, oldest dropped first."""

from __future__ import annotations

import json

from dindcheck.history import LATEST, MAX_BYTES, history_key, rotated


def report(stamp: str, padding: int = 0) -> str:
    return json.dumps({"schema": "dindcheck/report/v1", "generated_at": stamp, "pad": "x" * padding})


def test_latest_and_named_entries() -> None:
    data = rotated({}, report("2026-01-01T03:17:00+00:00"), keep=3)
    assert json.loads(data[LATEST])["generated_at"] == "2026-01-01T03:17:00+00:00"
    assert list(data) == [LATEST, "report-2026-01-01T03-17-00-00-00.json"]


def test_keeps_only_the_last_n() -> None:
    data: dict[str, str] = {}
    for day in range(1, 6):
        data = rotated(data, report(f"2026-01-0{day}T03:17:00Z"), keep=3)
    kept = sorted(key for key in data if key != LATEST)
    assert kept == [history_key({"generated_at": f"2026-01-0{day}T03:17:00Z"}) for day in (3, 4, 5)]


def test_stays_under_the_configmap_size_limit() -> None:
    data: dict[str, str] = {}
    for day in range(1, 10):
        data = rotated(data, report(f"2026-01-0{day}T03:17:00Z", padding=200_000), keep=14)
    assert sum(len(value) for value in data.values()) < MAX_BYTES + 210_000
    assert history_key({"generated_at": "2026-01-09T03:17:00Z"}) in data
