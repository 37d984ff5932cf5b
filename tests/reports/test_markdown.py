"""The Markdown report: a golden file for one fixed run, plus the escaping that keeps probe text from breaking it.

Regenerate the golden file only on purpose: DINDCHECK_UPDATE_GOLDEN=1 pytest tests/reports/test_markdown.py,
then read the diff as a reviewer would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import reports
from probes.definitions import catalog
from probes.model import RunResult, Status, Verdict
from reports.markdown import cell, fenced
from tests.reports.conftest import as_selinux_type

MakeVerdict = Callable[..., Verdict]
MakeRun = Callable[..., RunResult]
GOLDEN = Path(__file__).parent / "golden"

CHECK_IDS = tuple(definition.id for definition in catalog())


def test_fuse_cache_report_matches_the_golden_file(profiles: dict[str, RunResult]) -> None:
    report = reports.build_report(profiles["fuse-cache"])
    rendered = reports.render_markdown(report)
    golden = GOLDEN / "fuse-cache.md"
    if os.environ.get("DINDCHECK_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")


def test_write_markdown_writes_the_rendered_text(profiles: dict[str, RunResult], tmp_path: Path) -> None:
    report = reports.build_report(profiles["psa-baseline"])
    path = tmp_path / "summary" / "report.md"
    reports.write_markdown(report, path)
    assert path.read_text(encoding="utf-8") == reports.render_markdown(report)


def test_headline_names_both_recommendations(profiles: dict[str, RunResult]) -> None:
    text = reports.render_markdown(reports.build_report(profiles["deny-privileged"]))
    assert "**Full Docker (docker run):** `none`" in text
    assert "**Build only (build + push):** `buildkit-rootless`" in text


def test_every_check_has_a_row(profile_run: RunResult) -> None:
    text = reports.render_markdown(reports.build_report(profile_run))
    for check_id in CHECK_IDS:
        assert f"| `{check_id}` |" in text


def test_non_pass_checks_get_collapsible_details(profiles: dict[str, RunResult]) -> None:
    run = profiles["psa-baseline"]
    text = reports.render_markdown(reports.build_report(run))
    failing = [v for v in run.verdicts if v.status is not Status.PASS]
    assert text.count("<details>") == len(failing)
    assert "**Remediation:** label the namespace pod-security.kubernetes.io/enforce=privileged" in text


def test_snippets_and_security_costs_are_present(profiles: dict[str, RunResult]) -> None:
    text = reports.render_markdown(reports.build_report(profiles["permissive"]))
    assert "### SkyPilot (`~/.sky/config.yaml`)" in text
    assert "```yaml\n" in text
    assert "## Security cost of each mode" in text
    assert "- **host-socket**: " in text


def test_notes_show_the_namespace_pod_security_labels(profiles: dict[str, RunResult]) -> None:
    text = reports.render_markdown(reports.build_report(profiles["permissive"]))
    assert "`pod-security.kubernetes.io/enforce=privileged`" in text
    assert "app.kubernetes.io/managed-by" not in text.split("## Notes")[1].split("Nodes:")[0]


def test_probe_text_cannot_break_the_table(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    run = make_run(make_verdict("lsm", Status.FAIL, "profile <none> | enforce\nsecond line"))
    row = next(line for line in reports.render_markdown(reports.build_report(run)).splitlines() if "`lsm`" in line)
    assert "profile &lt;none&gt; \\| enforce second line" in row
    assert cell("a|b") == "a\\|b"


def test_fences_outgrow_backticks_in_evidence() -> None:
    assert fenced("plain", "json") == ["```json", "plain", "```"]
    assert fenced("has ```` inside", "json")[0] == "`````json"


def test_the_security_costs_say_the_selinux_type_every_pod_ran_as(profiles: dict[str, RunResult]) -> None:
    """With --selinux-type spc_t the costs of each mode hold, and SELinux no longer confines its containers."""
    run = profiles["permissive"]
    text = reports.render_markdown(reports.build_report(as_selinux_type(run, "spc_t")))
    costs = text.split("## Security cost of each mode")[1]
    assert "SELinux type `spc_t` (--selinux-type)" in costs
    plain = reports.render_markdown(reports.build_report(run)).split("## Security cost of each mode")[1]
    assert "--selinux-type" not in plain


def test_the_answers_say_they_hold_as_the_selinux_type_every_pod_ran_as(profiles: dict[str, RunResult]) -> None:
    """A reader of the headline alone must not take 'dind' for a verdict on pods the runtime labels container_t."""
    run = profiles["permissive"]
    headline = reports.render_markdown(reports.build_report(as_selinux_type(run, "spc_t"))).split("Cluster `")[0]
    assert "_As SELinux type spc_t (--selinux-type): every probe pod ran as it" in headline, headline
    plain = reports.render_markdown(reports.build_report(run)).split("Cluster `")[0]
    assert "SELinux" not in plain
