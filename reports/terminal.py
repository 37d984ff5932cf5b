"""The summary printed at the end of a pytest run: checks, modes, and what to use.

Plain text only (no ANSI): the plugin may colour the status words; CI logs and pipes stay readable either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabulate import tabulate

from probes.model import ClusterInfo, Mode, Placement, Status, Verdict, summarize_unprobed
from reports import changes, paste

if TYPE_CHECKING:
    from collections.abc import Mapping

    from reports.fleet import FleetReport
    from reports.report import Report

SUMMARY_WIDTH = 72
WARNING_WIDTH = 60
TABLE_FORMAT = "simple"
NOT_RUN = "not run"


def shorten(text: str, width: int) -> str:
    """One line of at most width characters: long probe output must not wrap a terminal table."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3].rstrip() + "..."


def _toleration(toleration: Mapping[str, str]) -> str:
    """'dedicated=ci:NoSchedule', 'gpu:NoSchedule' (Exists), 'every taint' (Exists without a key)."""
    key, value, effect = toleration.get("key", ""), toleration.get("value", ""), toleration.get("effect", "")
    tolerated = (key or "every taint") if toleration.get("operator") == "Exists" else f"{key}={value}"
    return f"{tolerated}:{effect}" if effect else tolerated


def describe_placement(placement: Placement) -> str:
    """'node selector pool=ci; tolerating dedicated=ci:NoSchedule; node ci-1', or '' for the default placement."""
    parts = []
    if placement.node_selector:
        parts.append("node selector " + ", ".join(f"{k}={v}" for k, v in sorted(placement.node_selector.items())))
    if placement.tolerations:
        parts.append("tolerating " + ", ".join(_toleration(toleration) for toleration in placement.tolerations))
    if placement.node:
        parts.append(f"node {placement.node}")
    return "; ".join(parts)


def probed_nodes_line(report: Report) -> str:
    """'probed node(s): a, b (placement: ...)', or '' when the run recorded neither nodes nor a placement."""
    cluster = report.run.cluster
    if not cluster.probed_nodes and not cluster.placement.targeted:
        return ""
    line = f"probed node(s): {', '.join(cluster.probed_nodes) or 'none recorded'}"
    placement = describe_placement(cluster.placement)
    return f"{line} (placement: {placement})" if placement else line


NOT_OBSERVED = "not observed"


def node_security(cluster: ClusterInfo) -> list[tuple[str, str]]:
    """Each probed node the API listed, with the cgroup version and LSMs read on it, or 'not observed'.

    A probed node the API did not list (nodes not listed) is left out: the report's note says per-node facts are
    missing, which is truer than 'not observed' for a node the lsm check may have read.
    """
    listed = {node.name: node for node in cluster.nodes}
    return [
        (name, NOT_OBSERVED if (security := listed[name].security) is None else security.describe())
        for name in cluster.probed_nodes
        if name in listed
    ]


def node_security_line(report: Report) -> str:
    """'node security (read by the lsm check): a: cgroup v2, AppArmor (...); b: not observed', or ''."""
    entries = node_security(report.run.cluster)
    if not entries:
        return ""
    return "node security (read by the lsm check): " + "; ".join(f"{name}: {said}" for name, said in entries)


def _pools_table(report: Report) -> list[str]:
    """Each pool's probed node, why that one, and what the pool would get on its own."""
    rows = [
        (
            pool.name,
            pool.pool.node,
            len(pool.pool.nodes),
            pool.report.recommendation.full_docker.value,
            pool.report.recommendation.build_only.value,
            shorten(pool.pool.chosen_because, WARNING_WIDTH),
        )
        for pool in report.pools
    ]
    headers = ("pool", "probed node", "nodes", "full docker", "build only", "node chosen because")
    table = tabulate(rows, headers=headers, tablefmt=TABLE_FORMAT).splitlines()
    summary = summarize_unprobed(report.run.unprobed_pools)
    if summary:
        return [*table, f"{summary}; no mode is proven there"]
    return table + [
        f"pool {pool.name} NOT PROBED (node(s) {', '.join(pool.nodes)}): {pool.reason}; no mode is proven there"
        for pool in report.run.unprobed_pools
    ]


def status_word(verdict: Verdict | None) -> str:
    """A matrix cell: the status, or 'not run'."""
    return NOT_RUN if verdict is None else verdict.status.value


def _check_matrix(report: Report) -> list[str]:
    rows = [(check_id, *map(status_word, cells)) for check_id, cells in report.check_matrix()]
    headers = ("check", *(pool.name for pool in report.pools))
    lines = tabulate(rows, headers=headers, tablefmt=TABLE_FORMAT).splitlines()
    failed = [(label, v) for label, v in report.check_rows() if v is not None and v.status is Status.FAIL]
    if failed:
        lines += ["failed:", *(f"  - {label}: {shorten(v.summary, SUMMARY_WIDTH)}" for label, v in failed)]
    return lines


def _modes_matrix(report: Report) -> list[str]:
    usable = [{a.mode: a.usable for a in pool.report.assessments} for pool in report.pools]
    rows = [
        (
            assessment.mode.value,
            *("yes" if by_mode[assessment.mode] else "no" for by_mode in usable),
            "yes" if assessment.usable else "no",
            _warnings_cell(assessment.warnings),
        )
        for assessment in report.assessments
    ]
    headers = ("mode", *(pool.name for pool in report.pools), "every pool", "warnings")
    return tabulate(rows, headers=headers, tablefmt=TABLE_FORMAT).splitlines()


def _checks_table(report: Report) -> list[str]:
    rows = [
        (check_id, NOT_RUN, "", "")
        if verdict is None
        else (check_id, verdict.status.value, f"{verdict.duration_s:.1f}s", shorten(verdict.summary, SUMMARY_WIDTH))
        for check_id, verdict in report.check_rows()
    ]
    return tabulate(rows, headers=("check", "status", "duration", "summary"), tablefmt=TABLE_FORMAT).splitlines()


def _warnings_cell(warnings: tuple[str, ...]) -> str:
    if not warnings:
        return ""
    more = f" (+{len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return shorten(warnings[0], WARNING_WIDTH - len(more)) + more


def _modes_table(report: Report) -> list[str]:
    rows = [
        (
            assessment.mode.value,
            "yes" if assessment.usable else "no",
            ", ".join(assessment.blocked_by),
            _warnings_cell(assessment.warnings),
        )
        for assessment in report.assessments
    ]
    return tabulate(rows, headers=("mode", "usable", "blocked by", "warnings"), tablefmt=TABLE_FORMAT).splitlines()


def render(report: Report, config_elsewhere: str = "") -> list[str]:
    """The lines to print; the caller owns the terminal (section headers, colours, writing).

    They end with the recommended modes' config (reports.paste), or with where it is (config_elsewhere: the run
    already printed or wrote it), then the proved-nothing line.
    """
    cluster = report.run.cluster
    recommendation = report.recommendation
    lines = [f"dindcheck: {cluster.server or 'unknown server'} (Kubernetes {cluster.version or 'unknown'})"]
    if report.pools:
        lines.append(f"node pools by label {report.run.pool_label} (probes ran on one node per pool):")
        lines += _pools_table(report)
    elif probed := probed_nodes_line(report):
        lines.append(probed)
    if security := node_security_line(report):
        lines.append(security)
    if report.run.throttled is not None:
        lines.append(report.run.throttled.describe())
    lines.append("")
    if report.changes is not None:
        lines += [*changes.changes_terminal_lines(report.changes), ""]
    if report.since_pinned is not None:
        lines += [*changes.pinned_terminal_lines(report.since_pinned), ""]
    if report.pools:
        lines += _check_matrix(report)
        lines += ["", *_modes_matrix(report), ""]
    else:
        lines += _checks_table(report)
        lines += ["", *_modes_table(report), ""]
    every = " on every pool" if report.pools else ""
    lines.append(f"full docker (docker run){every}: {recommendation.full_docker.value}")
    lines.append(f"build only (build + push){every}: {recommendation.build_only.value}")
    lines.append(f"from source, no Dockerfile (build + push){every}: {recommendation.from_source.value}")
    if ran_as := selinux_type_line(report):
        lines.append(ran_as)
    required = report.run.required_mode
    if required is not None:
        lines.append(required_mode_line(report, required))
    lines.append("why:")
    lines += [f"  - {reason}" for reason in recommendation.reasons]
    lines += paste.terminal_lines(report, config_elsewhere)
    lines.append(proved_nothing_line(report))
    return lines


def selinux_type_line(report: Report) -> str:
    """Under the answers, when --selinux-type set one: they hold for pods of that type, not the runtime's default."""
    types = report.selinux_types()
    if not types:
        return ""
    return (
        f"as SELinux type {', '.join(types)} (--selinux-type): every probe pod ran as it, not as the runtime's "
        "container_t, so these answers hold for pods that run as it"
    )


def required_mode_line(report: Report, required: Mode) -> str:
    """'required mode dind: usable', or 'NOT usable', naming the pools where it is not in a multi-pool report."""
    if report.is_usable(required):
        return f"required mode {required.value}: usable"
    pools = report.unusable_pools_in_words(required)
    return f"required mode {required.value}: NOT usable" + (f" on pool(s) {', '.join(pools)}" if pools else "")


def proved_nothing_line(report: Report | FleetReport) -> str:
    """The last line, whatever the flags: how many checks proved nothing, and why (a green run can hide them).

    A multi-pool report counts every pool's checks and names them 'pool/check'; a fleet report every cluster's, named
    'ctx/check' (or 'ctx/pool/check').
    """
    nothing = report.proved_nothing()  # inconclusive first, then skipped
    ran = len(report.verdicts())
    if not nothing:
        return f"proved nothing: 0 of {ran} checks (every check that ran reached a verdict)"
    inconclusive = sum(v.status is Status.INCONCLUSIVE for _, v in nothing)
    counts = f"{inconclusive} inconclusive, {len(nothing) - inconclusive} skipped"
    parts = "; ".join(f"{label} {v.status.value}: {shorten(v.summary, 90)}" for label, v in nothing)
    return f"proved nothing: {len(nothing)} of {ran} checks ({counts}): {parts}"


USABLE_CELL = "usable"
UNUSABLE_CELL = "-"


def fleet_cluster_line(report: FleetReport) -> str:
    """'dindcheck: a fleet of 3 clusters: a (https://a, Kubernetes v1.31), b (...), c NOT PROBED'."""
    probed = [
        f"{cluster.context} ({cluster.report.run.cluster.server or 'unknown server'}, "
        f"Kubernetes {cluster.report.run.cluster.version or 'unknown'})"
        for cluster in report.clusters
    ]
    unprobed = [f"{cluster.context} NOT PROBED" for cluster in report.unprobed]
    count = len(report.clusters) + len(report.unprobed)
    return f"dindcheck: a fleet of {count} clusters: {', '.join([*probed, *unprobed])}"


def _fleet_modes_matrix(report: FleetReport) -> list[str]:
    """Cluster by mode: a row per context (unprobed ones saying why), a column per mode, then every cluster's row."""
    modes = [assessment.mode for assessment in report.assessments]

    def cells(usable: dict[Mode, bool]) -> list[str]:
        return [USABLE_CELL if usable[mode] else UNUSABLE_CELL for mode in modes]

    note = [""] if report.unprobed else []  # the note column only when a cluster has one
    rows = [
        (cluster.context, *cells({a.mode: a.usable for a in cluster.report.assessments}), *note)
        for cluster in report.clusters
    ]
    rows += [
        (cluster.context, *(UNUSABLE_CELL for _ in modes), shorten(f"NOT PROBED: {cluster.reason}", WARNING_WIDTH))
        for cluster in report.unprobed
    ]
    rows.append(("every cluster", *cells({a.mode: a.usable for a in report.assessments}), *note))
    headers = ("cluster", *(mode.value for mode in modes), *(["note"] if note else []))
    return tabulate(rows, headers=headers, tablefmt=TABLE_FORMAT).splitlines()


def _fleet_check_matrix(report: FleetReport) -> list[str]:
    """Check by cluster: a row per check, a column per context (per 'ctx/pool' for an --each-pool cluster)."""
    rows = [(check_id, *map(status_word, cells)) for check_id, cells in report.check_matrix()]
    headers = ("check", *(label for label, _ in report.columns()))
    lines = tabulate(rows, headers=headers, tablefmt=TABLE_FORMAT).splitlines()
    failed = [(label, v) for label, v in report.verdicts() if v.status is Status.FAIL]
    if failed:
        lines += ["failed:", *(f"  - {label}: {shorten(v.summary, SUMMARY_WIDTH)}" for label, v in failed)]
    return lines


def _fleet_changes(report: FleetReport) -> list[str]:
    """Each cluster's changes since its baseline entries, under its context."""
    lines: list[str] = []
    for cluster in report.clusters:
        own = cluster.report
        found = [] if own.changes is None else changes.changes_terminal_lines(own.changes)
        found += [] if own.since_pinned is None else changes.pinned_terminal_lines(own.since_pinned)
        lines += [f"cluster {cluster.context}: {found[0]}", *(f"  {line}" for line in found[1:])] if found else []
    lines += [f"REGRESSED {loss}" for loss in report.unprobed_losses]
    return [*lines, ""] if lines else []


def fleet_required_mode_line(report: FleetReport, required: Mode) -> str:
    """'required mode dind: usable on every cluster', or 'NOT usable on cluster(s) b, c'."""
    if report.is_usable(required):
        return f"required mode {required.value}: usable on every cluster"
    return f"required mode {required.value}: NOT usable on cluster(s) {', '.join(report.unusable_clusters(required))}"


def render_fleet(report: FleetReport, config_elsewhere: str = "") -> list[str]:
    """The lines of a fleet run: the clusters, cluster by mode and check by cluster, what to use on every cluster.

    They end, as a single cluster's do, with the config to paste of the recommendation (proven on one cluster, its
    comments say how the others differ) and the proved-nothing line; each cluster's own report is in the Markdown
    and JSON reports.
    """
    recommendation = report.recommendation
    lines = [fleet_cluster_line(report), *report.notes]
    lines += [
        f"cluster {cluster.context} {cluster.report.run.throttled.describe()}"
        for cluster in report.clusters
        if cluster.report.run.throttled is not None
    ]
    lines.append("")
    lines += _fleet_changes(report)
    lines += ["modes by cluster:", *_fleet_modes_matrix(report), ""]
    lines += [*_fleet_check_matrix(report), ""]
    lines.append(f"full docker (docker run) on every cluster: {recommendation.full_docker.value}")
    lines.append(f"build only (build + push) on every cluster: {recommendation.build_only.value}")
    lines.append(f"from source, no Dockerfile (build + push) on every cluster: {recommendation.from_source.value}")
    if report.required_mode is not None:
        lines.append(fleet_required_mode_line(report, report.required_mode))
    lines.append("why:")
    lines += [f"  - {reason}" for reason in recommendation.reasons]
    lines += paste.terminal_lines(report, config_elsewhere)
    lines.append(proved_nothing_line(report))
    return lines
