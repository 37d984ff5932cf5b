"""The end-of-run summary: every check and mode shows, nothing is coloured, long text never wraps a row."""

from __future__ import annotations

import re
from collections.abc import Callable

import reports
from probes.definitions import catalog
from probes.model import Mode, RunResult, Status, Verdict
from reports.terminal import SUMMARY_WIDTH, shorten
from tests.reports.conftest import as_selinux_type

MakeVerdict = Callable[..., Verdict]
MakeRun = Callable[..., RunResult]
ANSI = re.compile(r"\x1b\[")

CHECK_IDS = tuple(definition.id for definition in catalog())


def test_lines_name_every_check_and_mode(profile_run: RunResult) -> None:
    text = "\n".join(reports.render_terminal(reports.build_report(profile_run)))
    for check_id in CHECK_IDS:
        assert check_id in text
    for mode in ("dind", "buildkit-rootless", "sysbox", "host-socket"):
        assert mode in text


def test_checks_not_run_are_listed_as_such(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    lines = reports.render_terminal(reports.build_report(make_run(make_verdict("lsm"))))
    row = next(line for line in lines if line.startswith("docker-run"))
    assert "not run" in row


def test_no_ansi_escapes(profile_run: RunResult) -> None:
    assert not any(ANSI.search(line) for line in reports.render_terminal(reports.build_report(profile_run)))


def test_long_summaries_are_shortened_to_one_line(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    summary = "rootlesskit failed:\n" + "x" * 300
    run = make_run(make_verdict("buildkit-rootless", Status.FAIL, summary))
    lines = reports.render_terminal(reports.build_report(run))
    row = next(line for line in lines if line.startswith("buildkit-rootless "))
    assert row.endswith("...")
    assert "x" * (SUMMARY_WIDTH + 1) not in row


def test_shorten_keeps_short_text_and_cuts_long_text() -> None:
    assert shorten("a  b\nc", 10) == "a b c"
    assert shorten("abcdefghijkl", 8) == "abcde..."
    assert len(shorten("word " * 40, 30)) <= 30


def test_recommendation_lines(profiles: dict[str, RunResult]) -> None:
    lines = reports.render_terminal(reports.build_report(profiles["fuse-cache"]))
    assert "full docker (docker run): dind" in lines
    assert "build only (build + push): buildkit-rootless" in lines
    assert "why:" in lines


def test_required_mode_line(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    run = make_run(make_verdict("buildkit-rootless"), required_mode=Mode.DIND)
    assert "required mode dind: NOT usable" in reports.render_terminal(reports.build_report(run))


def test_modes_table_counts_extra_warnings(profiles: dict[str, RunResult]) -> None:
    lines = reports.render_terminal(reports.build_report(profiles["fuse-cache"]))
    dind_row = next(line for line in lines if line.startswith("dind "))
    assert "yes" in dind_row
    assert "overlay on the cache class fuse-cache" in dind_row


def test_last_line_names_the_checks_that_proved_nothing_with_their_causes(
    make_verdict: MakeVerdict, make_run: MakeRun
) -> None:
    run = make_run(
        make_verdict("lsm"),
        make_verdict("docker-run", Status.FAIL, "nested run failed"),
        make_verdict("buildkit-rootless", Status.INCONCLUSIVE, "could not run: ErrImagePull: moby/buildkit:nope"),
        make_verdict("sysbox", Status.SKIPPED, "sysbox not installed: no RuntimeClass sysbox-runc"),
    )
    last = reports.render_terminal(reports.build_report(run))[-1]
    assert last == (
        "proved nothing: 2 of 4 checks (1 inconclusive, 1 skipped): "
        "buildkit-rootless inconclusive: could not run: ErrImagePull: moby/buildkit:nope; "
        "sysbox skipped: sysbox not installed: no RuntimeClass sysbox-runc"
    )


def test_last_line_says_zero_when_every_check_reached_a_verdict(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    run = make_run(make_verdict("lsm"), make_verdict("docker-run", Status.FAIL, "nested run failed"))
    last = reports.render_terminal(reports.build_report(run))[-1]
    assert last == "proved nothing: 0 of 2 checks (every check that ran reached a verdict)"


def test_the_proved_nothing_line_ends_every_profile(profile_run: RunResult) -> None:
    lines = reports.render_terminal(reports.build_report(profile_run))
    assert lines[-1].startswith("proved nothing: ")
    assert sum(line.startswith("proved nothing") for line in lines) == 1


def test_the_answers_say_they_hold_as_the_selinux_type_every_pod_ran_as(profiles: dict[str, RunResult]) -> None:
    """The three answers are followed by the SELinux type every probe pod ran as: they hold for pods run as it."""
    run = profiles["permissive"]
    lines = reports.render_terminal(reports.build_report(as_selinux_type(run, "spc_t")))
    after = lines[next(i for i, line in enumerate(lines) if line.startswith("from source")) + 1]
    assert after.startswith("as SELinux type spc_t (--selinux-type)"), after
    assert not any("--selinux-type" in line for line in reports.render_terminal(reports.build_report(run)))
