"""The config to paste, on its own: at the end of the terminal report, on stdout, or as one file per usable mode.

Only what the report proved: a usable mode's pod spec exactly as a probe ran it (reports.snippets picks it, as for the
Markdown and JSON reports), the SkyPilot and runner snippets of the recommendation. A mode that is not usable, or whose
checks agree on no layout, has no config anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from probes.model import Mode
from reports import levels, snippets
from reports.fleet import ClusterReport, FleetReport

if TYPE_CHECKING:
    from collections.abc import Sequence

    from reports.report import Report


RECOMMENDED = "recommended"
"""--show-config's word for the modes the report recommends (full docker, build only, from source)."""
FITS_LINES = 250
"""The most lines of YAML the terminal report prints itself: the three recommended pods of the permissive testbed are
168 (a rerun to see them costs more than scrolling); beyond, one line says where they are."""
SEPARATOR = "---\n"


@dataclass(frozen=True)
class Shown:
    """What --show-config prints on stdout (YAML, '' for nothing) and, for the terminal report, why not when empty."""

    yaml: str
    note: str


def recommended_modes(report: Report | FleetReport) -> tuple[Mode, ...]:
    """The recommended modes, each once, full docker first (none left out)."""
    found = report.recommendation
    modes = (found.full_docker, found.build_only, found.from_source)
    return tuple(mode for mode in dict.fromkeys(modes) if mode is not Mode.NONE)


def _usable(report: Report | FleetReport, mode: Mode) -> bool:
    return any(assessment.mode is mode and assessment.usable for assessment in report.assessments)


def _parts(report: Report | FleetReport) -> tuple[str, Sequence[levels.Part]]:
    """The level's word and its parts: a fleet's clusters, a multi-pool report's pools (none for one pool)."""
    if isinstance(report, FleetReport):
        return levels.CLUSTER, report.clusters
    return levels.POOL, report.pools


def mode_config(report: Report | FleetReport, mode: Mode) -> str | None:
    """The pod spec a usable mode ran, with its comments, as the Markdown report prints it; None when there is none.

    A multi-pool (fleet) report's spec is the one proven on the first pool (cluster) that proved it, saying how the
    others differ.
    """
    if not _usable(report, mode):
        return None
    recommended = report.recommendation.snippets.get(mode.value)
    if recommended is not None:
        return recommended
    level, parts = _parts(report)
    if not isinstance(report, FleetReport) and not parts:
        return snippets.mode_snippet(mode, report.run.tested_specs(mode))
    source = levels.proven_on(mode, parts)
    if source is None:
        return None
    differences = levels.differences(mode, source, parts, level)
    comments = levels.source_comments(source, differences, level)
    return snippets.mode_snippet(mode, source.report.tested_specs(mode), comments)


def _stream(documents: list[str]) -> str:
    """YAML documents as one stream, for `kubectl apply -f -`."""
    return SEPARATOR.join(document if document.endswith("\n") else document + "\n" for document in documents)


def show(report: Report | FleetReport, which: str) -> Shown:
    """--show-config MODE|recommended: the pod spec(s) as one YAML stream, or nothing and why."""
    if which == RECOMMENDED:
        modes = recommended_modes(report)
        if not modes:
            return Shown("", "no mode is recommended: there is no config to show")
    else:
        mode = Mode(which)
        if not _usable(report, mode):
            blocked = next((a.blocked_by for a in report.assessments if a.mode is mode), ())
            why = f" (blocked by {', '.join(blocked)})" if blocked else ""
            return Shown("", f"{mode.value} is not usable{why}: there is no config to show")
        modes = (mode,)
    found = {mode: mode_config(report, mode) for mode in modes}
    missing = [mode.value for mode, config in found.items() if config is None]
    note = f"no pod spec of {', '.join(missing)} was proven in one layout by every check" if missing else ""
    return Shown(_stream([config for config in found.values() if config is not None]), note)


def config_files(report: Report | FleetReport) -> dict[str, str]:
    """--config-dir: file name -> text; the recommendation's snippets (SkyPilot, runners), every usable mode's pod."""
    files = {f"{key}.yaml": text for key, text in report.recommendation.snippets.items()}
    for assessment in report.assessments:
        config = mode_config(report, assessment.mode)
        if config is not None:
            files[f"{assessment.mode.value}.yaml"] = config
    return files


def owned_names() -> frozenset[str]:
    """Every file name --config-dir may write: a stale one of them is removed, so the directory is this run's only."""
    runners = (snippets.GITLAB_SNIPPET, snippets.GITLAB_BUILDPACKS_SNIPPET, *snippets.TEKTON_SNIPPETS.values())
    keys = {*(mode.value for mode in Mode), "skypilot", *runners}
    return frozenset(f"{key}.yaml" for key in keys)


def write_config_dir(report: Report | FleetReport, directory: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Write config_files into directory; (written, removed): removed are earlier runs' files this run did not prove.

    A fleet report writes one subdirectory per probed cluster (context_dirs names them), holding the files a run
    against that cluster alone writes, so each cluster's config is its own tested spec; paths are then 'dir/file'.
    """
    if isinstance(report, FleetReport):
        written: list[str] = []
        removed: list[str] = []
        for name, cluster in context_dirs(report).items():
            own = write_config_dir(cluster.report, directory / name)
            written += [f"{name}/{file}" for file in own[0]]
            removed += [f"{name}/{file}" for file in own[1]]
        return tuple(written), tuple(removed)
    directory.mkdir(parents=True, exist_ok=True)
    files = config_files(report)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    gone = tuple(sorted(name for name in owned_names() - files.keys() if (directory / name).is_file()))
    for name in gone:
        (directory / name).unlink()
    return tuple(files), gone


UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def context_dirs(report: FleetReport) -> dict[str, ClusterReport]:
    """A directory name per probed cluster: its context, safe as one path component.

    Anything but [A-Za-z0-9._-] becomes '_' (an EKS context is an ARN with ':' and '/'), never '.' or '..', and
    '-2', '-3', ... when two contexts come out the same.
    """
    found: dict[str, ClusterReport] = {}
    for cluster in report.clusters:
        base = UNSAFE.sub("_", cluster.context).strip(".") or "context"
        name, count = base, 1
        while name in found:
            count += 1
            name = f"{base}-{count}"
        found[name] = cluster
    return found


def terminal_lines(report: Report | FleetReport, elsewhere: str = "") -> list[str]:
    """The end of the terminal report: the recommended modes' pod specs, or one line saying where they are.

    elsewhere: where the run already put them (stdout, a directory); said instead of printing them twice.
    """
    shown = show(report, RECOMMENDED)
    if not shown.yaml:
        return [f"config to paste: none ({shown.note})"] if recommended_modes(report) else []
    lines = shown.yaml.splitlines()
    if elsewhere:
        return [f"config to paste: {elsewhere}"]
    if len(lines) > FITS_LINES:
        where = "`--show-config recommended` prints it, `--config-dir DIR` writes it, the Markdown report has it"
        return [f"config to paste: {len(lines)} lines of YAML, too long to print here: {where}"]
    modes = ", ".join(mode.value for mode in recommended_modes(report))
    head = f"config to paste ({modes}; the pod spec each ran; `--show-config recommended | kubectl apply -f -`):"
    return [head, *lines]
