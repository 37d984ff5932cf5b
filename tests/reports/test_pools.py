"""Node pools (--each-pool): the top level holds what is true on every pool, each pool keeps its own answer.

The run is two EKS node groups: default (containerd 1.6, Amazon Linux 2) proves everything the permissive testbed
does; the tainted ci group (containerd 2.1, AL2023) has a FUSE-backed cache class and no iptables nat for nested
docker run, so dind works on default only and rootless BuildKit is what builds everywhere.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import yaml

import reports
from probes import specs
from probes.definitions import catalog
from probes.model import Mode, Placement, RunResult, Status, Verdict
from reports import json_report
from reports import snippets as snippets_module
from reports.recommend import ALTERNATIVES_ADVICE, HOST_SOCKET_WARNING
from reports.terminal import SUMMARY_WIDTH, describe_placement, shorten
from tests.reports.conftest import (
    CHOSEN_BECAUSE,
    CI_NODES,
    CLUSTER,
    DEFAULT_NODES,
    FUSE_SUMMARY,
    IPTABLES_SUMMARY,
    POOL_LABEL,
    ci_pool_verdicts,
    fuse_cache,
    make_pool,
    make_pools_run,
    make_verdict,
    permissive,
    psa_baseline,
    two_pools,
)
from tests.reports.conftest import tested_specs as recorded_specs

GOLDEN = Path(__file__).parent / "golden"
README = Path(__file__).parents[2] / "README.md"
CHECK_IDS = tuple(definition.id for definition in catalog())
POOL_KEYS = ["pool", "node", "chosen_because", "nodes", "placement", "checks", "modes", "recommendation", "timing"]


def built(run: RunResult | None = None) -> reports.Report:
    return reports.build_report(run if run is not None else two_pools(required_mode=Mode.DIND))


# --- the Report API the plugin calls ---


def test_a_mode_is_usable_only_when_usable_on_every_pool() -> None:
    report = built()
    assert not report.is_usable(Mode.DIND)
    assert report.unusable_pools(Mode.DIND) == ("ci",)
    assert report.is_usable(Mode.BUILDKIT_ROOTLESS)
    assert report.unusable_pools(Mode.BUILDKIT_ROOTLESS) == ()
    assert report.unusable_pools(Mode.SYSBOX) == ("default", "ci")
    assert report.is_usable(Mode.NONE)
    assert report.unusable_pools(Mode.NONE) == ()


def test_a_single_pool_report_names_no_pools() -> None:
    report = reports.build_report(permissive())
    assert report.pools == ()
    assert report.unusable_pools(Mode.SYSBOX) == ()
    assert not report.is_usable(Mode.SYSBOX)


def test_each_pool_has_its_own_report_as_if_only_it_was_probed() -> None:
    default, ci = built().pools
    assert (default.name, ci.name) == ("default", "ci")
    assert (default.report.recommendation.full_docker, ci.report.recommendation.full_docker) == (Mode.DIND, Mode.NONE)
    assert ci.report.run.cluster.probed_nodes == (CI_NODES[0],)
    assert ci.report.run.cluster.placement.tolerations[0]["key"] == "dedicated"
    assert ci.report.changes is None
    assert ci.report.pools == ()


def test_verdicts_check_rows_and_matrix_name_the_pool() -> None:
    report = built()
    labels = [label for label, _ in report.verdicts()]
    assert len(labels) == 16
    assert labels[:2] == ["default/privileged-admission", "default/overlay-cache"]
    assert "ci/docker-run" in labels
    rows = dict(report.check_rows())
    assert rows["ci/kaniko"] is None
    assert rows["ci/overlay-cache"] is not None
    assert rows["ci/overlay-cache"].summary == FUSE_SUMMARY
    matrix = dict(report.check_matrix())
    assert tuple(matrix) == CHECK_IDS
    assert [None if v is None else v.status for v in matrix["overlay-cache"]] == [Status.PASS, Status.FAIL]
    assert matrix["kaniko"] == (None, None)


def test_proved_nothing_counts_every_pool_and_names_it() -> None:
    default = permissive().verdicts
    ci = tuple(
        make_verdict("lsm", Status.INCONCLUSIVE, "could not exec in the pod: connection reset") if v.id == "lsm" else v
        for v in ci_pool_verdicts()
    )
    report = built(make_pools_run(make_pool("default", DEFAULT_NODES, default), make_pool("ci", CI_NODES, ci)))
    assert [(label, v.status) for label, v in report.proved_nothing()] == [("ci/lsm", Status.INCONCLUSIVE)]
    last = reports.render_terminal(report)[-1]
    assert last == (
        "proved nothing: 1 of 16 checks (1 inconclusive, 0 skipped): "
        "ci/lsm inconclusive: could not exec in the pod: connection reset"
    )


# --- the every-pool assessment and recommendation ---


def test_blockers_and_causes_name_the_pool_they_hold_on() -> None:
    by_mode = {assessment.mode: assessment for assessment in built().assessments}
    dind = by_mode[Mode.DIND]
    assert (dind.usable, dind.blocked_by) == (False, ("docker-run",))
    assert dind.causes == (f"pool ci: docker-run failed: {IPTABLES_SUMMARY}",)
    buildkit = by_mode[Mode.BUILDKIT_ROOTLESS]
    assert buildkit.usable
    (warning,) = buildkit.warnings
    assert warning == (
        "pool ci: overlay on the cache class fuse-cache failed: overlayfs: upper fs does not support tmpfile; "
        "keep /home/user/.local/share/buildkit on an emptyDir on node disk or use block storage"
    )
    # what every pool says is said once, without a pool
    assert by_mode[Mode.HOST_SOCKET].warnings == (HOST_SOCKET_WARNING,)
    assert by_mode[Mode.SYSBOX].causes == ('sysbox failed: no RuntimeClass "sysbox-runc": sysbox is not installed',)
    assert by_mode[Mode.SYSBOX].blocked_by == ("sysbox",)


def test_the_recommendation_is_the_most_secure_mode_usable_on_every_pool() -> None:
    recommendation = built().recommendation
    assert (recommendation.full_docker, recommendation.build_only) == (Mode.NONE, Mode.BUILDKIT_ROOTLESS)
    reasons = recommendation.reasons
    assert reasons[:4] == (
        "full_docker: none: no mode among (sysbox, dind, host-socket) is usable on every pool",
        "full_docker per pool: default dind, ci none",
        (
            "build_only: buildkit-rootless: the most secure mode usable on every pool "
            "(buildkit-rootless, kaniko, sysbox, dind, host-socket)"
        ),
        "build_only per pool: default buildkit-rootless, ci buildkit-rootless",
    )
    assert f"dind not usable: pool ci: docker-run failed: {IPTABLES_SUMMARY}" in reasons
    assert ALTERNATIVES_ADVICE not in reasons
    assert reasons[-1] == (
        "config to paste for buildkit-rootless: the pod spec proven on pool default; pool ci: differs in placement "
        "(nodeSelector, tolerations); each pool's own spec is in its block"
    )


def comments(snippet: str) -> list[str]:
    return [line[2:] for line in snippet.splitlines() if line.startswith("# ")]


def test_snippets_are_a_proven_pool_spec_and_the_cache_advice_that_holds_everywhere() -> None:
    report = built()
    snippets = report.recommendation.snippets
    assert set(snippets) == {"skypilot", "buildkit-rootless"}
    default = report.pools[0].report.recommendation.snippets["buildkit-rootless"]
    assert yaml.safe_load(snippets["buildkit-rootless"]) == yaml.safe_load(default)
    assert yaml.safe_load(default)["spec"]["nodeSelector"] == {POOL_LABEL: "default"}
    said = comments(snippets["buildkit-rootless"])
    assert said[-2:] == [
        "Proven on pool default (its placement is that pool's). Each other pool's own spec:",
        "pool ci: differs in placement (nodeSelector, tolerations)",
    ]
    assert yaml.safe_load(snippets["skypilot"]) == {"kubernetes": {"enable_docker": "BUILD"}}
    # default's cache class worked, ci's did not: the advice for every pool is the failing one
    assert "overlay FAILED on StorageClass fuse-cache" in snippets["skypilot"]


def test_pools_that_agree_get_their_common_answer() -> None:
    run = make_pools_run(
        make_pool("default", DEFAULT_NODES, permissive().verdicts),
        make_pool("ci", CI_NODES, fuse_cache().verdicts),
    )
    report = built(run)
    recommendation = report.recommendation
    assert (recommendation.full_docker, recommendation.build_only) == (Mode.DIND, Mode.BUILDKIT_ROOTLESS)
    assert set(recommendation.snippets) == {"skypilot", "dind", "buildkit-rootless"}
    assert report.is_usable(Mode.DIND)


def with_mtu_remedy(verdicts: tuple[Verdict, ...]) -> tuple[Verdict, ...]:
    """docker-run on a pool whose pod network needs dockerd --mtu: the remedy was proven there, not elsewhere."""

    def remedied(verdict: Verdict) -> Verdict:
        if verdict.id != "docker-run":
            return verdict
        (spec,) = verdict.facts.specs
        found = specs.record_remedied(
            Mode.DIND, spec.layout, dict(spec.spec), proven=True, remedies=(f"{MTU_FLAG}: PROVEN by docker-run",)
        )
        return replace(verdict, facts=replace(verdict.facts, specs=(replace(found, check=spec.check),)))

    return tuple(remedied(verdict) for verdict in verdicts)


MTU_FLAG = "--mtu=1400"


def test_each_pool_says_what_its_own_spec_differs_in_beyond_placement() -> None:
    """The top-level DinD pod is default's; ci's pod network needed --mtu, proven there: said, not implied away."""
    run = make_pools_run(
        make_pool("default", DEFAULT_NODES, permissive().verdicts),
        make_pool("ci", CI_NODES, with_mtu_remedy(fuse_cache().verdicts)),
        make_pool("gpu", ("ip-10-0-3-5.ec2.internal",), permissive().verdicts),
    )
    recommendation = built(run).recommendation
    assert recommendation.full_docker is Mode.DIND
    (reason,) = [reason for reason in recommendation.reasons if reason.startswith("config to paste for dind")]
    assert reason == (
        "config to paste for dind: the pod spec proven on pool default; pool ci: differs in placement "
        f"(nodeSelector, tolerations), proven remedies ({MTU_FLAG}); pool gpu: differs in placement (nodeSelector); "
        "each pool's own spec is in its block"
    )
    said = comments(recommendation.snippets["dind"])
    assert f"pool ci: differs in placement (nodeSelector, tolerations), proven remedies ({MTU_FLAG})" in said
    assert "pool gpu: differs in placement (nodeSelector)" in said


def test_the_differences_between_two_pools_specs_are_named_part_by_part() -> None:
    """Layout, images, containers, pod fields and annotations, beside placement and remedies."""
    (classic,) = recorded_specs("docker-run", Status.PASS)
    same = replace(classic, spec=copy.deepcopy(dict(classic.spec)))
    assert snippets_module.differences(Mode.DIND, (classic,), (same,)) == ()
    spec = copy.deepcopy(dict(classic.spec))
    spec["containers"][0]["image"] = "mirror/docker:28-dind"
    spec["containers"][1]["env"] = []
    spec["runtimeClassName"] = "kata"
    other = replace(classic, spec=spec, annotations={"a": "b"})
    assert snippets_module.differences(Mode.DIND, (classic,), (other,)) == (
        "images (dind mirror/docker:28-dind)",
        "containers (job)",
        "pod fields (runtimeClassName)",
        "annotations",
    )
    native = replace(classic, layout="native")
    assert snippets_module.differences(Mode.DIND, (classic,), (native,)) == ("layout (native, not classic)",)
    assert snippets_module.differences(Mode.DIND, (classic,), ()) == ("no proven spec",)


def test_when_only_some_pools_build_the_advice_names_them() -> None:
    run = make_pools_run(
        make_pool("default", DEFAULT_NODES, permissive().verdicts),
        make_pool("locked", CI_NODES, psa_baseline().verdicts),
    )
    reasons = built(run).recommendation.reasons
    assert ALTERNATIVES_ADVICE not in reasons
    assert (
        "no mode builds on every pool: build only on pool(s) default (buildkit-rootless), or fix the others "
        "(see each pool's block)"
    ) in reasons
    nowhere = make_pools_run(
        make_pool("a", DEFAULT_NODES, psa_baseline().verdicts), make_pool("b", CI_NODES, psa_baseline().verdicts)
    )
    assert ALTERNATIVES_ADVICE in built(nowhere).recommendation.reasons


# --- JSON v1 ---


def test_the_multi_pool_json_validates_and_has_the_pool_blocks() -> None:
    document = built().json
    assert json_report.validate(document) is True
    assert list(document) == [
        "schema",
        "generated_at",
        "cluster",
        "checks",
        "modes",
        "recommendation",
        "timing",
        "pool_label",
        "pools",
        "unprobed_pools",
        "required_mode",
    ]
    assert document["checks"] == []
    assert document["pool_label"] == POOL_LABEL
    assert document["timing"] == {"total_s": 84.25, "checks": {}}
    assert document["required_mode"] == {"mode": "dind", "usable": False, "unusable_pools": ["ci"]}
    assert [mode["id"] for mode in document["modes"] if mode["usable"]] == ["buildkit-rootless"]
    assert document["recommendation"]["full_docker"] == "none"
    default, ci = document["pools"]
    assert list(ci) == POOL_KEYS
    assert ci["pool"] == "ci"
    assert ci["node"] == CI_NODES[0]
    assert ci["chosen_because"] == CHOSEN_BECAUSE
    assert ci["nodes"] == list(CI_NODES)
    assert ci["placement"] == {
        "node_selector": {POOL_LABEL: "ci"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}],
        "node": "",
    }
    assert {check["id"]: check["status"] for check in ci["checks"]}["docker-run"] == "fail"
    assert {mode["id"]: mode["usable"] for mode in default["modes"]}["dind"] is True
    assert {mode["id"]: mode["usable"] for mode in ci["modes"]}["dind"] is False
    assert ci["recommendation"]["full_docker"] == "none"
    assert default["recommendation"]["full_docker"] == "dind"
    assert ci["timing"] == {"checks": {check["id"]: 1.5 for check in ci["checks"]}}
    assert document["cluster"]["probed_nodes"] == [DEFAULT_NODES[0], CI_NODES[0]]


def test_the_pool_blocks_are_each_pools_own_report() -> None:
    report = built()
    for pool, block in zip(report.pools, report.json["pools"], strict=True):
        for key in ("checks", "modes", "recommendation"):
            assert block[key] == pool.report.json[key]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("pool_label"),
        lambda d: d["pools"][0].pop("modes"),
        lambda d: d["pools"][1]["checks"][0].update(status="passed"),
        lambda d: d["pools"][0]["placement"].update(node=None),
        lambda d: d["required_mode"].update(unusable_pools="ci"),
        lambda d: d["cluster"].update(probed_nodes="ip-10-0-1-17"),
    ],
)
def test_the_schema_holds_the_pool_blocks_to_the_contract(damage: object) -> None:
    document = copy.deepcopy(built().json)
    damage(document)  # type: ignore[operator]
    with pytest.raises(jsonschema.ValidationError):
        json_report.validate(document)


def test_a_single_pool_report_only_gains_the_two_cluster_keys(profile_run: RunResult) -> None:
    document = reports.build_report(replace(profile_run, required_mode=Mode.DIND)).json
    assert "pools" not in document
    assert "pool_label" not in document
    assert set(document["required_mode"]) == {"mode", "usable"}
    assert list(document["cluster"])[-2:] == ["probed_nodes", "placement"]
    assert document["cluster"]["probed_nodes"] == []
    assert document["cluster"]["placement"] == {"node_selector": {}, "tolerations": [], "node": ""}
    assert document["checks"]
    assert json_report.validate(document)


def test_a_targeted_single_pool_report_records_its_placement() -> None:
    placement = Placement(node_selector={POOL_LABEL: "ci"}, tolerations=({"operator": "Exists"},))
    cluster = replace(CLUSTER, probed_nodes=(CI_NODES[0],), placement=placement)
    document = reports.build_report(replace(permissive(), cluster=cluster)).json
    assert document["cluster"]["placement"]["tolerations"] == [{"operator": "Exists"}]
    assert json_report.validate(document)


# --- terminal ---


def test_terminal_shows_the_pools_the_matrices_and_the_every_pool_answer() -> None:
    lines = reports.render_terminal(built())
    assert lines[1] == f"node pools by label {POOL_LABEL} (probes ran on one node per pool):"
    ci_row = next(line for line in lines if line.startswith("ci "))
    assert ci_row.split() == ["ci", CI_NODES[0], "3", "none", "buildkit-rootless", *CHOSEN_BECAUSE.split()]
    start = next(index for index, line in enumerate(lines) if line.startswith("check "))
    assert lines[start].split() == ["check", "default", "ci"]
    matrix = lines[start + 2 : start + 2 + len(CHECK_IDS)]
    rows = {line.split()[0]: line.split()[1:] for line in matrix}
    assert tuple(rows) == CHECK_IDS
    assert rows["overlay-cache"] == ["pass", "fail"]
    assert rows["docker-run"] == ["pass", "fail"]
    assert rows["kaniko"] == ["not", "run", "not", "run"]
    assert f"  - ci/docker-run: {shorten(IPTABLES_SUMMARY, SUMMARY_WIDTH)}" in lines
    modes = next(line for line in lines if line.startswith("mode "))
    assert modes.split() == ["mode", "default", "ci", "every", "pool", "warnings"]
    dind = next(line for line in lines if line.startswith("dind "))
    assert dind.split()[1:4] == ["yes", "no", "no"]
    assert "full docker (docker run) on every pool: none" in lines
    assert "build only (build + push) on every pool: buildkit-rootless" in lines
    assert "required mode dind: NOT usable on pool(s) ci" in lines
    assert "  - full_docker per pool: default dind, ci none" in lines


def test_terminal_says_where_a_single_pool_run_probed() -> None:
    placement = Placement(
        node_selector={POOL_LABEL: "ci"},
        tolerations=({"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"},),
    )
    cluster = replace(CLUSTER, probed_nodes=(CI_NODES[0],), placement=placement)
    plain = reports.render_terminal(reports.build_report(permissive()))
    targeted = reports.render_terminal(reports.build_report(replace(permissive(), cluster=cluster)))
    assert targeted[1] == (
        f"probed node(s): {CI_NODES[0]} (placement: node selector {POOL_LABEL}=ci; tolerating dedicated=ci:NoSchedule)"
    )
    assert [*targeted[:1], *targeted[2:]] == plain


def test_an_untargeted_single_pool_run_just_names_its_nodes() -> None:
    cluster = replace(CLUSTER, probed_nodes=("testbed-0",))
    lines = reports.render_terminal(reports.build_report(replace(permissive(), cluster=cluster)))
    assert lines[1] == "probed node(s): testbed-0"


@pytest.mark.parametrize(
    ("placement", "said"),
    [
        (Placement(), ""),
        (Placement(node="ci-1"), "node ci-1"),
        (Placement(tolerations=({"operator": "Exists"},)), "tolerating every taint"),
        (
            Placement(tolerations=({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},)),
            "tolerating gpu:NoSchedule",
        ),
        (
            Placement(node_selector={"b": "2", "a": "1"}, tolerations=({"key": "k", "value": "v"},), node="n"),
            "node selector a=1, b=2; tolerating k=v; node n",
        ),
    ],
)
def test_placements_read_as_kubectl_would_write_them(placement: Placement, said: str) -> None:
    assert describe_placement(placement) == said


# --- Markdown ---


def test_multi_pool_markdown_matches_the_golden_file() -> None:
    rendered = reports.render_markdown(built())
    golden = GOLDEN / "two-pools.md"
    if os.environ.get("DINDCHECK_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")


def test_markdown_has_the_matrices_each_pool_and_the_every_pool_answer() -> None:
    text = reports.render_markdown(built())
    assert "**Full Docker (docker run) on every pool:** `none`" in text
    assert "**Required mode `dind`:** NOT usable ❌ on pool(s) `ci`" in text
    assert "| Check | `default` | `ci` |\n|---|---|---|" in text
    assert "| `overlay-cache` | ✅ pass | ❌ fail |" in text
    assert "| `kaniko` | ⚪ not run | ⚪ not run |" in text
    assert "| `dind` | ✅ yes | ❌ no | ❌ no | pool ci: overlay on the cache class fuse-cache" in text
    assert f"| `ci` | `{CI_NODES[0]}` | {CHOSEN_BECAUSE} | 3 | `none` | `buildkit-rootless` |" in text
    ci = text.split("## Pool `ci`")[1].split("## Config to paste")[0]
    assert f"<summary>❌ docker-run: {IPTABLES_SUMMARY}</summary>" in ci
    assert "Placement: node selector eks.amazonaws.com/nodegroup=ci; tolerating dedicated=ci:NoSchedule." in ci
    assert "<summary>Config to paste for pool ci</summary>" in ci
    assert "containerd://1.6.33" in text
    assert "containerd://2.1.3" in text
    assert text.index("## Node pools") < text.index("## Checks by pool") < text.index("## Modes by pool")
    assert text.index("## Pool `default`") < text.index("## Pool `ci`") < text.index("## Config to paste\n")
    assert "## Checks\n" not in text


def test_markdown_notes_where_a_single_pool_run_probed() -> None:
    cluster = replace(CLUSTER, probed_nodes=(CI_NODES[0],), placement=Placement(node=CI_NODES[0]))
    plain = reports.render_markdown(reports.build_report(permissive()))
    targeted = reports.render_markdown(reports.build_report(replace(permissive(), cluster=cluster)))
    note = f"- Probed node(s): `{CI_NODES[0]}` (placement: node {CI_NODES[0]}).\n"
    assert note in targeted
    assert targeted.replace(note, "") == plain


def test_the_readme_example_is_what_the_renderer_writes() -> None:
    """README's node pool excerpt: every line, in order, from the golden two-pool report ('…' marks a cut)."""
    readme = README.read_text(encoding="utf-8")
    excerpt = re.search(r"<!-- node-pools-example -->\n```markdown\n(.*?)\n```", readme, re.DOTALL)
    assert excerpt is not None
    rendered = reports.render_markdown(built()).splitlines()
    position = 0
    for line in excerpt.group(1).splitlines():
        if line in {"", "…"}:
            continue
        position = rendered.index(line, position) + 1
