"""What changed since the baseline: status moves, regressions, recommendation moves, cluster facts; bad baselines."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from probes.exceptions import UsageError
from probes.model import Verdict
from reports import build_report, changes, json_report, render_markdown, render_terminal
from tests.reports.conftest import IPTABLES_SUMMARY, PROFILES, VAP_MESSAGE, two_pools

SERVER = "https://127.0.0.1:6443"


def report(profile: str) -> dict[str, Any]:
    return copy.deepcopy(build_report(PROFILES[profile]()).json)


def test_no_change_is_one_line() -> None:
    found = changes.compute_changes(report("permissive"), report("permissive"))
    assert found.empty
    assert found.regressions == ()
    assert changes.changes_terminal_lines(found) == ["since the baseline of 2025-06-01T12:00:00Z: no change"]
    assert changes.changes_markdown(found) == "## What changed since 2025-06-01T12:00:00Z\n\nNo change.\n"
    assert found.to_json()["none"] is True


def test_privileged_denied_since_last_night_is_a_dind_regression() -> None:
    found = changes.compute_changes(report("permissive"), report("deny-privileged"))
    assert found.regressions == ("dind",)
    moved = {change.id: change for change in found.checks}
    assert (moved["privileged-admission"].before, moved["privileged-admission"].after) == ("pass", "fail")
    assert "ValidatingAdmissionPolicy" in moved["privileged-admission"].after_summary
    assert moved["privileged-admission"].before_summary == "every mode's pod admitted and ran"
    assert any(change.what == "full_docker" and change.after == "none" for change in found.recommendation)
    lines = changes.changes_terminal_lines(found)
    assert lines[0] == f"since the baseline of 2025-06-01T12:00:00Z: {found.count()} changes; REGRESSED: dind"
    assert len(lines) == 1 + found.count()
    assert (
        "  - check privileged-admission: pass -> fail: the dind pod was rejected by ValidatingAdmissionPolicy "
        "deny-privileged (was: every mode's pod admitted and ran)"
    ) in lines
    assert "**Regressed:** `dind`" in changes.changes_markdown(found)


def test_a_regressed_mode_names_the_failing_blocker_with_its_summary_now() -> None:
    found = changes.compute_changes(report("permissive"), report("deny-privileged"))
    (dind,) = [change for change in found.modes if change.id == "dind"]
    assert dind.blocked_by == ("privileged-admission", "socket-sharing", "docker-run")
    # the skipped blockers only follow from the refused pod: the cause is the failed check
    assert [cause.check for cause in dind.causes] == ["privileged-admission"]
    assert dind.describe() == (
        "dind: usable -> NOT usable (blocked by privileged-admission: the dind pod was rejected by "
        "ValidatingAdmissionPolicy deny-privileged; also socket-sharing, docker-run)"
    )
    assert f"  - mode {dind.describe()}" in changes.changes_terminal_lines(found)
    markdown = changes.changes_markdown(found)
    assert "- Mode `dind`: usable → **NOT usable**, blocked by `privileged-admission`: the dind pod" in markdown
    assert "(also `socket-sharing`, `docker-run`)" in markdown


def test_a_mode_that_starts_working_is_a_change_not_a_regression() -> None:
    found = changes.compute_changes(report("deny-privileged"), report("permissive"))
    assert found.regressions == ()
    (dind,) = [change for change in found.modes if change.id == "dind"]
    assert (dind.was_usable, dind.is_usable, dind.blocked_by, dind.causes) == (False, True, (), ())
    assert dind.describe() == "dind: NOT usable -> usable"
    assert "REGRESSED" not in changes.changes_terminal_lines(found)[0]


def test_recommendation_moves_are_listed() -> None:
    found = changes.compute_changes(report("permissive"), report("psa-baseline"))
    moved = {change.what: (change.before, change.after) for change in found.recommendation}
    assert moved == {"full_docker": ("dind", "none"), "build_only": ("buildkit-rootless", "none")}
    lines = changes.changes_terminal_lines(found)
    assert "  - recommendation full_docker: dind -> none" in lines
    assert "- Recommendation full_docker: dind → none" in changes.changes_markdown(found)
    assert set(found.regressions) == {"dind", "buildkit-rootless"}


def test_node_runtime_kernel_and_image_digest_changes_are_listed() -> None:
    before, after = report("permissive"), report("permissive")
    before["cluster"]["images"] = {"dind": {"ref": "docker:29-dind", "digest": "sha256:old"}}
    after["cluster"]["images"] = {"dind": {"ref": "docker:29-dind", "digest": "sha256:new"}}
    after["cluster"]["nodes"][0]["container_runtime"] = "containerd://2.1.4"
    after["cluster"]["nodes"][0]["kernel"] = "6.8.0-45-generic"
    after["cluster"]["version"] = "v1.32.0"
    found = changes.compute_changes(before, after)
    described = [change.describe() for change in found.cluster]
    assert described == [
        "server version: v1.31.4 -> v1.32.0",
        "node testbed-0 container_runtime: containerd://1.7.24 -> containerd://2.1.4",
        "node testbed-0 kernel: 6.1.0-28-amd64 -> 6.8.0-45-generic",
        "image dind (docker:29-dind): sha256:old -> sha256:new",
    ]
    assert found.modes == ()
    assert found.regressions == ()
    lines = changes.changes_terminal_lines(found)
    assert lines[0] == "since the baseline of 2025-06-01T12:00:00Z: 4 changes"
    assert "  - cluster image dind (docker:29-dind): sha256:old -> sha256:new" in lines


def test_nodes_added_and_gone_carry_their_runtime_and_kernel() -> None:
    before, after = report("permissive"), report("permissive")
    after["cluster"]["nodes"][0] = {**after["cluster"]["nodes"][0], "name": "testbed-1"}
    described = [change.describe() for change in changes.compute_changes(before, after).cluster]
    facts = "container_runtime containerd://1.7.24, kernel 6.1.0-28-amd64"
    assert described == [f"node testbed-0: {facts} -> gone", f"node testbed-1: (none) -> new: {facts}"]


def test_a_nodes_cgroup_and_lsm_changes_are_listed_when_both_runs_read_them() -> None:
    """A node pool moved to cgroup v2 and AppArmor overnight: the nightly job must say so (before: silent)."""
    before, after = report("permissive"), report("permissive")
    v1: dict[str, Any] = {
        "cgroup": "v1",
        "lsm": [],
        "apparmor_profile": None,
        "selinux_mode": None,
        "selinux_label": None,
    }
    before["cluster"]["nodes"][0].update(v1)
    after["cluster"]["nodes"][0].update(
        cgroup="v2", lsm=["apparmor"], apparmor_profile="cri-containerd.apparmor.d (enforce)"
    )
    described = [change.describe() for change in changes.compute_changes(before, after).cluster]
    assert described == [
        "node testbed-0 cgroup: v1 -> v2",
        "node testbed-0 lsm: none -> apparmor",
    ]
    before["cluster"]["nodes"][0].update(after["cluster"]["nodes"][0], apparmor_profile="unconfined")
    described = [change.describe() for change in changes.compute_changes(before, after).cluster]
    assert described == ["node testbed-0 apparmor_profile: unconfined -> cri-containerd.apparmor.d (enforce)"]


def test_node_security_not_read_on_one_side_or_pod_categories_are_no_change() -> None:
    """The lsm check's pod may land elsewhere (null: not read); SELinux categories differ per pod."""
    before, after = report("permissive"), report("permissive")
    before["cluster"]["nodes"][0].update(cgroup=None, lsm=None, selinux_mode="enforcing")
    before["cluster"]["nodes"][0]["selinux_label"] = "system_u:system_r:container_t:s0:c1,c2"
    after["cluster"]["nodes"][0].update(cgroup="v2", lsm=["selinux"], selinux_mode="enforcing")
    after["cluster"]["nodes"][0]["selinux_label"] = "system_u:system_r:container_t:s0:c7,c9"
    assert changes.compute_changes(before, after).cluster == ()
    after["cluster"]["nodes"][0]["selinux_label"] = "system_u:system_r:spc_t:s0"
    described = [change.describe() for change in changes.compute_changes(before, after).cluster]
    assert described == ["node testbed-0 selinux_label: system_u:system_r:container_t:s0 -> system_u:system_r:spc_t:s0"]


def test_image_ref_changes_and_missing_digests() -> None:
    before, after = report("permissive"), report("permissive")
    before["cluster"]["images"] = {
        "dind": {"ref": "docker:27-dind", "digest": "sha256:a"},
        "tools": {"ref": "debian:bookworm-slim", "digest": ""},
    }
    after["cluster"]["images"] = {
        "dind": {"ref": "docker:29-dind", "digest": "sha256:b"},
        "tools": {"ref": "debian:bookworm-slim", "digest": "sha256:c"},
        "registry": {"ref": "registry:2", "digest": "sha256:d"},
    }
    described = [change.describe() for change in changes.compute_changes(before, after).cluster]
    # an unknown digest on one side (no pod ran with it) or a role only one report has says nothing
    assert described == ["image dind: docker:27-dind (sha256:a) -> docker:29-dind (sha256:b)"]


def test_a_baseline_without_images_compares_quietly() -> None:
    before, after = report("permissive"), report("permissive")
    del before["cluster"]["images"]
    after["cluster"]["images"] = {"dind": {"ref": "docker:29-dind", "digest": "sha256:new"}}
    assert changes.compute_changes(before, after).empty


def test_a_check_missing_from_one_report_moved_from_or_to_not_run() -> None:
    before, after = report("permissive"), report("permissive")
    after["checks"] = [c for c in after["checks"] if c["id"] != "lsm"]
    (change,) = changes.compute_changes(before, after).checks
    assert (change.id, change.before, change.after) == ("lsm", "pass", "not run")
    (back,) = changes.compute_changes(after, before).checks
    assert (back.before, back.after, back.before_summary) == ("not run", "pass", "")


def test_multi_line_summaries_stay_one_line_per_change() -> None:
    before, after = report("permissive"), report("permissive")
    after["checks"][0] = {**after["checks"][0], "status": "fail", "summary": "first\nsecond  line"}
    lines = changes.changes_terminal_lines(changes.compute_changes(before, after))
    assert all("\n" not in line for line in lines)
    assert lines[1].endswith("fail: first second line (was: every mode's pod admitted and ran)")


def test_markdown_keeps_probe_text_visible_and_tables_intact() -> None:
    before, after = report("permissive"), report("permissive")
    after["checks"][0] = {**after["checks"][0], "status": "fail", "summary": "profile <none> | enforce"}
    markdown = changes.changes_markdown(changes.compute_changes(before, after))
    assert "profile &lt;none&gt; \\| enforce" in markdown


def test_a_junk_baseline_compares_without_a_traceback() -> None:
    junk: dict[str, Any] = {
        "schema": "dindcheck/report/v1",
        "generated_at": "then",
        "cluster": {"server": SERVER, "nodes": [1, {"no": "name"}], "images": {"dind": None}},
        "checks": [None, {"status": "pass"}, {"id": "lsm"}],
        "modes": "dind",
        "recommendation": [],
    }
    found = changes.compute_changes(junk, report("permissive"))
    assert {change.id for change in found.checks} >= {"lsm", "docker-run"}
    assert found.regressions == ()


def test_the_changes_block_validates_against_the_schema() -> None:
    for baseline, current in (
        ("permissive", "deny-privileged"),
        ("permissive", "permissive"),
        ("fuse-cache", "psa-baseline"),
    ):
        built = build_report(PROFILES[current](), report(baseline))
        assert json_report.validate(built.json) is True
        assert built.json["changes"] == changes.compute_changes(report(baseline), report(current)).to_json()


def test_the_report_carries_its_changes_block_and_renderers_open_with_it() -> None:
    built = build_report(PROFILES["deny-privileged"](), report("permissive"))
    assert built.changes is not None
    block = built.json["changes"]
    assert block["regressions"] == ["dind"]
    (dind,) = [mode for mode in block["modes"] if mode["id"] == "dind"]
    assert dind["causes"] == [
        {
            "check": "privileged-admission",
            "status": "fail",
            "summary": "the dind pod was rejected by ValidatingAdmissionPolicy deny-privileged",
        }
    ]
    terminal = render_terminal(built)
    assert terminal[2].startswith("since the baseline of 2025-06-01T12:00:00Z: ")
    markdown = render_markdown(built)
    assert markdown.index("## What changed since") < markdown.index("## Checks")
    assert VAP_MESSAGE not in "\n".join(changes.changes_terminal_lines(built.changes))


def test_without_a_baseline_there_is_no_changes_block() -> None:
    built = build_report(PROFILES["permissive"]())
    assert built.changes is None
    assert "changes" not in built.json
    assert not any(line.startswith("since the baseline") for line in render_terminal(built))


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "baseline.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def permissive_with(**overrides: Any) -> str:
    return json.dumps({**report("permissive"), **overrides})


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{not json", "not JSON"),
        ("", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (json.dumps({"schema": "dindcheck/report/v0"}), "schema 'dindcheck/report/v0', not 'dindcheck/report/v1'"),
        (json.dumps({"generated_at": "x"}), "schema None"),
        (json.dumps([1, 2]), "schema 'a JSON list'"),
        (permissive_with(cluster={"server": "https://other:6443"}), "of https://other:6443, not of " + SERVER),
        (permissive_with(cluster={}), "of (unknown server), not of " + SERVER),
        (permissive_with(cluster="https://127.0.0.1:6443"), "without a valid cluster"),
        (json.dumps({"schema": "dindcheck/report/v1"}), "without a valid cluster, checks, modes, recommendation"),
    ],
)
def test_bad_baselines_are_one_line_usage_errors(tmp_path: Path, content: str | bytes, said: str) -> None:
    with pytest.raises(UsageError) as raised:
        changes.load_baseline(write(tmp_path, content), server=SERVER)
    assert said in str(raised.value)
    assert str(raised.value).startswith(f"--baseline {tmp_path / 'baseline.json'}")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("where", ["absent.json", "."])
def test_unreadable_baseline_is_a_usage_error(tmp_path: Path, where: str) -> None:
    with pytest.raises(UsageError, match="cannot read it") as raised:
        changes.load_baseline(tmp_path / where, server=SERVER)
    assert "\n" not in str(raised.value)


def test_a_baseline_of_this_cluster_loads(tmp_path: Path) -> None:
    baseline = changes.load_baseline(write(tmp_path, json.dumps(report("permissive"))), server=SERVER)
    assert baseline == report("permissive")
    assert changes.load_baseline(write(tmp_path, json.dumps(report("permissive"))), server=SERVER + "/")


def pools_report(*, ci: tuple[Verdict, ...] | None = None, ci_node: str = "") -> dict[str, Any]:
    """The two-pool run, its ci pool's verdicts (and probed node) replaced when given."""
    run = two_pools()
    pools = run.pools
    if ci is not None or ci_node:
        ci_pool = pools[1]
        ci_pool = replace(ci_pool, verdicts=ci if ci is not None else ci_pool.verdicts, node=ci_node or ci_pool.node)
        pools = (pools[0], ci_pool)
    return copy.deepcopy(build_report(replace(run, pools=pools)).json)


def test_pool_checks_are_compared_as_pool_slash_check() -> None:
    found = changes.compute_changes(pools_report(ci=PROFILES["permissive"]().verdicts), pools_report())
    assert [(change.id, change.before, change.after) for change in found.checks] == [
        ("ci/docker-run", "pass", "fail"),
        ("ci/overlay-cache", "pass", "fail"),
    ]
    assert found.checks[0].after_summary == IPTABLES_SUMMARY


def test_a_mode_lost_on_one_pool_is_a_regression_caused_by_that_pools_check() -> None:
    found = changes.compute_changes(pools_report(ci=PROFILES["permissive"]().verdicts), pools_report())
    assert found.regressions == ("dind",)
    (dind,) = found.modes
    assert dind.blocked_by == ("ci/docker-run",)
    assert dind.causes == (changes.Cause("ci/docker-run", "fail", IPTABLES_SUMMARY),)
    assert dind.describe() == f"dind: usable -> NOT usable (blocked by ci/docker-run: {IPTABLES_SUMMARY})"
    assert [change.describe() for change in found.recommendation] == ["full_docker: dind -> none"]
    assert found.cluster == ()


def test_blockers_of_a_mode_lost_on_every_pool_are_named_per_pool() -> None:
    refused = PROFILES["deny-privileged"]().verdicts
    before = pools_report(ci=PROFILES["permissive"]().verdicts)
    run = two_pools()
    after = build_report(
        replace(run, pools=(replace(run.pools[0], verdicts=refused), replace(run.pools[1], verdicts=refused)))
    ).json
    (dind,) = [change for change in changes.compute_changes(before, after).modes if change.id == "dind"]
    assert dind.blocked_by == (
        "default/privileged-admission",
        "default/socket-sharing",
        "default/docker-run",
        "ci/privileged-admission",
        "ci/socket-sharing",
        "ci/docker-run",
    )
    assert [cause.check for cause in dind.causes] == ["default/privileged-admission", "ci/privileged-admission"]


def test_pools_appearing_and_a_pool_probed_on_another_node_are_cluster_changes() -> None:
    found = changes.compute_changes(report("permissive"), pools_report())
    (pools,) = [change for change in found.cluster if change.what == "node pools"]
    assert pools.describe() == "node pools: (none) -> eks.amazonaws.com/nodegroup=default, ci"
    # every check now has a pool in its name: the single-pool ones are gone, the pool ones new
    assert {change.id for change in found.checks} >= {"docker-run", "ci/docker-run", "default/docker-run"}
    moved = changes.compute_changes(pools_report(), pools_report(ci_node="ip-10-0-2-91.ec2.internal"))
    assert [change.describe() for change in moved.cluster] == [
        "pool ci probed node: ip-10-0-2-8.ec2.internal -> ip-10-0-2-91.ec2.internal"
    ]
    assert moved.checks == ()


def test_no_change_between_two_multi_pool_reports() -> None:
    assert changes.compute_changes(pools_report(), pools_report()).empty


def test_a_multi_pool_report_with_a_multi_pool_baseline_validates() -> None:
    baseline = pools_report(ci=PROFILES["permissive"]().verdicts)
    built = build_report(two_pools(), baseline)
    assert json_report.validate(built.json) is True
    assert built.json["changes"]["regressions"] == ["dind"]
    moved = f"  - check ci/docker-run: pass -> fail: {IPTABLES_SUMMARY} (was: nested docker run worked"
    assert any(line.startswith(moved) for line in render_terminal(built))
    assert "- Check `ci/docker-run`: pass → **fail**" in render_markdown(built)


def pools_run(default: tuple[Verdict, ...] | None = None, ci: tuple[Verdict, ...] | None = None) -> dict[str, Any]:
    """The two-pool run with either pool's verdicts replaced, or (None and dropped=True) without a pool."""
    run = two_pools()
    kept = [
        replace(pool, verdicts=verdicts) if verdicts is not None else pool
        for pool, verdicts in zip(run.pools, (default, ci), strict=True)
    ]
    return copy.deepcopy(build_report(replace(run, pools=tuple(kept))).json)


def without_pool(report_json: dict[str, Any], pool: str) -> dict[str, Any]:
    """A multi-pool report in which one pool was not probed (scaled to zero, or none of its nodes took the pods)."""
    trimmed = copy.deepcopy(report_json)
    trimmed["pools"] = [block for block in trimmed["pools"] if block["pool"] != pool]
    return trimmed


def test_a_mode_lost_on_one_pool_while_another_already_lacked_it_is_a_regression_naming_the_pool() -> None:
    # the baseline: dind usable on default, not on ci (so not usable on every pool); now default refuses privileged
    before = pools_run()
    after = pools_run(default=PROFILES["deny-privileged"]().verdicts)
    found = changes.compute_changes(before, after)
    assert [mode.id for mode in found.modes if mode.regressed] == []  # the every-pool verdict stayed "not usable"
    assert found.regressions == ("dind",)
    assert [lost.describe() for lost in found.lost] == ["dind on pool default"]
    (dind,) = found.pool_modes
    assert (dind.pool, dind.id, dind.was_usable, dind.is_usable) == ("default", "dind", True, False)
    assert [cause.check for cause in dind.causes] == ["default/privileged-admission"]
    lines = changes.changes_terminal_lines(found)
    assert lines[0].endswith("; REGRESSED: dind on pool default")
    assert (
        "  - mode dind on pool default: usable -> NOT usable (blocked by default/privileged-admission: the dind pod "
        "was rejected by ValidatingAdmissionPolicy deny-privileged; also default/socket-sharing, default/docker-run)"
    ) in lines
    assert "**Regressed:** `dind` on pool `default`" in changes.changes_markdown(found)
    block = found.to_json()
    assert block["regressions"] == ["dind"]
    assert block["lost"] == [{"mode": "dind", "pool": "default", "summary": "dind on pool default"}]


def test_a_pool_probed_in_the_baseline_and_not_now_is_a_regression() -> None:
    found = changes.compute_changes(pools_run(), without_pool(pools_run(), "ci"))
    # what the ci pool proved in the baseline is proven nowhere now
    assert found.regressions == ("buildkit-rootless",)
    assert [lost.describe() for lost in found.lost] == ["pool ci (probed in the baseline, not in this run)"]
    lines = changes.changes_terminal_lines(found)
    assert "REGRESSED: pool ci (probed in the baseline, not in this run)" in lines[0]
    assert "  - pool ci was probed in the baseline and not in this run (usable there then: buildkit-rootless)" in lines
    assert found.to_json()["lost"] == [
        {"mode": "", "pool": "ci", "summary": "pool ci (probed in the baseline, not in this run)"}
    ]


def test_a_multi_pool_baseline_against_a_single_pool_run_loses_every_pool() -> None:
    found = changes.compute_changes(pools_run(), report("permissive"))
    assert [lost.pool for lost in found.lost] == ["default", "ci"]


def test_a_new_mode_warning_is_a_change_listed_first_not_a_regression() -> None:
    before, after = report("permissive"), report("permissive")
    (dind,) = [mode for mode in after["modes"] if mode["id"] == "dind"]
    warn = 'admission warning for the dind pod: would violate PodSecurity "restricted:latest": privileged'
    dind["warnings"] = [warn]
    after["checks"] = [
        {**check, "summary": check["summary"] + "; WARNING: a nested container stalled"}
        if check["id"] == "docker-run"
        else check
        for check in after["checks"]
    ]
    warning_only = changes.compute_changes(before, after)
    assert not warning_only.empty
    assert warning_only.regressions == ()
    # and one check that moved: changes to the checks come after the new warnings
    after["checks"] = [{**check, "status": "fail"} if check["id"] == "lsm" else check for check in after["checks"]]
    found = changes.compute_changes(before, after)
    assert [(new.mode, new.check, new.warning) for new in found.warnings] == [
        ("dind", "", warn),
        ("", "docker-run", "WARNING: a nested container stalled"),
    ]
    lines = changes.changes_terminal_lines(found)
    assert "REGRESSED" not in lines[0]
    assert lines[1] == f"  - new warning: mode dind: {warn}"
    assert lines[2] == "  - new warning: check docker-run: WARNING: a nested container stalled"
    assert lines[3].startswith("  - check ")
    markdown = changes.changes_markdown(found)
    assert markdown.index("New warning") < markdown.index("Check `")
    assert found.to_json()["warnings"][0] == {"pool": "", "mode": "dind", "check": "", "warning": warn}


def test_a_new_warning_on_one_pool_names_the_pool() -> None:
    # the ci pool's cache class starts failing overlay (the default pool's stays fine)
    before = pools_run(ci=PROFILES["permissive"]().verdicts)
    after = pools_run(ci=PROFILES["fuse-cache"]().verdicts)
    found = changes.compute_changes(before, after)
    assert {(new.pool, new.mode) for new in found.warnings} == {("ci", "dind"), ("ci", "buildkit-rootless")}
    assert found.regressions == ()
    assert any(
        line.startswith("  - new warning: mode dind on pool ci: overlay on the cache class")
        for line in changes.changes_terminal_lines(found)
    )


def test_a_warning_already_in_the_baseline_is_no_change() -> None:
    assert changes.compute_changes(pools_run(), pools_run()).empty
    assert changes.compute_changes(report("fuse-cache"), report("fuse-cache")).empty


def test_a_mode_lost_since_the_pinned_baseline_keeps_failing_on_the_second_night() -> None:
    pinned = report("permissive")
    night_1 = build_report(PROFILES["deny-privileged"](), report("permissive"), pinned=pinned)
    assert night_1.regressions == ("dind",)
    # night 2 compares with night 1, where dind was already lost: no change since then, but still lost since the pin
    night_2 = build_report(PROFILES["deny-privileged"](), copy.deepcopy(night_1.json), pinned=pinned)
    assert night_2.changes is not None
    assert night_2.changes.empty
    assert night_2.regressions == ("dind (lost since the pinned baseline of 2025-06-01T12:00:00Z)",)
    block = night_2.json["changes_since_pinned"]
    assert block["regressions"] == ["dind"]
    assert json_report.validate(night_2.json) is True
    terminal = render_terminal(night_2)
    assert "since the baseline of 2025-06-01T12:00:00Z: no change" in terminal
    assert "since the pinned baseline of 2025-06-01T12:00:00Z: REGRESSED: dind" in terminal
    assert any(
        line.startswith("  - mode dind: usable -> NOT usable (blocked by privileged-admission") for line in terminal
    )
    markdown = render_markdown(night_2)
    assert "## Lost since the pinned baseline of 2025-06-01T12:00:00Z" in markdown
    # once the pin is moved to a night without dind, nothing is lost
    repinned = build_report(PROFILES["deny-privileged"](), copy.deepcopy(night_1.json), pinned=night_1.json)
    assert repinned.regressions == ()
    assert "since the pinned baseline of 2025-06-01T12:00:00Z: nothing lost" in render_terminal(repinned)


def test_a_pinned_baseline_alone_judges_regressions_without_a_changes_block() -> None:
    built = build_report(PROFILES["deny-privileged"](), pinned=report("permissive"))
    assert built.changes is None
    assert "changes" not in built.json
    assert built.regressions == ("dind (lost since the pinned baseline of 2025-06-01T12:00:00Z)",)
    assert json_report.validate(built.json) is True


def test_a_pinned_baseline_of_another_cluster_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        changes.load_baseline(
            write(tmp_path, permissive_with(cluster={"server": "https://other:6443"})),
            server=SERVER,
            option="--pinned-baseline",
        )
    assert str(raised.value).startswith("--pinned-baseline ")


def test_a_warning_that_differs_only_by_the_run_is_no_change() -> None:
    """Server messages name the run's pods (dc-<run id>-...) and namespace: every night has other names."""

    def with_warning(run_id: str) -> dict[str, Any]:
        built = report("permissive")
        (dind,) = [mode for mode in built["modes"] if mode["id"] == "dind"]
        pod = f"dc-{run_id}-overlay-cache-emptydir"
        dind["warnings"] = [f'overlay-cache skipped: pods "{pod}" is forbidden in namespace dindcheck-{run_id}; 2.4s']
        return built

    assert changes.compute_changes(with_warning("lzclh"), with_warning("fst9g")).empty
    other = with_warning("fst9g")
    other["modes"][3]["warnings"] = ["overlay-cache skipped: something else"]
    assert not changes.compute_changes(with_warning("lzclh"), other).empty
