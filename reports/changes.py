"""What changed since an earlier report (--baseline): what a nightly job's owner reads first.

Pure functions over report JSON (schema dindcheck/report/v1): the baseline is an earlier report file, the current
one is the report being built, so any two reports of one cluster can be compared, whichever dindcheck wrote them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.exceptions import UsageError

SCHEMA = "dindcheck/report/v1"
NOT_RUN = "not run"


@dataclass(frozen=True)
class CheckChange:
    """A check whose status moved, with both summaries."""

    id: str
    before: str
    after: str
    before_summary: str
    after_summary: str

    def describe(self) -> str:
        """'privileged-admission: pass -> fail: <new> (was: <old>)'."""
        text = f"{self.id}: {self.before} -> {self.after}"
        if self.after_summary:
            text += f": {self.after_summary}"
        if self.before_summary:
            text += f" (was: {self.before_summary})"
        return text


@dataclass(frozen=True)
class ModeChange:
    """A mode that became usable or unusable, and what blocks it now."""

    id: str
    was_usable: bool
    is_usable: bool
    blocked_by: tuple[str, ...]

    def describe(self) -> str:
        """'dind: usable -> NOT usable (blocked by privileged-admission)'."""

        def word(usable: bool) -> str:
            return "usable" if usable else "NOT usable"

        text = f"{self.id}: {word(self.was_usable)} -> {word(self.is_usable)}"
        if self.blocked_by:
            text += f" (blocked by {', '.join(self.blocked_by)})"
        return text


@dataclass(frozen=True)
class FactChange:
    """A cluster fact that moved: server version, a node's runtime or kernel, a node, an image digest."""

    what: str
    before: str
    after: str

    def describe(self) -> str:
        """'node ci-1 container_runtime: containerd://1.7 -> containerd://2.0'."""
        return f"{self.what}: {self.before or '(none)'} -> {self.after or '(none)'}"


@dataclass(frozen=True)
class Changes:
    """Everything that differs between the baseline report and this one."""

    baseline_generated_at: str
    checks: tuple[CheckChange, ...]
    modes: tuple[ModeChange, ...]
    recommendation: tuple[FactChange, ...]
    cluster: tuple[FactChange, ...]

    @property
    def empty(self) -> bool:
        """Nothing changed."""
        return not (self.checks or self.modes or self.recommendation or self.cluster)

    @property
    def regressions(self) -> tuple[str, ...]:
        """Modes usable in the baseline that are not usable now (--fail-on-regression)."""
        return tuple(change.id for change in self.modes if change.was_usable and not change.is_usable)

    def count(self) -> int:
        """How many changes there are."""
        return len(self.checks) + len(self.modes) + len(self.recommendation) + len(self.cluster)

    def to_json(self) -> dict[str, Any]:
        """The report's `changes` block."""
        return {
            "baseline_generated_at": self.baseline_generated_at,
            "none": self.empty,
            "regressions": list(self.regressions),
            "checks": [
                {
                    "id": c.id,
                    "before": c.before,
                    "after": c.after,
                    "before_summary": c.before_summary,
                    "after_summary": c.after_summary,
                }
                for c in self.checks
            ],
            "modes": [
                {"id": m.id, "was_usable": m.was_usable, "is_usable": m.is_usable, "blocked_by": list(m.blocked_by)}
                for m in self.modes
            ],
            "recommendation": [{"what": f.what, "before": f.before, "after": f.after} for f in self.recommendation],
            "cluster": [{"what": f.what, "before": f.before, "after": f.after} for f in self.cluster],
        }


def load_baseline(path: Path, *, server: str) -> dict[str, Any]:
    """An earlier report of this cluster; UsageError (one line) for anything else."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--baseline {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"--baseline {path}: not JSON ({exc})") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise UsageError(f"--baseline {path}: schema {found!r}, not {SCHEMA!r}: not a dindcheck report of this version")
    baseline_server = str((report.get("cluster") or {}).get("server", ""))
    if baseline_server != server:
        raise UsageError(f"--baseline {path} is a report of {baseline_server or '(unknown)'}, not of {server}")
    return report


def _by_id(items: object) -> dict[str, Mapping[str, Any]]:
    return {str(item["id"]): item for item in items or [] if isinstance(item, Mapping) and "id" in item}  # type: ignore[attr-defined]


def _check_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[CheckChange, ...]:
    old, new = _by_id(before.get("checks")), _by_id(after.get("checks"))
    changes = []
    for check_id in sorted(old.keys() | new.keys()):
        was, now = old.get(check_id, {}), new.get(check_id, {})
        if was.get("status", NOT_RUN) != now.get("status", NOT_RUN):
            changes.append(
                CheckChange(
                    check_id,
                    str(was.get("status", NOT_RUN)),
                    str(now.get("status", NOT_RUN)),
                    str(was.get("summary", "")),
                    str(now.get("summary", "")),
                )
            )
    return tuple(changes)


def _mode_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[ModeChange, ...]:
    old, new = _by_id(before.get("modes")), _by_id(after.get("modes"))
    changes = []
    for mode_id in sorted(old.keys() | new.keys()):
        was, now = bool(old.get(mode_id, {}).get("usable")), bool(new.get(mode_id, {}).get("usable"))
        if was != now:
            changes.append(ModeChange(mode_id, was, now, tuple(new.get(mode_id, {}).get("blocked_by", ()))))
    return tuple(changes)


def _recommendation_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[FactChange, ...]:
    old, new = before.get("recommendation") or {}, after.get("recommendation") or {}
    return tuple(
        FactChange(key, str(old.get(key, "")), str(new.get(key, "")))
        for key in ("full_docker", "build_only")
        if old.get(key) != new.get(key)
    )


def _cluster_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[FactChange, ...]:
    old, new = before.get("cluster") or {}, after.get("cluster") or {}
    changes: list[FactChange] = []
    if old.get("version") != new.get("version"):
        changes.append(FactChange("server version", str(old.get("version", "")), str(new.get("version", ""))))
    old_nodes = {n.get("name"): n for n in old.get("nodes") or [] if isinstance(n, Mapping)}
    new_nodes = {n.get("name"): n for n in new.get("nodes") or [] if isinstance(n, Mapping)}
    for name in sorted(map(str, old_nodes.keys() | new_nodes.keys())):
        if name not in new_nodes:
            changes.append(FactChange(f"node {name}", "present", "gone"))
        elif name not in old_nodes:
            changes.append(FactChange(f"node {name}", "", "new"))
        else:
            changes.extend(
                FactChange(f"node {name} {key}", str(old_nodes[name].get(key, "")), str(new_nodes[name].get(key, "")))
                for key in ("container_runtime", "kernel")
                if old_nodes[name].get(key) != new_nodes[name].get(key)
            )
    old_images, new_images = old.get("images") or {}, new.get("images") or {}
    for role in sorted(old_images.keys() & new_images.keys()):
        was, now = old_images[role] or {}, new_images[role] or {}
        if was.get("digest") and now.get("digest") and was.get("digest") != now.get("digest"):
            changes.append(FactChange(f"image {role} ({now.get('ref', '')})", str(was["digest"]), str(now["digest"])))
    return tuple(changes)


def compute_changes(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Changes:
    """Every difference that matters to a person watching the cluster night after night."""
    return Changes(
        baseline_generated_at=str(baseline.get("generated_at", "")),
        checks=_check_changes(baseline, current),
        modes=_mode_changes(baseline, current),
        recommendation=_recommendation_changes(baseline, current),
        cluster=_cluster_changes(baseline, current),
    )


def _lines(changes: Changes) -> list[str]:
    lines = [f"mode {change.describe()}" for change in changes.modes]
    lines += [f"recommendation {change.describe()}" for change in changes.recommendation]
    lines += [f"check {change.describe()}" for change in changes.checks]
    lines += [f"cluster {change.describe()}" for change in changes.cluster]
    return lines


def changes_terminal_lines(changes: Changes) -> list[str]:
    """'since the baseline of DATE: no change', or a count and one line per change (modes first)."""
    head = f"since the baseline of {changes.baseline_generated_at or 'an earlier run'}"
    if changes.empty:
        return [f"{head}: no change"]
    regressed = f"; REGRESSED: {', '.join(changes.regressions)}" if changes.regressions else ""
    return [f"{head}: {changes.count()} change(s){regressed}", *(f"  - {line}" for line in _lines(changes))]


def changes_markdown(changes: Changes) -> str:
    """A '## What changed since DATE' section."""
    title = f"## What changed since {changes.baseline_generated_at or 'the baseline'}"
    if changes.empty:
        return f"{title}\n\nNo change.\n"
    body = ["- " + line.replace("|", "\\|") for line in _lines(changes)]
    lead = f"**Regressed:** {', '.join(f'`{m}`' for m in changes.regressions)}\n\n" if changes.regressions else ""
    return f"{title}\n\n{lead}" + "\n".join(body) + "\n"
