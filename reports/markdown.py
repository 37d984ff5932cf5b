"""The Markdown report: a PR comment or GitHub step summary a platform team can act on without the JSON.

The headline answers "what do we use?"; details sit in <details> blocks so the comment stays short.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from typing import TYPE_CHECKING

from probes.model import BASELINE_SELINUX_TYPES, Mode, NodeInfo, Status, Verdict, summarize_unprobed
from reports import changes
from reports.json_report import plain
from reports.snippets import SECURITY_COST, TEKTON_SNIPPETS
from reports.terminal import describe_placement, node_security, proved_nothing_line, selinux_type_line

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from reports.fleet import FleetReport
    from reports.recommend import Recommendation
    from reports.report import PoolReport, Report

STATUS_EMOJI: Mapping[Status | None, str] = {
    Status.PASS: "✅",
    Status.FAIL: "❌",
    Status.INCONCLUSIVE: "❔",
    Status.SKIPPED: "⏭️",
    None: "⚪",
}

SNIPPET_TITLES: Mapping[str, str] = {
    "skypilot": "SkyPilot (`~/.sky/config.yaml`)",
    Mode.DIND.value: "Docker-in-Docker sidecar (pod spec)",
    Mode.BUILDKIT_ROOTLESS.value: "Rootless BuildKit sidecar (pod spec)",
    Mode.KANIKO.value: "Kaniko executor (pod spec)",
    Mode.BUILDPACKS.value: "Cloud Native Buildpacks creator, from source (pod spec)",
    Mode.SYSBOX.value: "Sysbox (pod spec)",
    "gitlab": "GitLab CI, Kubernetes executor (`.gitlab-ci.yml`: docker:dind service over TLS, as tested)",
    Mode.HOST_SOCKET.value: "Host Docker socket (pod spec, discouraged)",
    TEKTON_SNIPPETS[Mode.KANIKO]: "Tekton: Kaniko executor as a Task step, and its TaskRun (`tekton.dev/v1`)",
    TEKTON_SNIPPETS[Mode.BUILDPACKS]: "Tekton: CNB creator as a Task step, and its TaskRun (`tekton.dev/v1`)",
}

PSA_LABEL_PREFIX = "pod-security.kubernetes.io/"

SNIPPETS_EVERY_POOL_NOTE = (
    "For every pool: each pod spec below was proven on the pool that Why names; Why and the comments above each spec "
    "say what every other pool's own spec differs in (placement, layout, images, remedies, ...), and each pool's own "
    "are in its section."
)


def text(value: str) -> str:
    """Probe output is not Markdown: keep '<none>' and friends visible instead of swallowed as HTML tags."""
    return html.escape(" ".join(value.split()), quote=False)


def cell(value: str) -> str:
    """A table cell: one line, pipes escaped."""
    return text(value).replace("|", "\\|")


def fenced(body: str, language: str) -> list[str]:
    """A code block whose fence is longer than any backtick run inside it, so evidence cannot break out."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", body.rstrip("\n"), fence]


def _status_word(verdict: Verdict | None) -> str:
    return "not run" if verdict is None else verdict.status.value


def _required_mode(report: Report, required: Mode) -> str:
    if report.is_usable(required):
        return f"**Required mode `{required.value}`:** usable ✅"
    pools = ", ".join(f"`{text(name)}`" for name in report.unusable_pools_in_words(required))
    return f"**Required mode `{required.value}`:** NOT usable ❌" + (f" on pool(s) {pools}" if pools else "")


def _answers(recommendation: Recommendation, every: str) -> str:
    """The headline's three answers; every: where they hold ('', ' on every pool', ' on every cluster')."""
    return (
        f"**Full Docker (docker run){every}:** `{recommendation.full_docker.value}` · "
        f"**Build only (build + push){every}:** `{recommendation.build_only.value}` · "
        f"**From source, no Dockerfile{every}:** `{recommendation.from_source.value}`"
    )


def _headline(report: Report) -> list[str]:
    recommendation = report.recommendation
    run = report.run
    every = " on every pool" if report.pools else ""
    lines = [
        "# dindcheck compatibility report",
        "",
        _answers(recommendation, every),
        "",
    ]
    if ran_as := selinux_type_line(report):
        lines += [f"_{text(ran_as[0].upper() + ran_as[1:])}._", ""]
    if run.required_mode is not None:
        lines += [_required_mode(report, run.required_mode), ""]
    cluster = run.cluster
    pools = f" in {len(report.pools)} pool(s) by label `{text(run.pool_label)}`" if report.pools else ""
    lines.append(
        f"Cluster `{text(cluster.server) or 'unknown'}`, Kubernetes {text(cluster.version) or 'unknown'}, "
        f"{len(cluster.nodes)} node(s){pools}; generated {text(run.generated_at)} in {run.total_s:.1f}s.",
    )
    if run.throttled is not None:
        lines += ["", text(run.throttled.describe()) + "."]
    lines += ["", text(proved_nothing_line(report)) + "."]
    return lines


def _checks(report: Report) -> list[str]:
    lines = ["", "## Checks", "", "| | Check | Status | Duration | Summary |", "|---|---|---|---|---|"]
    for check_id, verdict in report.check_rows():
        emoji = STATUS_EMOJI[None if verdict is None else verdict.status]
        duration = "" if verdict is None else f"{verdict.duration_s:.1f}s"
        summary = "deselected or not collected" if verdict is None else cell(verdict.summary)
        lines.append(f"| {emoji} | `{check_id}` | {_status_word(verdict)} | {duration} | {summary} |")
    return lines


def _usable_word(usable: bool) -> str:
    return "✅ yes" if usable else "❌ no"


def _why(report: Report | FleetReport) -> list[str]:
    return ["", "### Why", "", *(f"- {text(reason)}" for reason in report.recommendation.reasons)]


def _modes(report: Report) -> list[str]:
    lines = ["", "## Modes", "", "| Mode | Usable | Blocked by | Warnings |", "|---|---|---|---|"]
    for assessment in report.assessments:
        blocked = ", ".join(f"`{check_id}`" for check_id in assessment.blocked_by)
        warnings = "<br>".join(cell(warning) for warning in assessment.warnings)
        lines.append(f"| `{assessment.mode.value}` | {_usable_word(assessment.usable)} | {blocked} | {warnings} |")
    return lines + _why(report)


def _pool_header(report: Report) -> str:
    return " | ".join(f"`{cell(pool.name)}`" for pool in report.pools)


def _pools(report: Report) -> list[str]:
    """Each pool's probed node, why that one, and what the pool would get on its own."""
    lines = [
        "",
        "## Node pools",
        "",
        f"By label `{text(report.run.pool_label)}`; the probes ran on one node per pool.",
        "",
        "| Pool | Probed node | Chosen because | Ready nodes | Full Docker | Build only |",
        "|---|---|---|---|---|---|",
    ]
    for pool in report.pools:
        found = pool.report.recommendation
        lines.append(
            f"| `{cell(pool.name)}` | `{cell(pool.pool.node)}` | {cell(pool.pool.chosen_because)} | "
            f"{len(pool.pool.nodes)} | `{found.full_docker.value}` | `{found.build_only.value}` |"
        )
    summary = summarize_unprobed(report.run.unprobed_pools)
    if summary:
        return [*lines, "", f"**{text(summary)}**. No mode is proven there, so none is usable on every pool."]
    for unprobed in report.run.unprobed_pools:
        nodes = ", ".join(f"`{text(name)}`" for name in unprobed.nodes)
        said = f"**Pool `{text(unprobed.name)}` NOT PROBED** (node(s) {nodes}): {text(unprobed.reason)}."
        lines += ["", f"{said} No mode is proven there, so none is usable on every pool."]
    return lines


def _check_matrix_table(
    title: str, labels: Sequence[str], matrix: Sequence[tuple[str, tuple[Verdict | None, ...]]]
) -> list[str]:
    """A check by part table (pools, clusters): a row per check, a status cell per part."""
    header = " | ".join(f"`{cell(label)}`" for label in labels)
    lines = ["", title, "", f"| Check | {header} |", "|---" * (len(labels) + 1) + "|"]
    for check_id, cells in matrix:
        statuses = " | ".join(
            f"{STATUS_EMOJI[None if verdict is None else verdict.status]} {_status_word(verdict)}" for verdict in cells
        )
        lines.append(f"| `{check_id}` | {statuses} |")
    return lines


def _check_matrix(report: Report) -> list[str]:
    labels = [pool.name for pool in report.pools]
    return _check_matrix_table("## Checks by pool", labels, report.check_matrix())


def _modes_matrix(report: Report) -> list[str]:
    columns = "|---" * (len(report.pools) + 3) + "|"
    lines = ["", "## Modes by pool", "", f"| Mode | {_pool_header(report)} | Every pool | Warnings |", columns]
    usable = [{a.mode: a.usable for a in pool.report.assessments} for pool in report.pools]
    for assessment in report.assessments:
        cells = " | ".join(_usable_word(by_mode[assessment.mode]) for by_mode in usable)
        warnings = "<br>".join(cell(warning) for warning in assessment.warnings)
        lines.append(f"| `{assessment.mode.value}` | {cells} | {_usable_word(assessment.usable)} | {warnings} |")
    return lines + _why(report)


def _details(report: Report, title: str = "## Details of checks that did not pass") -> list[str]:
    failing = [
        verdict for _, verdict in report.check_rows() if verdict is not None and verdict.status is not Status.PASS
    ]
    if not failing:
        return []
    lines = ["", title]
    for verdict in failing:
        emoji = STATUS_EMOJI[verdict.status]
        lines += ["", "<details>", f"<summary>{emoji} {verdict.id}: {text(verdict.summary)}</summary>", ""]
        if verdict.remediation:
            lines += [f"**Remediation:** {text(verdict.remediation)}", ""]
        evidence = json.dumps(plain(verdict.evidence), ensure_ascii=False, indent=2)
        lines += ["**Evidence:**", "", *fenced(evidence, "json"), "", "</details>"]
    return lines


def _snippet_blocks(snippets: Mapping[str, str], heading: str) -> list[str]:
    lines: list[str] = []
    for key, snippet in snippets.items():
        lines += ["", f"{heading} {SNIPPET_TITLES.get(key, key)}", "", *fenced(snippet, "yaml")]
    return lines


def _snippets(report: Report) -> list[str]:
    lines = ["", "## Config to paste"]
    if report.pools:
        lines += [
            "",
            SNIPPETS_EVERY_POOL_NOTE,
        ]
    return lines + _snippet_blocks(report.recommendation.snippets, "###")


def _pool_section(pool: PoolReport) -> list[str]:
    """One pool: where it was probed, what it gets, its checks that did not pass, and its own config (folded)."""
    found = pool.report.recommendation
    node = f"Probed on `{text(pool.pool.node)}` ({text(pool.pool.chosen_because)})"
    others = [name for name in pool.pool.nodes if name != pool.pool.node]
    if others:
        node += f"; its other Ready node(s): {', '.join(f'`{text(name)}`' for name in others)}"
    lines = ["", f"## Pool `{text(pool.name)}`", "", node + "."]
    placement = describe_placement(pool.pool.placement)
    if placement:
        lines += ["", f"Placement: {text(placement)}."]
    lines += [
        "",
        (
            f"**Full Docker (docker run):** `{found.full_docker.value}` · "
            f"**Build only (build + push):** `{found.build_only.value}`"
        ),
    ]
    lines += _details(pool.report, f"### Checks that did not pass on `{text(pool.name)}`")
    lines += ["", "<details>", f"<summary>Config to paste for pool {text(pool.name)}</summary>"]
    return [*lines, *_snippet_blocks(found.snippets, "####"), "", "</details>"]


def _security_costs(report: Report) -> list[str]:
    lines = ["", "## Security cost of each mode", ""]
    for assessment in report.assessments:
        cost = SECURITY_COST.get(assessment.mode)
        if cost:
            lines.append(f"- **{assessment.mode.value}**: {cost}")
    lines.extend(
        f"- **SELinux type `{text(selinux_type)}` (--selinux-type)**: every probe pod, so every config above, "
        f"ran as `{text(selinux_type)}` instead of the runtime's confined `container_t`. The costs above hold "
        "and add SELinux's: `spc_t` is not confined by SELinux at all, and Pod Security baseline refuses any "
        f"type but {', '.join(f'`{kind}`' for kind in BASELINE_SELINUX_TYPES)}."
        for selinux_type in report.selinux_types()
    )
    return lines


def _notes(report: Report) -> list[str]:
    cluster = report.run.cluster
    notes: list[str] = []
    psa_labels = {key: value for key, value in cluster.namespace_labels.items() if key.startswith(PSA_LABEL_PREFIX)}
    if psa_labels:
        labels = ", ".join(f"`{key}={value}`" for key, value in sorted(psa_labels.items()))
        notes.append(f"Pod Security labels on the probe namespace `{text(cluster.namespace)}`: {labels}.")
    notes += [text(note) for note in cluster.notes]
    if cluster.probed_nodes or cluster.placement.targeted:
        probed = ", ".join(f"`{text(name)}`" for name in cluster.probed_nodes) or "none recorded"
        placement = describe_placement(cluster.placement)
        notes.append(f"Probed node(s): {probed}" + (f" (placement: {text(placement)})" if placement else "") + ".")
    if security := node_security(cluster):
        said = "; ".join(f"`{text(name)}`: {text(described)}" for name, described in security)
        notes.append(f"Node security, as the lsm check read it from inside a pod: {said}.")
    if cluster.nodes:
        notes.append(_nodes_note(cluster.nodes))
    if cluster.images:
        images = "; ".join(
            f"{text(role)} `{text(image.ref)}`" + (f" (`{text(image.digest)}`)" if image.digest else "")
            for role, image in cluster.images.items()
        )
        notes.append(f"Images used, with the digest the node resolved: {images}.")
    if not notes:
        return []
    return ["", "## Notes", "", *[f"- {note}" for note in notes]]


NODES_NAMED = 10
"""Up to this many nodes, each is named with its runtime and kernel; beyond it, nodes are counted by kind."""


def _nodes_note(nodes: tuple[NodeInfo, ...]) -> str:
    """Each node's runtime, kernel, OS and architecture; on a big cluster, how many nodes of each kind.

    A note of 5,000 names would dwarf the report; the JSON report's cluster.nodes keeps each node.
    """

    def kind(node: NodeInfo) -> str:
        return f"{node.container_runtime}, kernel {node.kernel}, {node.os_image}, {node.architecture}"

    if len(nodes) <= NODES_NAMED:
        return "Nodes: " + "; ".join(text(f"{node.name} ({kind(node)})") for node in nodes) + "."
    kinds = Counter(kind(node) for node in nodes)
    counted = "; ".join(text(f"{count} x ({described})") for described, count in kinds.most_common())
    return f"Nodes: {len(nodes)} ({counted}; each node: the JSON report's cluster.nodes)."


def render(report: Report) -> str:
    """The whole Markdown document, ending with a newline."""
    lines = [
        *_headline(report),
        *([] if report.changes is None else ["", changes.changes_markdown(report.changes).rstrip("\n")]),
        *([] if report.since_pinned is None else ["", changes.pinned_markdown(report.since_pinned).rstrip("\n")]),
    ]
    if report.pools:
        lines += [*_pools(report), *_check_matrix(report), *_modes_matrix(report)]
        lines += [line for pool in report.pools for line in _pool_section(pool)]
    else:
        lines += [*_checks(report), *_modes(report), *_details(report)]
    lines += [*_snippets(report), *_security_costs(report), *_notes(report)]
    return "\n".join(lines) + "\n"


SNIPPETS_EVERY_CLUSTER_NOTE = (
    "For every cluster: each pod spec below was proven on the cluster that Why names; Why and the comments above each "
    "spec say what every other cluster's own spec differs in, and each cluster's own are in its section below."
)
FENCE = re.compile(r"^(`{3,})")


def demoted(document: str, levels: int = 1) -> list[str]:
    """A Markdown document's lines with every heading levels deeper, to nest it in another; code blocks untouched.

    A YAML comment in a fenced pod spec starts with '#' too: only lines outside fences are headings.
    """
    lines = []
    fence = ""
    for line in document.rstrip("\n").split("\n"):
        opened = FENCE.match(line)
        if fence:
            if line.strip() == fence:
                fence = ""
        elif opened:
            fence = opened.group(1)
        elif line.startswith("#"):
            lines.append("#" * levels + line)
            continue
        lines.append(line)
    return lines


def _fleet_required_mode(report: FleetReport, required: Mode) -> str:
    if report.is_usable(required):
        return f"**Required mode `{required.value}`:** usable on every cluster ✅"
    clusters = ", ".join(f"`{text(name)}`" for name in report.unusable_clusters(required))
    return f"**Required mode `{required.value}`:** NOT usable ❌ on cluster(s) {clusters}"


def _fleet_headline(report: FleetReport) -> list[str]:
    recommendation = report.recommendation
    fleet = report.fleet
    lines = [
        "# dindcheck compatibility report: a fleet of clusters",
        "",
        _answers(recommendation, " on every cluster"),
        "",
    ]
    if report.required_mode is not None:
        lines += [_fleet_required_mode(report, report.required_mode), ""]
    count = len(report.clusters) + len(report.unprobed)
    contexts = ", ".join(f"`{text(cluster.context)}`" for cluster in report.clusters)
    lines.append(
        f"{count} cluster(s), {len(report.clusters)} probed ({contexts or 'none'}); "
        f"generated {text(fleet.generated_at)} in {fleet.total_s:.1f}s."
    )
    for unprobed in report.unprobed:
        server = f" (`{text(unprobed.server)}`)" if unprobed.server else ""
        lines += [
            "",
            (
                f"**Cluster `{text(unprobed.context)}`{server} NOT PROBED**: {text(unprobed.reason)}. "
                "No mode is proven there, so none is usable on every cluster."
            ),
        ]
    lines += [f"- {text(note)}" for note in report.notes]
    lines += [f"- **Regressed:** {text(loss)}" for loss in report.unprobed_losses]
    lines += ["", text(proved_nothing_line(report)) + "."]
    return lines


def _fleet_modes_matrix(report: FleetReport) -> list[str]:
    modes = [assessment.mode for assessment in report.assessments]
    header = " | ".join(f"`{mode.value}`" for mode in modes)
    lines = ["", "## Modes by cluster", "", f"| Cluster | {header} |", "|---" * (len(modes) + 1) + "|"]
    for cluster in report.clusters:
        usable = {a.mode: a.usable for a in cluster.report.assessments}
        lines.append(f"| `{cell(cluster.context)}` | {' | '.join(_usable_word(usable[mode]) for mode in modes)} |")
    for unprobed in report.unprobed:
        not_probed = " | ".join("⚪ not probed" for _ in modes)
        lines.append(f"| `{cell(unprobed.context)}` (NOT PROBED: {cell(unprobed.reason)}) | {not_probed} |")
    every = " | ".join(_usable_word(assessment.usable) for assessment in report.assessments)
    lines.append(f"| **Every cluster** | {every} |")
    return lines


def _fleet_check_matrix(report: FleetReport) -> list[str]:
    labels = [label for label, _ in report.columns()]
    return _check_matrix_table("## Checks by cluster", labels, report.check_matrix())


def _cluster_section(context: str, report: Report) -> list[str]:
    """One cluster's own Markdown report, folded, its headings one level deeper."""
    server = report.run.cluster.server or "unknown server"
    found = report.recommendation
    return [
        "",
        f"## Cluster `{text(context)}`",
        "",
        f"`{text(server)}`: **Full Docker:** `{found.full_docker.value}` · **Build only:** `{found.build_only.value}`",
        "",
        "<details>",
        f"<summary>The report of cluster {text(context)}</summary>",
        "",
        *demoted(render(report)),
        "",
        "</details>",
    ]


def render_fleet(report: FleetReport) -> str:
    """The Markdown document of a fleet run: what holds on every cluster, then each cluster's own report, folded."""
    lines = [*_fleet_headline(report), *_fleet_modes_matrix(report), *_why(report), *_fleet_check_matrix(report)]
    lines += ["", "## Config to paste", "", SNIPPETS_EVERY_CLUSTER_NOTE]
    lines += _snippet_blocks(report.recommendation.snippets, "###")
    for cluster in report.clusters:
        lines += _cluster_section(cluster.context, cluster.report)
    return "\n".join(lines) + "\n"
