"""The nightly Job's report history: the latest report plus the last N, oldest dropped first, and the pinned one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import V1ConfigMap
from kubernetes.client.rest import ApiException

from dindcheck import history
from dindcheck.history import LATEST, MAX_BYTES, PINNED, history_key, rotated, with_pin


def report(stamp: str, padding: int = 0) -> str:
    return json.dumps({"schema": "dindcheck/report/v1", "generated_at": stamp, "pad": "x" * padding})


def test_latest_and_named_entries() -> None:
    data = rotated({}, report("2026-01-01T03:17:00+00:00"), keep=3)
    assert json.loads(data[LATEST])["generated_at"] == "2026-01-01T03:17:00+00:00"
    assert list(data) == [LATEST, PINNED, "report-2026-01-01T03-17-00-00-00.json"]


def test_keeps_only_the_last_n() -> None:
    data: dict[str, str] = {}
    for day in range(1, 6):
        data = rotated(data, report(f"2026-01-0{day}T03:17:00Z"), keep=3)
    kept = sorted(key for key in data if key.startswith("report-"))
    assert kept == [history_key({"generated_at": f"2026-01-0{day}T03:17:00Z"}) for day in (3, 4, 5)]


def test_stays_under_the_configmap_size_limit() -> None:
    data: dict[str, str] = {}
    for day in range(1, 10):
        data = rotated(data, report(f"2026-01-0{day}T03:17:00Z", padding=200_000), keep=14)
    assert sum(len(value) for value in data.values()) < MAX_BYTES + 210_000
    assert history_key({"generated_at": "2026-01-09T03:17:00Z"}) in data


def test_the_first_report_stored_is_pinned_and_later_ones_never_move_the_pin() -> None:
    first = report("2026-01-01T03:17:00Z")
    data = rotated({}, first, keep=3)
    assert data[PINNED] == first
    for day in range(2, 6):
        data = rotated(data, report(f"2026-01-0{day}T03:17:00Z"), keep=3)
    assert data[PINNED] == first  # kept whatever rotates away, until pinned on purpose
    assert json.loads(data[LATEST])["generated_at"] == "2026-01-05T03:17:00Z"


def test_a_history_from_before_pins_existed_pins_its_latest_not_tonights() -> None:
    """An upgraded CronJob: last night's report is the known good one, not tonight's (which may have regressed)."""
    last_night = report("2026-01-01T03:17:00Z")
    data = rotated({LATEST: last_night, history_key(json.loads(last_night)): last_night}, report("2026-01-02"), keep=3)
    assert data[PINNED] == last_night


def test_pinning_replaces_only_the_pin() -> None:
    data = rotated({}, report("2026-01-01T03:17:00Z"), keep=3)
    data = rotated(data, report("2026-01-02T03:17:00Z"), keep=3)
    pinned = with_pin(data, data[LATEST])
    assert json.loads(pinned[PINNED])["generated_at"] == "2026-01-02T03:17:00Z"
    assert {key: value for key, value in pinned.items() if key != PINNED} == {
        key: value for key, value in data.items() if key != PINNED
    }


class FakeCore:
    """CoreV1Api's ConfigMap calls over one dict, or raising the error a broken API server gives."""

    def __init__(self, data: dict[str, str] | None, error: int = 0) -> None:
        self.data = data
        self.error = error

    def read_namespaced_config_map(self, name: str, namespace: str, **_: Any) -> Any:
        """The ConfigMap, a 404 when there is none, or the broken server's error."""
        if self.error:
            refused = ApiException(status=self.error, reason="Forbidden")
            refused.body = json.dumps({"message": f'configmaps "{name}" is forbidden: cannot get'})
            raise refused
        if self.data is None:
            raise ApiException(status=404, reason="Not Found")
        return V1ConfigMap(data=dict(self.data), metadata={"name": name, "namespace": namespace})

    def replace_namespaced_config_map(self, *args: Any, **_: Any) -> Any:
        """Keep the new data (the body is the last argument: name, namespace, body)."""
        self.data = dict(args[-1].data)
        return args[-1]


def history_main(monkeypatch: pytest.MonkeyPatch, core: FakeCore, *argv: str) -> int:
    monkeypatch.setattr(history, "connect", lambda *_: SimpleNamespace(core=core))
    return history.main([*argv, "--configmap", "dindcheck-reports", "--namespace", "dindcheck"])


def test_fetch_writes_both_baselines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = rotated(rotated({}, report("2026-01-01"), keep=3), report("2026-01-02"), keep=3)
    code = history_main(
        monkeypatch, FakeCore(data), "fetch", "--to", str(tmp_path / "l.json"), "--pinned-to", str(tmp_path / "p.json")
    )
    assert code == 0
    assert json.loads((tmp_path / "l.json").read_text())["generated_at"] == "2026-01-02"
    assert json.loads((tmp_path / "p.json").read_text())["generated_at"] == "2026-01-01"


def test_no_history_yet_is_the_first_night(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = history_main(monkeypatch, FakeCore(None), "fetch", "--to", str(tmp_path / "l.json"))
    assert code == 0
    assert not (tmp_path / "l.json").exists()
    assert "no earlier report" in capsys.readouterr().out


def test_a_fetch_the_api_refuses_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not 'no earlier report': a night run without its baseline would pass whatever was lost."""
    code = history_main(monkeypatch, FakeCore({}, error=403), "fetch", "--to", str(tmp_path / "l.json"))
    assert code == 1
    assert not (tmp_path / "l.json").exists()
    err = capsys.readouterr().err
    assert (
        "dindcheck history: could not fetch (configmap dindcheck/dindcheck-reports): the API answered 403 Forbidden: "
        'configmaps "dindcheck-reports" is forbidden: cannot get'
    ) in err


def test_pin_copies_the_latest_report_into_the_pin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    core = FakeCore(rotated(rotated({}, report("2026-01-01"), keep=3), report("2026-01-02"), keep=3))
    assert history_main(monkeypatch, core, "pin") == 0
    assert core.data is not None
    assert json.loads(core.data[PINNED])["generated_at"] == "2026-01-02"
    assert "pinned the report of 2026-01-02" in capsys.readouterr().out


def test_pin_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    core = FakeCore(rotated({}, report("2026-01-01"), keep=3))
    (tmp_path / "good.json").write_text(report("2025-12-24"))
    assert history_main(monkeypatch, core, "pin", "--from", str(tmp_path / "good.json")) == 0
    assert core.data is not None
    assert json.loads(core.data[PINNED])["generated_at"] == "2025-12-24"


def test_pin_without_history_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert history_main(monkeypatch, FakeCore(None), "pin") == 1
    assert "nothing to pin" in capsys.readouterr().err
