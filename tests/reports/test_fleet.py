"""A fleet in one run (issue 21): each cluster keeps its own report, the fleet level holds what is true on every one.

The fleet: cluster a is the permissive testbed (dind and rootless BuildKit), cluster b refuses privileged pods
(rootless BuildKit only), and p is an --each-pool cluster whose ci pool cannot run nested docker.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

import reports
from probes.exceptions import UsageError
from probes.model import ClusterRun, FleetRun, Mode, RunResult, Status, UnprobedCluster
from reports import json_report, markdown, paste, prometheus
from reports.changes import load_baseline, load_fleet_baseline
from reports.fleet import NO_CLUSTER_CAUSE, FleetReport, build_fleet_report
from tests.reports.conftest import CLUSTER, deny_privileged, make_verdict, permissive, two_pools

SERVER_A = "https://a.example:6443"
SERVER_B = "https://b.example:6443"
SERVER_P = "https://p.example:6443"
Z = UnprobedCluster("z", "https://z.example:6443", "dial tcp 10.0.0.9:6443: connect: connection refused")
Z_CAUSE = "cluster z not probed (dial tcp 10.0.0.9:6443: connect: connection refused): nothing is proven there"


def on(server: str, run: RunResult) -> RunResult:
    """The run as if against the cluster at server."""
    return replace(
        run, cluster=replace(CLUSTER, server=server) if not run.pools else replace(run.cluster, server=server)
    )


def fleet(
    *clusters: tuple[str, RunResult], unprobed: tuple[UnprobedCluster, ...] = (), required_mode: Mode | None = None
) -> FleetRun:
    return FleetRun(
        clusters=tuple(ClusterRun(context, run) for context, run in clusters),
        unprobed=unprobed,
        generated_at="2025-06-01T12:00:00Z",
        total_s=120.5,
        required_mode=required_mode,
        capabilities=permissive().capabilities,
    )


def a_and_b(required_mode: Mode | None = None) -> FleetRun:
    return fleet(("a", on(SERVER_A, permissive())), ("b", on(SERVER_B, deny_privileged())), required_mode=required_mode)


def with_pools(unprobed: tuple[UnprobedCluster, ...] = ()) -> FleetRun:
    return fleet(("a", on(SERVER_A, permissive())), ("p", on(SERVER_P, two_pools())), unprobed=unprobed)


def usable(report: FleetReport) -> dict[str, bool]:
    return {assessment.mode.value: assessment.usable for assessment in report.assessments}


def table(lines: list[str], first: str) -> dict[str, dict[str, str]]:
    """A tabulate 'simple' table starting at the header line whose first cell is `first`: row -> column -> cell."""
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first])
    header = lines[start].split()
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith(("failed:", "full docker")):
            break
        cells = line.split()
        rows[cells[0]] = dict(zip(header[1:], cells[1 : len(header)], strict=False))
    return rows


# --- what holds fleet-wide ---


def test_a_mode_is_usable_fleet_wide_only_when_usable_on_every_cluster() -> None:
    report = build_fleet_report(a_and_b())

    assert usable(report)["buildkit-rootless"] is True
    assert usable(report)["dind"] is False
    assert [cluster.context for cluster in report.clusters] == ["a", "b"]
    assert report.clusters[0].report.recommendation.full_docker is Mode.DIND
    assert report.recommendation.full_docker is Mode.NONE
    assert report.recommendation.build_only is Mode.BUILDKIT_ROOTLESS
    assert "full_docker per cluster: a dind, b none" in report.recommendation.reasons
    dind = next(a for a in report.assessments if a.mode is Mode.DIND)
    assert any(cause.startswith("cluster b: ") for cause in dind.causes)
    assert report.is_usable(Mode.BUILDKIT_ROOTLESS)
    assert not report.is_usable(Mode.DIND)
    assert report.is_usable(Mode.NONE)
    assert report.unusable_clusters(Mode.DIND) == ("b",)
    assert report.unusable_clusters(Mode.BUILDKIT_ROOTLESS) == ()


def test_an_unprobed_cluster_blocks_every_mode_and_is_named() -> None:
    run = fleet(("a", on(SERVER_A, permissive())), ("b", on(SERVER_B, permissive())), unprobed=(Z,))
    report = build_fleet_report(run)

    assert not any(usable(report).values())
    assert all(Z_CAUSE in assessment.causes for assessment in report.assessments)
    assert report.recommendation.full_docker is Mode.NONE
    assert report.recommendation.build_only is Mode.NONE
    assert report.unusable_clusters(Mode.DIND) == ("z",)
    assert report.json["unprobed_clusters"] == [Z.to_json()]
    lines = reports.render_terminal(report)
    assert "z NOT PROBED" in lines[0]
    row = next(line for line in lines if line.startswith("z "))
    assert "NOT PROBED: dial tcp" in row
    assert "usable" not in row.split("NOT PROBED")[0]
    assert "(NOT PROBED: dial tcp 10.0.0.9:6443: connect: connection refused)" in reports.render_markdown(report)


@pytest.mark.parametrize("unprobed", [(), (Z,)])
def test_a_fleet_where_no_cluster_was_probed_proves_nothing(unprobed: tuple[UnprobedCluster, ...]) -> None:
    report = build_fleet_report(fleet(unprobed=unprobed, required_mode=Mode.KANIKO))

    assert not any(usable(report).values())
    assert not report.is_usable(Mode.KANIKO)
    assert all(NO_CLUSTER_CAUSE in assessment.causes for assessment in report.assessments)
    assert json_report.validate(report.json)
    assert report.json["required_mode"] == {
        "mode": "kaniko",
        "usable": False,
        "unusable_clusters": [cluster.context for cluster in unprobed],
    }


def test_the_gate_names_the_clusters_where_the_required_mode_is_not_usable() -> None:
    run = fleet(
        ("a", on(SERVER_A, permissive())),
        ("b", on(SERVER_B, deny_privileged())),
        ("p", on(SERVER_P, two_pools())),
        unprobed=(Z,),
        required_mode=Mode.DIND,
    )
    report = build_fleet_report(run)

    assert report.unusable_clusters(Mode.DIND) == ("b", "p", "z")
    assert report.json["required_mode"] == {"mode": "dind", "usable": False, "unusable_clusters": ["b", "p", "z"]}
    assert "required mode dind: NOT usable on cluster(s) b, p, z" in reports.render_terminal(report)
    assert "NOT usable ❌ on cluster(s) `b`, `p`, `z`" in reports.render_markdown(report)


# --- the matrices ---


def test_the_terminal_report_has_a_cluster_by_mode_and_a_check_by_cluster_matrix() -> None:
    report = build_fleet_report(a_and_b())
    lines = reports.render_terminal(report)

    assert lines[0].startswith("dindcheck: a fleet of 2 clusters: a (https://a.example:6443, Kubernetes v1.31.4), b (")
    modes = table(lines, "cluster")
    assert modes["a"]["dind"] == "usable"
    assert modes["b"]["dind"] == "-"
    assert modes["b"]["buildkit-rootless"] == "usable"
    checks = table(lines, "check")
    assert checks["privileged-admission"] == {"a": "pass", "b": "fail"}
    assert checks["docker-run"] == {"a": "pass", "b": "skipped"}
    assert "build only (build + push) on every cluster: buildkit-rootless" in lines
    assert "  - b/privileged-admission: the dind pod was rejected by ValidatingAdmissionPolicy deny-privileged" in lines
    assert lines[-1].startswith("proved nothing: 2 of 16 checks (0 inconclusive, 2 skipped): b/socket-sharing skipped")


def test_the_every_cluster_row_of_the_mode_matrix() -> None:
    lines = reports.render_terminal(build_fleet_report(a_and_b()))
    header = next(line for line in lines if line.startswith("cluster "))
    row = next(line for line in lines if line.startswith("every cluster"))
    column = header.index("buildkit-rootless")
    assert row[column:].startswith("usable")
    assert row[header.index("dind") :].startswith("-")


def test_each_pool_clusters_show_as_ctx_pool_columns_and_labels() -> None:
    report = build_fleet_report(with_pools())

    assert [label for label, _ in report.columns()] == ["a", "p/default", "p/ci"]
    checks = table(reports.render_terminal(report), "check")
    assert checks["docker-run"] == {"a": "pass", "p/default": "pass", "p/ci": "fail"}
    labels = [label for label, _ in report.verdicts()]
    assert "a/docker-run" in labels
    assert "p/ci/docker-run" in labels
    assert report.unusable_clusters(Mode.DIND) == ("p",)
    assert usable(report)["dind"] is False
    assert usable(report)["buildkit-rootless"] is True
    dind = next(a for a in report.assessments if a.mode is Mode.DIND)
    assert any(cause.startswith("cluster p: pool ci: docker-run failed") for cause in dind.causes)
    assert "| `docker-run` | ✅ pass | ✅ pass | ❌ fail |" in reports.render_markdown(report)


def test_proved_nothing_names_every_cluster_check_that_proved_nothing() -> None:
    inconclusive = make_verdict("kaniko", Status.INCONCLUSIVE, "the registry did not answer")
    a = on(SERVER_A, replace(permissive(), verdicts=(*permissive().verdicts, inconclusive)))
    report = build_fleet_report(fleet(("a", a), ("b", on(SERVER_B, deny_privileged()))))

    assert [label for label, _ in report.proved_nothing()] == ["a/kaniko", "b/socket-sharing", "b/docker-run"]


# --- JSON ---


def test_the_fleet_json_validates_and_holds_each_clusters_own_document() -> None:
    run = a_and_b(required_mode=Mode.BUILDKIT_ROOTLESS)
    report = build_fleet_report(run)
    document = json.loads(json_report.dumps(report.json))

    assert json_report.validate(document)
    assert document["schema"] == "dindcheck/report/v1"
    assert document["checks"] == []
    assert document["cluster"]["server"] == ""
    assert document["cluster"]["nodes"] == []
    assert document["cluster"]["notes"] == [
        "a fleet of 2 clusters (contexts a, b): each cluster's report is in clusters"
    ]
    assert document["timing"] == {"total_s": 120.5}
    assert document["recommendation"]["build_only"] == "buildkit-rootless"
    assert [mode["id"] for mode in document["modes"] if mode["usable"]] == ["buildkit-rootless"]
    assert document["unprobed_clusters"] == []
    assert document["required_mode"] == {"mode": "buildkit-rootless", "usable": True, "unusable_clusters": []}
    for entry, cluster in zip(document["clusters"], run.clusters, strict=True):
        assert next(iter(entry)) == "context"
        assert entry == {
            "context": cluster.context,
            **json.loads(json_report.dumps(reports.build_report(cluster.run).json)),
        }
    broken = json.loads(json_report.dumps(report.json))
    del broken["clusters"][1]["modes"]
    with pytest.raises(jsonschema.ValidationError):
        json_report.validate(broken)


def test_an_each_pool_cluster_keeps_its_pools_in_its_entry() -> None:
    document = build_fleet_report(with_pools()).json

    assert json_report.validate(document)
    assert [pool["pool"] for pool in document["clusters"][1]["pools"]] == ["default", "ci"]
    assert "pools" not in document["clusters"][0]


def test_write_json_writes_a_fleet_report(tmp_path: Path) -> None:
    path = tmp_path / "out" / "fleet.json"
    reports.write_json(build_fleet_report(a_and_b()), path)
    assert json_report.validate(json.loads(path.read_text(encoding="utf-8")))


# --- baselines ---


def write(tmp_path: Path, report: FleetReport | reports.Report, name: str = "baseline.json") -> Path:
    path = tmp_path / name
    json_report.write(report.json, path)
    return path


SERVERS = {"a": SERVER_A, "b": SERVER_B}


def test_a_fleet_baseline_diffs_each_cluster_against_its_own_entry(tmp_path: Path) -> None:
    before = build_fleet_report(fleet(("a", on(SERVER_A, permissive())), ("b", on(SERVER_B, permissive()))))
    baseline = load_fleet_baseline(write(tmp_path, before), servers=SERVERS)
    report = build_fleet_report(a_and_b(), baseline, pinned=baseline)

    a, b = report.clusters
    assert a.report.changes is not None
    assert a.report.changes.empty
    assert b.report.changes is not None
    assert b.report.changes.regressions == ("dind",)
    assert report.regressions == ("b: dind",)
    assert report.json["clusters"][1]["changes"]["regressions"] == ["dind"]
    assert "changes_since_pinned" in report.json["clusters"][1]
    assert report.notes == ()
    assert json_report.validate(report.json)
    lines = reports.render_terminal(report)
    assert any(line.startswith("cluster b: since the baseline of 2025-06-01T12:00:00Z") for line in lines)


def test_a_cluster_absent_from_the_baseline_is_compared_with_nothing_and_noted(tmp_path: Path) -> None:
    before = build_fleet_report(fleet(("a", on(SERVER_A, permissive()))))
    baseline = load_fleet_baseline(write(tmp_path, before), servers=SERVERS)
    report = build_fleet_report(a_and_b(), baseline)

    assert report.clusters[1].report.changes is None
    assert "changes" not in report.json["clusters"][1]
    note = "cluster b is not in the baseline: nothing to compare it with"
    assert report.notes == (note,)
    assert report.json["cluster"]["notes"][1:] == [note]
    assert note in reports.render_terminal(report)


def test_a_cluster_usable_in_the_baseline_and_unprobed_now_is_a_regression(tmp_path: Path) -> None:
    before = build_fleet_report(fleet(("a", on(SERVER_A, permissive())), ("z", on(Z.server, permissive()))))
    baseline = load_fleet_baseline(write(tmp_path, before), servers={"a": SERVER_A})
    report = build_fleet_report(fleet(("a", on(SERVER_A, permissive())), unprobed=(Z,)), baseline)

    lost = (
        "z: cluster not probed in this run (dial tcp 10.0.0.9:6443: connect: connection refused); "
        "usable in the baseline: buildkit-rootless, dind"
    )
    assert report.regressions == (lost,)
    assert f"- **Regressed:** {lost}" in reports.render_markdown(report)


def test_a_baseline_entry_of_another_server_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, build_fleet_report(a_and_b()))
    with pytest.raises(UsageError, match=r"its cluster b is a report of https://b\.example:6443, not of https://x"):
        load_fleet_baseline(path, servers={"a": SERVER_A, "b": "https://x.example:6443"})
    assert load_fleet_baseline(path, servers={"a": SERVER_A, "c": "https://c.example"})["clusters"]


def test_a_single_cluster_report_is_no_fleet_baseline_and_the_other_way_round(tmp_path: Path) -> None:
    single = write(tmp_path, reports.build_report(on(SERVER_A, permissive())), "single.json")
    with pytest.raises(UsageError, match="not of a fleet"):
        load_fleet_baseline(single, servers=SERVERS)
    whole = write(tmp_path, build_fleet_report(a_and_b()), "fleet.json")
    with pytest.raises(UsageError, match="a report of a fleet of clusters"):
        load_baseline(whole, server=SERVER_A)


# --- Prometheus ---


def test_prometheus_series_carry_the_context_with_one_help_per_metric() -> None:
    text = prometheus.render_prometheus(build_fleet_report(a_and_b(), pinned=None).json)
    samples = [line for line in text.splitlines() if not line.startswith("#")]

    assert sum(line.startswith("# HELP dindcheck_check_status ") for line in text.splitlines()) == 1
    assert len([line for line in text.splitlines() if line.startswith("# HELP")]) == 5
    assert all('context="a"' in line or 'context="b"' in line for line in samples)
    assert 'dindcheck_mode_usable{cluster="https://b.example:6443",context="b",pool="",mode="dind"} 0' in samples
    assert 'dindcheck_run_duration_seconds{cluster="https://a.example:6443",context="a",pool=""} 84.25' in samples


def test_prometheus_gives_an_unprobed_cluster_every_mode_at_zero_and_pools_their_own_label() -> None:
    text = prometheus.render_prometheus(build_fleet_report(with_pools(unprobed=(Z,))).json)

    assert 'dindcheck_mode_usable{cluster="https://z.example:6443",context="z",pool="",mode="dind"} 0' in text
    assert 'context="p",pool="ci",check="docker-run",status="fail"} 1' in text


def test_prometheus_of_a_single_cluster_has_no_context_label() -> None:
    assert "context=" not in prometheus.render_prometheus(reports.build_report(permissive()).json)


# --- the config to paste ---


def test_show_on_a_fleet_prints_the_spec_proven_on_one_cluster_and_says_so() -> None:
    report = build_fleet_report(a_and_b())
    shown = paste.show(report, paste.RECOMMENDED)

    assert "# Proven on cluster a (its placement is that cluster's). Each other cluster's own spec:" in shown.yaml
    assert "# cluster b: the same" in shown.yaml
    assert paste.show(report, "dind").yaml == ""
    assert paste.show(report, "dind").note.startswith("dind is not usable (blocked by privileged-admission")
    lines = reports.render_terminal(report)
    assert any(line.startswith("config to paste (buildkit-rootless;") for line in lines)


def test_config_too_long_for_the_terminal_is_one_line_in_a_fleet_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paste, "FITS_LINES", 20)
    lines = reports.render_terminal(build_fleet_report(a_and_b()))
    assert any("too long to print here" in line for line in lines)
    assert len(lines) < 100


def test_config_dir_of_a_fleet_has_each_clusters_own_files(tmp_path: Path) -> None:
    arn = "arn:aws:eks:eu-west-1:123456789012:cluster/ci"
    run = fleet(("a", on(SERVER_A, permissive())), (arn, on(SERVER_B, deny_privileged())))
    report = build_fleet_report(run)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kaniko.yaml").write_text("stale\n", encoding="utf-8")

    written, removed = paste.write_config_dir(report, tmp_path)

    safe = "arn_aws_eks_eu-west-1_123456789012_cluster_ci"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", safe]
    assert removed == ("a/kaniko.yaml",)
    for directory, cluster in (("a", report.clusters[0]), (safe, report.clusters[1])):
        files = paste.config_files(cluster.report)
        assert {f"{directory}/{name}" for name in files} <= set(written)
        for name, text in files.items():
            assert (tmp_path / directory / name).read_text(encoding="utf-8") == text
    assert (tmp_path / "a" / "dind.yaml").is_file()
    assert not (tmp_path / safe / "dind.yaml").exists()


def test_two_contexts_that_come_out_the_same_get_their_own_directories() -> None:
    run = fleet(("x/y", on(SERVER_A, permissive())), ("x:y", on(SERVER_B, permissive())))
    assert list(paste.context_dirs(build_fleet_report(run))) == ["x_y", "x_y-2"]


# --- Markdown ---


def test_the_markdown_report_has_the_matrices_then_each_cluster_folded() -> None:
    report = build_fleet_report(a_and_b())
    document = reports.render_markdown(report)

    assert document.startswith("# dindcheck compatibility report: a fleet of clusters\n")
    assert "| `a` | ✅ yes | ❌ no | ❌ no | ✅ yes | ❌ no | ❌ no |" in document
    assert "| **Every cluster** | ✅ yes | ❌ no | ❌ no | ❌ no | ❌ no | ❌ no |" in document
    assert "| `privileged-admission` | ✅ pass | ❌ fail |" in document
    assert document.count("<summary>The report of cluster ") == 2
    own = reports.render_markdown(report.clusters[0].report)
    assert "\n".join(markdown.demoted(own)) in document
    assert "\n## dindcheck compatibility report\n" in document


def test_demoted_headings_leave_code_blocks_alone() -> None:
    document = "# Title\n\n````yaml\n# a YAML comment\n```\n# still inside\n````\n## Section\n"
    assert markdown.demoted(document) == [
        "## Title",
        "",
        "````yaml",
        "# a YAML comment",
        "```",
        "# still inside",
        "````",
        "### Section",
    ]


def test_the_readme_fleet_example_is_what_the_renderer_writes() -> None:
    """README's fleet excerpt: every line, in order, from this fleet's Markdown ('…' marks a cut)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    excerpt = re.search(r"<!-- fleet-example -->\n```markdown\n(.*?)\n```", readme, re.DOTALL)
    assert excerpt is not None
    run = fleet(
        ("prod-eu", on("https://prod-eu.example:6443", permissive())),
        ("ci-locked", on("https://ci-locked.example:6443", deny_privileged())),
        required_mode=Mode.DIND,
    )
    rendered = reports.render_markdown(build_fleet_report(run)).splitlines()
    position = 0
    for line in excerpt.group(1).splitlines():
        if line in {"", "…"}:
            continue
        position = rendered.index(line, position) + 1
