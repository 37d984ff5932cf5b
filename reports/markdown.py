"""The Markdown report: a PR comment or GitHub step summary a platform team can act on without the JSON.

The headline answers "what do we use?"; details sit in <details> blocks so the comment stays short.
"""

from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING

from probes.model import Mode, Status, Verdict
from reports import changes
from reports.json_report import plain
from reports.snippets import SECURITY_COST
from reports.terminal import proved_nothing_line

if TYPE_CHECKING:
    from collections.abc import Mapping

    from reports.report import Report

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
    Mode.SYSBOX.value: "Sysbox (pod spec)",
    Mode.HOST_SOCKET.value: "Host Docker socket (pod spec, discouraged)",
}

PSA_LABEL_PREFIX = "pod-security.kubernetes.io/"


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


def _headline(report: Report) -> list[str]:
    recommendation = report.recommendation
    run = report.run
    lines = [
        "# dindcheck compatibility report",
        "",
        (
            f"**Full Docker (docker run):** `{recommendation.full_docker.value}` · "
            f"**Build only (build + push):** `{recommendation.build_only.value}`"
        ),
        "",
    ]
    if run.required_mode is not None:
        met = report.is_usable(run.required_mode)
        lines += [f"**Required mode `{run.required_mode.value}`:** {'usable ✅' if met else 'NOT usable ❌'}", ""]
    cluster = run.cluster
    lines.append(
        f"Cluster `{text(cluster.server) or 'unknown'}`, Kubernetes {text(cluster.version) or 'unknown'}, "
        f"{len(cluster.nodes)} node(s); generated {text(run.generated_at)} in {run.total_s:.1f}s.",
    )
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


def _modes(report: Report) -> list[str]:
    lines = ["", "## Modes", "", "| Mode | Usable | Blocked by | Warnings |", "|---|---|---|---|"]
    for assessment in report.assessments:
        usable = "✅ yes" if assessment.usable else "❌ no"
        blocked = ", ".join(f"`{check_id}`" for check_id in assessment.blocked_by)
        warnings = "<br>".join(cell(warning) for warning in assessment.warnings)
        lines.append(f"| `{assessment.mode.value}` | {usable} | {blocked} | {warnings} |")
    lines += ["", "### Why", ""]
    lines += [f"- {text(reason)}" for reason in report.recommendation.reasons]
    return lines


def _details(report: Report) -> list[str]:
    failing = [
        verdict for _, verdict in report.check_rows() if verdict is not None and verdict.status is not Status.PASS
    ]
    if not failing:
        return []
    lines = ["", "## Details of checks that did not pass"]
    for verdict in failing:
        emoji = STATUS_EMOJI[verdict.status]
        lines += ["", "<details>", f"<summary>{emoji} {verdict.id}: {text(verdict.summary)}</summary>", ""]
        if verdict.remediation:
            lines += [f"**Remediation:** {text(verdict.remediation)}", ""]
        evidence = json.dumps(plain(verdict.evidence), ensure_ascii=False, indent=2)
        lines += ["**Evidence:**", "", *fenced(evidence, "json"), "", "</details>"]
    return lines


def _snippets(report: Report) -> list[str]:
    lines = ["", "## Config to paste"]
    for key, snippet in report.recommendation.snippets.items():
        lines += ["", f"### {SNIPPET_TITLES.get(key, key)}", "", *fenced(snippet, "yaml")]
    return lines


def _security_costs(report: Report) -> list[str]:
    lines = ["", "## Security cost of each mode", ""]
    for assessment in report.assessments:
        cost = SECURITY_COST.get(assessment.mode)
        if cost:
            lines.append(f"- **{assessment.mode.value}**: {cost}")
    return lines


def _notes(report: Report) -> list[str]:
    cluster = report.run.cluster
    notes: list[str] = []
    psa_labels = {key: value for key, value in cluster.namespace_labels.items() if key.startswith(PSA_LABEL_PREFIX)}
    if psa_labels:
        labels = ", ".join(f"`{key}={value}`" for key, value in sorted(psa_labels.items()))
        notes.append(f"Pod Security labels on the probe namespace `{text(cluster.namespace)}`: {labels}.")
    notes += [text(note) for note in cluster.notes]
    if cluster.nodes:
        nodes = "; ".join(
            text(f"{node.name} ({node.container_runtime}, kernel {node.kernel}, {node.os_image}, {node.architecture})")
            for node in cluster.nodes
        )
        notes.append(f"Nodes: {nodes}.")
    if cluster.images:
        images = "; ".join(
            f"{text(role)} `{text(image.ref)}`" + (f" (`{text(image.digest)}`)" if image.digest else "")
            for role, image in cluster.images.items()
        )
        notes.append(f"Images used, with the digest the node resolved: {images}.")
    if not notes:
        return []
    return ["", "## Notes", "", *[f"- {note}" for note in notes]]


def render(report: Report) -> str:
    """The whole Markdown document, ending with a newline."""
    lines = [
        *_headline(report),
        *([] if report.changes is None else ["", changes.changes_markdown(report.changes).rstrip("\n")]),
        *_checks(report),
        *_modes(report),
        *_details(report),
        *_snippets(report),
        *_security_costs(report),
        *_notes(report),
    ]
    return "\n".join(lines) + "\n"
