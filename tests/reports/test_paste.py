"""The config to paste on its own (--show-config, --config-dir, the terminal report's end): only what was proven."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import reports
from probes.model import Mode, RunResult, Status, Verdict
from reports import paste, snippets
from tests.reports.conftest import permissive, two_pools

MakeVerdict = Callable[..., Verdict]


def with_host_socket(make_verdict: MakeVerdict) -> RunResult:
    """Permissive, and the node's Docker socket works too: host-socket is usable, never recommended over dind."""
    run = permissive()
    verdicts = (*(v for v in run.verdicts if v.id != "host-socket"), make_verdict("host-socket"))
    return replace(run, verdicts=verdicts)


def test_recommended_is_the_pod_spec_each_recommended_mode_ran_as_one_stream() -> None:
    run = permissive()
    report = reports.build_report(run)
    shown = paste.show(report, paste.RECOMMENDED)
    documents = list(yaml.safe_load_all(shown.yaml))
    assert [doc["metadata"]["name"] for doc in documents] == ["dind-build", "buildkit-rootless-build"]
    for document, mode in zip(documents, (Mode.DIND, Mode.BUILDKIT_ROOTLESS), strict=True):
        tested = snippets.pick_tested(mode, run.tested_specs(mode))
        assert tested is not None
        assert document["spec"] == yaml.safe_load(yaml.safe_dump(snippets._plain(tested.spec)))
    assert shown.yaml == "---\n".join(report.recommendation.snippets[m] for m in ("dind", "buildkit-rootless"))
    assert shown.note == ""


def test_a_usable_mode_that_is_not_recommended_is_shown_as_it_ran(make_verdict: MakeVerdict) -> None:
    run = with_host_socket(make_verdict)
    report = reports.build_report(run)
    assert "host-socket" not in report.recommendation.snippets
    (document,) = yaml.safe_load_all(paste.show(report, "host-socket").yaml)
    tested = snippets.pick_tested(Mode.HOST_SOCKET, run.tested_specs(Mode.HOST_SOCKET))
    assert tested is not None
    assert document["spec"]["volumes"] == yaml.safe_load(yaml.safe_dump(snippets._plain(tested.spec["volumes"])))
    assert "host-socket.yaml" in paste.config_files(report)


def test_a_mode_that_is_not_usable_has_no_config_and_says_why() -> None:
    report = reports.build_report(permissive())
    shown = paste.show(report, "sysbox")
    assert shown.yaml == ""
    assert shown.note == "sysbox is not usable (blocked by sysbox): there is no config to show"
    assert "sysbox.yaml" not in paste.config_files(report)


def test_a_usable_mode_without_a_spec_every_check_proved_has_none(make_verdict: MakeVerdict) -> None:
    """docker-run did not prove the pod socket-sharing did: the integrity rule holds here too (no spec at all)."""
    run = permissive()
    verdicts = tuple(
        replace(v, facts=make_verdict("docker-run", Status.FAIL).facts) if v.id == "docker-run" else v
        for v in run.verdicts
    )
    report = reports.build_report(replace(run, verdicts=verdicts))
    assert report.is_usable(Mode.DIND)
    assert paste.mode_config(report, Mode.DIND) is None
    assert "dind.yaml" not in paste.config_files(report)


def test_config_dir_writes_one_file_per_usable_mode_and_the_snippets(tmp_path: Path, make_verdict: MakeVerdict) -> None:
    report = reports.build_report(with_host_socket(make_verdict))
    (tmp_path / "sysbox.yaml").write_text("an earlier run's\n")
    (tmp_path / "mine.yaml").write_text("the user's own\n")
    written, removed = paste.write_config_dir(report, tmp_path)
    assert set(written) == {"skypilot.yaml", "dind.yaml", "buildkit-rootless.yaml", "host-socket.yaml"}
    assert removed == ("sysbox.yaml",)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*written, "mine.yaml"])
    assert (tmp_path / "dind.yaml").read_text() == report.recommendation.snippets["dind"]
    assert (tmp_path / "skypilot.yaml").read_text() == report.recommendation.snippets["skypilot"]


def test_a_pool_report_shows_the_spec_proven_on_a_pool_and_says_which() -> None:
    report = reports.build_report(two_pools())
    (document,) = yaml.safe_load_all(paste.show(report, paste.RECOMMENDED).yaml)
    assert document["spec"]["nodeSelector"] == {"eks.amazonaws.com/nodegroup": "default"}
    assert "# Proven on pool default" in paste.show(report, "buildkit-rootless").yaml


def test_the_terminal_report_ends_with_the_config_then_the_proved_nothing_line() -> None:
    report = reports.build_report(permissive())
    lines = reports.render_terminal(report)
    shown = paste.show(report, paste.RECOMMENDED).yaml.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("config to paste (")))
    assert lines[head].startswith("config to paste (dind, buildkit-rootless; the pod spec each ran;")
    assert lines[head + 1 : -1] == shown
    assert lines[-1].startswith("proved nothing: ")


def test_config_too_long_for_the_terminal_is_one_line_saying_where(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paste, "FITS_LINES", 20)
    lines = reports.render_terminal(reports.build_report(permissive()))
    assert lines[-2].startswith("config to paste: 1")
    assert "`--show-config recommended` prints it, `--config-dir DIR` writes it" in lines[-2]
    assert not any(line.startswith("apiVersion") for line in lines)


def test_config_put_elsewhere_by_the_run_is_one_line() -> None:
    lines = reports.render_terminal(reports.build_report(permissive()), "written to out (dind.yaml)")
    assert lines[-2] == "config to paste: written to out (dind.yaml)"


def test_no_recommended_mode_no_config_lines(make_verdict: MakeVerdict, make_run: Callable[..., RunResult]) -> None:
    lines = reports.render_terminal(reports.build_report(make_run(make_verdict("lsm"))))
    assert not any(line.startswith("config to paste") for line in lines)
