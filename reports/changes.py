"""What changed since an earlier report (--baseline): what a nightly job's owner reads first.

Pure functions over report JSON (schema dindcheck/report/v1): the baseline is an earlier report file, the current
one is the report being built, so any two reports of one cluster can be compared, whichever dindcheck wrote them.
In a multi-pool report (a `pools` block) checks are every pool's, named 'pool/check', and modes are the top-level
ones (usable on every pool), blocked by 'pool/check'. Regressions are judged pool by pool: a mode usable on a pool in
the baseline and not on that pool now, or a pool probed in the baseline and not now, whatever the every-pool verdict
says (a mode lost on one pool while another already lacked it leaves that verdict "not usable" both times).
A baseline is a file from last night, possibly hand-edited or truncated: every read here tolerates missing or
mistyped keys instead of failing the run with a traceback.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.exceptions import UsageError
from probes.model import NodeSecurity

SCHEMA = "dindcheck/report/v1"
NOT_RUN = "not run"
NODE_FACTS = ("container_runtime", "kernel")
"""Per-node facts compared: what decides whether overlay, user namespaces and nested runtimes work."""
SECURITY_FACTS = tuple(NodeSecurity(cgroup="", lsm=()).to_json())
"""Per-node facts the lsm check read (null when its pod ran elsewhere): compared only when both runs read them."""
WARNING_MARK = "WARNING:"
"""How a probe flags a warning inside a passing verdict's summary (docker-run's stalled nested transfer)."""
RUN_SPECIFIC = (
    (re.compile(r"\bdc-[a-z0-9]{5}-"), "dc-RUN-"),
    (re.compile(r"\bdindcheck-[a-z0-9]{5}\b"), "dindcheck-RUN"),
    (re.compile(r"\b\d+(?:\.\d+)?s\b"), "Ns"),
)
"""What differs between two runs' texts without meaning anything: object names carrying the run id (pods
dc-<run id>-..., the namespace dindcheck-<run id>) and durations. Warnings are compared without them."""
ROOT_CAUSE_STATUSES = frozenset({"fail", "inconclusive", NOT_RUN})
"""A blocker in one of these states is a cause; a skipped one is a consequence (its pod was never admitted)."""
TOP_LEVEL = {"cluster": dict, "checks": list, "modes": list, "recommendation": dict}
"""What a report must have for a comparison to mean anything (the schema's required containers)."""


def _one_line(text: object) -> str:
    """Probe summaries may hold newlines; every change is one line in a log or a list."""
    return " ".join(str(text).split())


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _records(value: object, key: str) -> dict[str, Mapping[str, Any]]:
    """The objects of a JSON list by their key field; anything else in the list is ignored."""
    if not isinstance(value, list):
        return {}
    return {str(item[key]): item for item in value if isinstance(item, Mapping) and key in item}


@dataclass(frozen=True)
class CheckChange:
    """A check whose status moved, with both summaries ('not run' when it is absent from one report)."""

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

    def to_json(self) -> dict[str, str]:
        """The changes.checks[] entry."""
        return {
            "id": self.id,
            "before": self.before,
            "after": self.after,
            "before_summary": self.before_summary,
            "after_summary": self.after_summary,
        }


@dataclass(frozen=True)
class Cause:
    """A check blocking a mode now, with its current status and summary: the 'because' of a mode change."""

    check: str
    status: str
    summary: str

    def to_json(self) -> dict[str, str]:
        """The changes.modes[].causes[] entry."""
        return {"check": self.check, "status": self.status, "summary": self.summary}


@dataclass(frozen=True)
class ModeChange:
    """A mode that became usable or unusable, what blocks it now, and why (the blockers that are causes)."""

    id: str
    was_usable: bool
    is_usable: bool
    blocked_by: tuple[str, ...]
    causes: tuple[Cause, ...] = ()
    """The blockers that failed, were inconclusive or did not run; skipped ones only follow from those."""
    pool: str = ""
    """The pool this change is on; '' for a report's top-level (every-pool) modes."""

    @property
    def regressed(self) -> bool:
        """Usable in the baseline, not now."""
        return self.was_usable and not self.is_usable

    @property
    def where(self) -> str:
        """'dind', or 'dind on pool ci'."""
        return f"{self.id} on pool {self.pool}" if self.pool else self.id

    def describe(self) -> str:
        """'dind: usable -> NOT usable (blocked by privileged-admission: <summary>; also docker-run)'."""

        def word(usable: bool) -> str:
            return "usable" if usable else "NOT usable"

        text = f"{self.where}: {word(self.was_usable)} -> {word(self.is_usable)}"
        if self.blocked_by:
            named = {cause.check for cause in self.causes}
            parts = [f"{cause.check}: {cause.summary}" if cause.summary else cause.check for cause in self.causes]
            rest = [check for check in self.blocked_by if check not in named]
            if parts and rest:
                parts.append(f"also {', '.join(rest)}")
            elif rest:
                parts = [", ".join(rest)]
            text += f" (blocked by {'; '.join(parts)})"
        return text

    def to_json(self) -> dict[str, Any]:
        """The changes.modes[] entry (changes.pool_modes[] adds its pool)."""
        return {
            **({"pool": self.pool} if self.pool else {}),
            "id": self.id,
            "was_usable": self.was_usable,
            "is_usable": self.is_usable,
            "blocked_by": list(self.blocked_by),
            "causes": [cause.to_json() for cause in self.causes],
        }


@dataclass(frozen=True)
class FactChange:
    """A value that moved: a recommendation, the server version, a node's runtime or kernel, a node, an image."""

    what: str
    before: str
    after: str

    def describe(self) -> str:
        """'node ci-1 container_runtime: containerd://1.7 -> containerd://2.0'."""
        return f"{self.what}: {self.before or '(none)'} -> {self.after or '(none)'}"

    def to_json(self) -> dict[str, str]:
        """The changes.recommendation[] and changes.cluster[] entry."""
        return {"what": self.what, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class NewWarning:
    """A warning this run gives that the baseline did not: a mode's (modes[].warnings) or a passing check's."""

    pool: str
    mode: str
    check: str
    warning: str

    def describe(self) -> str:
        """'mode dind on pool ci: <warning>' or 'check docker-run: WARNING: ...'."""
        what = f"mode {self.mode}" if self.mode else f"check {self.check}"
        return f"{what}{f' on pool {self.pool}' if self.pool else ''}: {self.warning}"

    def to_json(self) -> dict[str, str]:
        """The changes.warnings[] entry."""
        return {"pool": self.pool, "mode": self.mode, "check": self.check, "warning": self.warning}


@dataclass(frozen=True)
class PoolGone:
    """A pool the baseline probed and this run did not: nothing it proved then is proven now."""

    pool: str
    was_usable: tuple[str, ...]
    """The modes usable on it in the baseline."""

    def describe(self) -> str:
        """'pool ci was probed in the baseline and not in this run (usable there then: dind)'."""
        then = f" (usable there then: {', '.join(self.was_usable)})" if self.was_usable else ""
        return f"pool {self.pool} was probed in the baseline and not in this run{then}"


@dataclass(frozen=True)
class Lost:
    """One regression: a mode usable in the baseline (on a pool) and not now, or a pool not probed now (mode '')."""

    mode: str
    pool: str

    def describe(self) -> str:
        """'dind', 'dind on pool ci' or 'pool ci (probed in the baseline, not in this run)'."""
        return self._said(str)

    def markdown(self) -> str:
        """The same with code spans."""
        return self._said(lambda name: f"`{name}`")

    def _said(self, name: Callable[[str], str]) -> str:
        """The loss in words, each mode and pool name written by name()."""
        if not self.mode:
            return f"pool {name(self.pool)} (probed in the baseline, not in this run)"
        return f"{name(self.mode)} on pool {name(self.pool)}" if self.pool else name(self.mode)

    def to_json(self) -> dict[str, str]:
        """The changes.lost[] entry."""
        return {"mode": self.mode, "pool": self.pool, "summary": self.describe()}


@dataclass(frozen=True)
class Changes:
    """Everything that differs between the baseline report and this one."""

    baseline_generated_at: str
    checks: tuple[CheckChange, ...]
    modes: tuple[ModeChange, ...]
    recommendation: tuple[FactChange, ...]
    cluster: tuple[FactChange, ...]
    pool_modes: tuple[ModeChange, ...] = ()
    """Between two multi-pool reports: every mode that changed on a pool (each carries its pool)."""
    pools_gone: tuple[PoolGone, ...] = ()
    warnings: tuple[NewWarning, ...] = ()

    @property
    def shown_pool_modes(self) -> tuple[ModeChange, ...]:
        """The pool changes of modes whose every-pool verdict stayed the same (the others' line names the pools)."""
        moved = {change.id for change in self.modes}
        return tuple(change for change in self.pool_modes if change.id not in moved)

    @property
    def empty(self) -> bool:
        """Nothing changed."""
        return self.count() == 0

    @property
    def lost(self) -> tuple[Lost, ...]:
        """What --fail-on-regression fails on, judged pool by pool.

        Between multi-pool reports: each mode lost on a pool, each pool gone, and an every-pool loss no pool explains
        (a pool new in this run lacks the mode). Otherwise the report's own modes, and every pool gone.
        """
        per_pool = tuple(Lost(change.id, change.pool) for change in self.pool_modes if change.regressed)
        explained = {lost.mode for lost in per_pool}
        top = tuple(Lost(change.id, "") for change in self.modes if change.regressed and change.id not in explained)
        return (*per_pool, *(Lost("", gone.pool) for gone in self.pools_gone), *top)

    @property
    def regressions(self) -> tuple[str, ...]:
        """Mode ids usable in the baseline (on some pool) and not now (on that pool, or that pool was not probed)."""
        ids = [lost.mode for lost in self.lost if lost.mode]
        ids += [mode for gone in self.pools_gone for mode in gone.was_usable]
        return tuple(dict.fromkeys(ids))

    def count(self) -> int:
        """How many changes there are (as listed: a pool's mode change only when the every-pool one is not)."""
        return sum(
            map(
                len,
                (
                    self.warnings,
                    self.pools_gone,
                    self.modes,
                    self.shown_pool_modes,
                    self.recommendation,
                    self.checks,
                    self.cluster,
                ),
            )
        )

    def to_json(self) -> dict[str, Any]:
        """The report's `changes` block (schema: report-v1.json, $defs/changes)."""
        return {
            "baseline_generated_at": self.baseline_generated_at,
            "none": self.empty,
            "regressions": list(self.regressions),
            "checks": [change.to_json() for change in self.checks],
            "modes": [change.to_json() for change in self.modes],
            "recommendation": [change.to_json() for change in self.recommendation],
            "cluster": [change.to_json() for change in self.cluster],
            "lost": [lost.to_json() for lost in self.lost],
            "warnings": [warning.to_json() for warning in self.warnings],
            "pool_modes": [change.to_json() for change in self.pool_modes],
            "pools_gone": [{"pool": gone.pool, "was_usable": list(gone.was_usable)} for gone in self.pools_gone],
        }


def _read_report(path: Path, option: str) -> dict[str, Any]:
    """A v1 report file with the top-level containers a comparison reads; UsageError (one line) for anything else."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read it ({_one_line(exc.strerror or exc)})") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise UsageError(f"{option} {path}: not JSON ({_one_line(exc)})") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else f"a JSON {type(report).__name__}"
        raise UsageError(f"{option} {path}: schema {found!r}, not {SCHEMA!r}: not a dindcheck report of this version")
    _require_containers(report, f"{option} {path}: a {SCHEMA} report")
    return report


def _require_containers(report: Mapping[str, Any], said: str) -> None:
    malformed = [key for key, kind in TOP_LEVEL.items() if not isinstance(report.get(key), kind)]
    if malformed:
        raise UsageError(f"{said} without a valid {', '.join(malformed)}: truncated?")


def _server(report: Mapping[str, Any]) -> str:
    return str(report["cluster"].get("server") or "")


def _same_server(found: str, server: str) -> bool:
    return found.rstrip("/") == server.rstrip("/")


def load_baseline(path: Path, *, server: str, option: str = "--baseline") -> dict[str, Any]:
    """An earlier report of this cluster; UsageError (one line) for anything else, before any probe pod exists.

    option (--baseline or --pinned-baseline) opens the error, so it names the file it is about.
    """
    report = _read_report(path, option)
    if isinstance(report.get("clusters"), list):
        raise UsageError(
            f"{option} {path} is a report of a fleet of clusters, not of {server}: compare reports of one cluster"
        )
    baseline_server = _server(report)
    if not _same_server(baseline_server, server):
        raise UsageError(
            f"{option} {path} is a report of {baseline_server or '(unknown server)'}, not of {server}: "
            "compare reports of one cluster"
        )
    return report


def load_fleet_baseline(path: Path, *, servers: Mapping[str, str], option: str = "--baseline") -> dict[str, Any]:
    """An earlier fleet report (its `clusters` entries matched by context) for a fleet run; UsageError otherwise.

    servers: each probed cluster's context -> its API server. An entry of one of these contexts must be a report of
    that server (a context renamed onto another cluster is refused, as load_baseline refuses another cluster's
    report); entries of other contexts are kept and unused, and a context without an entry is compared with nothing.
    """
    report = _read_report(path, option)
    entries = report.get("clusters")
    if not isinstance(entries, list):
        raise UsageError(
            f"{option} {path} is a report of one cluster ({_server(report) or 'unknown server'}), not of a fleet: "
            "compare fleet reports with fleet reports"
        )
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("context"), str):
            raise UsageError(f"{option} {path}: a fleet report with a clusters entry without a context: truncated?")
        context = entry["context"]
        if context not in servers:
            continue
        _require_containers(entry, f"{option} {path}: cluster {context}'s report")
        found, server = _server(entry), servers[context]
        if not _same_server(found, server):
            raise UsageError(
                f"{option} {path}: its cluster {context} is a report of {found or '(unknown server)'}, "
                f"not of {server} (context {context} now): compare reports of one cluster"
            )
    return report


def fleet_entry(baseline: Mapping[str, Any] | None, context: str) -> Mapping[str, Any] | None:
    """The baseline fleet report's entry of one context, None without a baseline or an entry for it."""
    if baseline is None:
        return None
    entries = baseline.get("clusters")
    if not isinstance(entries, list):
        return None
    return next((e for e in entries if isinstance(e, Mapping) and e.get("context") == context), None)


def _pools(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(pool name, pool block) of a multi-pool report; empty for a single-pool one (or a mangled pools key)."""
    pools = report.get("pools")
    if not isinstance(pools, list):
        return []
    return [(str(block["pool"]), block) for block in pools if isinstance(block, Mapping) and "pool" in block]


def _checks(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A report's checks by id; a multi-pool report's are every pool's, as 'pool/check' (its top level has none)."""
    pools = _pools(report)
    if not pools:
        return _records(report.get("checks"), "id")
    return {
        f"{name}/{check_id}": check
        for name, block in pools
        for check_id, check in _records(block.get("checks"), "id").items()
    }


def _blocked_by(modes: object, mode_id: str) -> tuple[str, ...]:
    """A mode's blocked_by in one modes list (empty when it is usable or absent)."""
    mode = _records(modes, "id").get(mode_id, {})
    raw = mode.get("blocked_by")
    return tuple(map(str, raw)) if isinstance(raw, list) and not mode.get("usable") else ()


def _blockers(report: Mapping[str, Any], mode_id: str) -> tuple[str, ...]:
    """What blocks a mode in a report: its blocked_by; in a multi-pool report every pool's, as 'pool/check'."""
    pools = _pools(report)
    if not pools:
        return _blocked_by(report.get("modes"), mode_id)
    return tuple(f"{name}/{check_id}" for name, block in pools for check_id in _blocked_by(block.get("modes"), mode_id))


def _check_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[CheckChange, ...]:
    old, new = _checks(before), _checks(after)
    changes = []
    for check_id in sorted(old.keys() | new.keys()):
        was, now = old.get(check_id, {}), new.get(check_id, {})
        if str(was.get("status", NOT_RUN)) != str(now.get("status", NOT_RUN)):
            changes.append(
                CheckChange(
                    check_id,
                    str(was.get("status", NOT_RUN)),
                    str(now.get("status", NOT_RUN)),
                    _one_line(was.get("summary", "")),
                    _one_line(now.get("summary", "")),
                )
            )
    return tuple(changes)


def _causes(blocked_by: tuple[str, ...], checks: Mapping[str, Mapping[str, Any]]) -> tuple[Cause, ...]:
    """The blockers that explain the block (fail, inconclusive, not run), else every blocker."""
    found = tuple(
        Cause(
            check_id,
            str(checks.get(check_id, {}).get("status", NOT_RUN)),
            _one_line(checks.get(check_id, {}).get("summary", "")),
        )
        for check_id in blocked_by
    )
    return tuple(cause for cause in found if cause.status in ROOT_CAUSE_STATUSES) or found


def _scope_mode_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], checks: Mapping[str, Mapping[str, Any]], *, pool: str = ""
) -> tuple[ModeChange, ...]:
    """The modes of one scope (a report's top level, or one pool's block) that became usable or unusable."""
    old, new = _records(before.get("modes"), "id"), _records(after.get("modes"), "id")
    changes = []
    for mode_id in sorted(old.keys() | new.keys()):
        was, now = bool(old.get(mode_id, {}).get("usable")), bool(new.get(mode_id, {}).get("usable"))
        if was != now:
            if now:
                blocked_by: tuple[str, ...] = ()
            elif pool:
                blocked_by = tuple(f"{pool}/{check}" for check in _blocked_by(after.get("modes"), mode_id))
            else:
                blocked_by = _blockers(after, mode_id)
            changes.append(ModeChange(mode_id, was, now, blocked_by, _causes(blocked_by, checks), pool))
    return tuple(changes)


def _mode_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[ModeChange, ...]:
    return _scope_mode_changes(before, after, _checks(after))


def _pool_mode_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[ModeChange, ...]:
    """Between two multi-pool reports, each pool's own mode changes (pools in this run's order)."""
    old = dict(_pools(before))
    checks = _checks(after)
    return tuple(
        change
        for name, block in _pools(after)
        if name in old
        for change in _scope_mode_changes(old[name], block, checks, pool=name)
    )


def _pools_gone(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[PoolGone, ...]:
    """The baseline's pools this run did not probe (all of them when this run had no --each-pool)."""
    probed = {name for name, _ in _pools(after)}
    return tuple(
        PoolGone(
            name, tuple(mode_id for mode_id, mode in _records(block.get("modes"), "id").items() if mode.get("usable"))
        )
        for name, block in _pools(before)
        if name not in probed
    )


def _strings(value: object) -> tuple[str, ...]:
    return tuple(_one_line(item) for item in value) if isinstance(value, list) else ()


def _comparable(text: str) -> str:
    """A warning as two runs can compare it: run ids and durations blanked (RUN_SPECIFIC)."""
    for pattern, replacement in RUN_SPECIFIC:
        text = pattern.sub(replacement, text)
    return text


def _summary_warning(summary: object) -> str:
    """The WARNING clause of a check's summary, to its end; '' when there is none."""
    text = _one_line(summary or "")
    return text[text.index(WARNING_MARK) :] if WARNING_MARK in text else ""


def _new_warnings(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[NewWarning, ...]:
    """Warnings this run gives and the baseline did not, pool by pool when both reports have pools."""
    per_pool = bool(_pools(before)) and bool(_pools(after))
    old_scopes = dict(_pools(before)) if per_pool else {"": before}
    new_scopes = _pools(after) if per_pool else [("", after)]
    found: list[NewWarning] = []
    for name, scope in new_scopes:
        if name not in old_scopes:
            continue
        old_modes, old_checks = (
            _records(old_scopes[name].get("modes"), "id"),
            _records(old_scopes[name].get("checks"), "id"),
        )
        for mode_id, mode in _records(scope.get("modes"), "id").items():
            had = {_comparable(text) for text in _strings(old_modes.get(mode_id, {}).get("warnings"))}
            found += [
                NewWarning(name, mode_id, "", text)
                for text in _strings(mode.get("warnings"))
                if _comparable(text) not in had
            ]
        for check_id, check in _records(scope.get("checks"), "id").items():
            warning = _summary_warning(check.get("summary"))
            if warning and not _summary_warning(old_checks.get(check_id, {}).get("summary")):
                found.append(NewWarning(name, "", check_id, warning))
    return tuple(dict.fromkeys(found))


def _recommendation_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[FactChange, ...]:
    old, new = _mapping(before.get("recommendation")), _mapping(after.get("recommendation"))
    return tuple(
        FactChange(key, str(old.get(key, "")), str(new.get(key, "")))
        for key in ("full_docker", "build_only")
        if old.get(key) != new.get(key)
    )


def _node_line(node: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {node[key]}" for key in NODE_FACTS if node.get(key))


def _security_value(node: Mapping[str, Any], key: str) -> str | None:
    """A node's security fact as compared: None when not read; an SELinux label without its per-pod categories."""
    value = node.get(key)
    if value is None:
        return None
    if key == "lsm":
        return ", ".join(str(lsm) for lsm in value) if isinstance(value, list) and value else "none"
    if key == "selinux_label":
        return ":".join(str(value).split(":")[:4])  # user:role:type:level; the MCS categories differ per pod
    return str(value)


def _security_changes(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FactChange]:
    changes = []
    for key in SECURITY_FACTS:
        was, now = _security_value(old, key), _security_value(new, key)
        if was is not None and now is not None and was != now:
            changes.append(FactChange(f"node {name} {key}", was, now))
    return changes


def _node_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FactChange]:
    old_nodes, new_nodes = _records(old.get("nodes"), "name"), _records(new.get("nodes"), "name")
    changes: list[FactChange] = []
    for name in sorted(old_nodes.keys() | new_nodes.keys()):
        if name not in new_nodes:
            changes.append(FactChange(f"node {name}", _node_line(old_nodes[name]) or "present", "gone"))
        elif name not in old_nodes:
            changes.append(FactChange(f"node {name}", "", "new: " + (_node_line(new_nodes[name]) or "no details")))
        else:
            changes.extend(
                FactChange(f"node {name} {key}", str(old_nodes[name].get(key, "")), str(new_nodes[name].get(key, "")))
                for key in NODE_FACTS
                if old_nodes[name].get(key) != new_nodes[name].get(key)
            )
            changes.extend(_security_changes(name, old_nodes[name], new_nodes[name]))
    return changes


def _image_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FactChange]:
    """A moved digest or ref per role; a role or digest absent on one side (an older report, no pod) says nothing."""
    old_images, new_images = _mapping(old.get("images")), _mapping(new.get("images"))
    changes: list[FactChange] = []
    for role in sorted(old_images.keys() & new_images.keys()):
        was, now = _mapping(old_images[role]), _mapping(new_images[role])
        old_ref, new_ref = str(was.get("ref") or ""), str(now.get("ref") or "")
        old_digest, new_digest = str(was.get("digest") or ""), str(now.get("digest") or "")
        if old_ref != new_ref:
            changes.append(
                FactChange(
                    f"image {role}",
                    f"{old_ref} ({old_digest})" if old_digest else old_ref,
                    f"{new_ref} ({new_digest})" if new_digest else new_ref,
                )
            )
        elif old_digest and new_digest and old_digest != new_digest:
            changes.append(FactChange(f"image {role} ({new_ref})", old_digest, new_digest))
    return changes


def _pool_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[FactChange]:
    """Pools added or gone (then every check moves: its label names the pool), and a pool probed on another node."""

    def pools_line(report: Mapping[str, Any]) -> str:
        names = ", ".join(name for name, _ in _pools(report))
        return f"{report.get('pool_label') or '(no label)'}={names}" if names else ""

    changes: list[FactChange] = []
    if pools_line(before) != pools_line(after):
        changes.append(FactChange("node pools", pools_line(before), pools_line(after)))
    old, new = dict(_pools(before)), dict(_pools(after))
    changes.extend(
        FactChange(f"pool {name} probed node", str(old[name].get("node", "")), str(new[name].get("node", "")))
        for name in sorted(old.keys() & new.keys())
        if old[name].get("node") != new[name].get("node")
    )
    return changes


def _cluster_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[FactChange, ...]:
    old, new = _mapping(before.get("cluster")), _mapping(after.get("cluster"))
    changes: list[FactChange] = []
    if old.get("version") != new.get("version"):
        changes.append(FactChange("server version", str(old.get("version", "")), str(new.get("version", ""))))
    return (*changes, *_node_changes(old, new), *_image_changes(old, new), *_pool_changes(before, after))


def compute_changes(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Changes:
    """Every difference that matters to a person watching the cluster night after night."""
    return Changes(
        baseline_generated_at=str(baseline.get("generated_at", "")),
        checks=_check_changes(baseline, current),
        modes=_mode_changes(baseline, current),
        recommendation=_recommendation_changes(baseline, current),
        cluster=_cluster_changes(baseline, current),
        pool_modes=_pool_mode_changes(baseline, current),
        pools_gone=_pools_gone(baseline, current),
        warnings=_new_warnings(baseline, current),
    )


def _head(changes: Changes) -> str:
    since = f"since the baseline of {changes.baseline_generated_at or 'an earlier run'}"
    if changes.empty:
        return f"{since}: no change"
    count = changes.count()
    lost = ", ".join(lost.describe() for lost in changes.lost)
    regressed = f"; REGRESSED: {lost}" if lost else ""
    return f"{since}: {count} change{'s' if count != 1 else ''}{regressed}"


def changes_terminal_lines(changes: Changes) -> list[str]:
    """'since the baseline of DATE: no change', or a count and one line per change.

    New warnings first (nothing else would show them), then pools gone and modes (they matter most).
    """
    lines = [f"new warning: {warning.describe()}" for warning in changes.warnings]
    lines += [gone.describe() for gone in changes.pools_gone]
    lines += [f"mode {change.describe()}" for change in (*changes.modes, *changes.shown_pool_modes)]
    lines += [f"recommendation {change.describe()}" for change in changes.recommendation]
    lines += [f"check {change.describe()}" for change in changes.checks]
    lines += [f"cluster {change.describe()}" for change in changes.cluster]
    return [_head(changes), *(f"  - {line}" for line in lines)]


def _lost_lines(changes: Changes) -> tuple[list[ModeChange], list[PoolGone]]:
    """The mode changes and pools gone behind changes.lost, for the pinned baseline's section."""
    lost = set(changes.lost)
    modes = [change for change in (*changes.pool_modes, *changes.modes) if Lost(change.id, change.pool) in lost]
    return modes, list(changes.pools_gone)


def pinned_terminal_lines(changes: Changes) -> list[str]:
    """'since the pinned baseline of DATE: nothing lost', or what it proved that this run does not, with why."""
    since = f"since the pinned baseline of {changes.baseline_generated_at or 'an earlier run'}"
    if not changes.lost:
        return [f"{since}: nothing lost"]
    modes, gone = _lost_lines(changes)
    lines = [pool.describe() for pool in gone] + [f"mode {change.describe()}" for change in modes]
    head = f"{since}: REGRESSED: {', '.join(lost.describe() for lost in changes.lost)}"
    return [head, *(f"  - {line}" for line in lines)]


def failing_regressions(since_baseline: Changes | None, since_pinned: Changes | None) -> tuple[str, ...]:
    """What --fail-on-regression names: each loss once, those only the pinned baseline sees said so."""
    rolling = tuple(lost.describe() for lost in since_baseline.lost) if since_baseline is not None else ()
    if since_pinned is None:
        return rolling
    date = since_pinned.baseline_generated_at or "an earlier run"
    pinned = tuple(
        f"{lost.describe()} (lost since the pinned baseline of {date})"
        for lost in since_pinned.lost
        if lost.describe() not in rolling
    )
    return (*rolling, *pinned)


def _md(text: str) -> str:
    """Free text (probe summaries, server messages) in a list item: '<none>' stays visible, nothing opens a table."""
    return html.escape(_one_line(text), quote=False).replace("|", "\\|")


def _md_mode(change: ModeChange) -> str:
    def word(usable: bool) -> str:
        return "usable" if usable else "**NOT usable**"

    where = f" on pool `{change.pool}`" if change.pool else ""
    text = f"Mode `{change.id}`{where}: {word(change.was_usable)} → {word(change.is_usable)}"
    if change.blocked_by:
        named = {cause.check for cause in change.causes}
        parts = [
            f"`{cause.check}`: {_md(cause.summary)}" if cause.summary else f"`{cause.check}`" for cause in change.causes
        ]
        rest = ", ".join(f"`{check}`" for check in change.blocked_by if check not in named)
        text += f", blocked by {'; '.join(parts)}" + (f" (also {rest})" if parts and rest else rest)
    return text


def _md_check(change: CheckChange) -> str:
    text = f"Check `{change.id}`: {change.before} → **{change.after}**"
    if change.after_summary:
        text += f": {_md(change.after_summary)}"
    if change.before_summary:
        text += f" (was: {_md(change.before_summary)})"
    return text


def _md_fact(kind: str, change: FactChange) -> str:
    return f"{kind} {_md(change.what)}: {_md(change.before) or '(none)'} → {_md(change.after) or '(none)'}"


def _md_warning(warning: NewWarning) -> str:
    what = f"mode `{warning.mode}`" if warning.mode else f"check `{warning.check}`"
    where = f" on pool `{warning.pool}`" if warning.pool else ""
    return f"New warning, {what}{where}: {_md(warning.warning)}"


def _md_gone(gone: PoolGone) -> str:
    then = f" (usable there then: {', '.join(f'`{mode}`' for mode in gone.was_usable)})" if gone.was_usable else ""
    return f"Pool `{_md(gone.pool)}` was probed in the baseline and **not in this run**{then}"


def _md_regressed(changes: Changes) -> str:
    return f"**Regressed:** {', '.join(lost.markdown() for lost in changes.lost)}."


def changes_markdown(changes: Changes) -> str:
    """A '## What changed since DATE' section: regressions first, then one bullet per change; one line if none."""
    title = f"## What changed since {_md(changes.baseline_generated_at) or 'the baseline'}"
    if changes.empty:
        return f"{title}\n\nNo change.\n"
    bullets = [_md_warning(warning) for warning in changes.warnings]
    bullets += [_md_gone(gone) for gone in changes.pools_gone]
    bullets += [_md_mode(change) for change in (*changes.modes, *changes.shown_pool_modes)]
    bullets += [_md_fact("Recommendation", change) for change in changes.recommendation]
    bullets += [_md_check(change) for change in changes.checks]
    bullets += [_md_fact("Cluster:", change) for change in changes.cluster]
    count = changes.count()
    lead = f"{count} change{'s' if count != 1 else ''}."
    if changes.lost:
        lead = f"{_md_regressed(changes)} {lead}"
    return f"{title}\n\n{lead}\n\n" + "\n".join(f"- {bullet}" for bullet in bullets) + "\n"


def pinned_markdown(changes: Changes) -> str:
    """A '## Lost since the pinned baseline of DATE' section: what it proved and this run does not, or one line."""
    title = f"## Lost since the pinned baseline of {_md(changes.baseline_generated_at) or 'an earlier run'}"
    if not changes.lost:
        return f"{title}\n\nNothing lost.\n"
    modes, gone = _lost_lines(changes)
    bullets = [_md_gone(pool) for pool in gone] + [_md_mode(change) for change in modes]
    lead = (
        f"{_md_regressed(changes)} Proven in the pinned baseline and not now: a regression every run until the pin "
        "is replaced."
    )
    return f"{title}\n\n{lead}\n\n" + "\n".join(f"- {bullet}" for bullet in bullets) + "\n"
