"""What holds on every part of a level: every node pool of an --each-pool run, every cluster of a fleet run.

A CI job may land on any pool its runner reaches, and on any cluster of a fleet, so at a level's top a mode is usable
only where it was proven on every probed part, and the recommendation is the most secure such mode. Each part's own
answer stays in its own block. The level's word ('pool', 'cluster') is what every text here names the parts by.

This module reads the parts' reports through the Assessed protocol only, so the report modules (report.py for pools,
fleet.py for clusters) and the JSON builder each import it, never one another in a circle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol, TypeVar

from probes.model import Mode, OverlayResult, TestedSpec
from reports import recommend, snippets
from reports.recommend import BUILD_ONLY_ORDER, FULL_DOCKER_ORDER, ModeAssessment, Recommendation

POOL = "pool"
CLUSTER = "cluster"


class Assessed(Protocol):
    """What a level reads of one part's own report (a pool's Report, a cluster's Report)."""

    @property
    def assessments(self) -> tuple[ModeAssessment, ...]:
        """Every mode of the decision table, as the part assessed it."""

    @property
    def recommendation(self) -> Recommendation:
        """What the part would get on its own."""

    def is_usable(self, mode: Mode) -> bool:
        """Whether the mode is usable on the part (on all of it)."""

    def tested_specs(self, mode: Mode) -> tuple[TestedSpec, ...]:
        """The pod specs of a mode the part's config is printed from."""

    def cache_class(self) -> OverlayResult | None:
        """The cache StorageClass result that holds on the part, None when none was tested."""


class Part(Protocol):
    """One part of a level: its name (a pool label value, a kubeconfig context) and its own report."""

    @property
    def name(self) -> str:
        """The part's name: a pool label value, a kubeconfig context."""

    @property
    def report(self) -> Assessed:
        """The part's own report."""


P = TypeVar("P", bound=Part)


def prefixed(texts_by_part: Sequence[tuple[str, tuple[str, ...]]], level: str = POOL) -> tuple[str, ...]:
    """A text every part says, once as it is; the others as 'pool ci: ...', part by part (who it holds for)."""
    if not texts_by_part:
        return ()
    shared = set.intersection(*(set(texts) for _, texts in texts_by_part))
    first = tuple(text for text in texts_by_part[0][1] if text in shared)
    own = tuple(f"{level} {name}: {text}" for name, texts in texts_by_part for text in texts if text not in shared)
    return recommend.unique(first + own)


def assess(parts: Sequence[Part], level: str = POOL) -> tuple[ModeAssessment, ...]:
    """Every mode of the decision table, usable only when usable on every part; blockers and causes of every part."""
    per_part = [(part.name, {assessment.mode: assessment for assessment in part.report.assessments}) for part in parts]
    combined = []
    for rule in recommend.DECISION_TABLE:
        found = [(name, by_mode[rule.mode]) for name, by_mode in per_part]
        combined.append(
            ModeAssessment(
                mode=rule.mode,
                usable=all(assessment.usable for _, assessment in found),
                blocked_by=recommend.unique(tuple(check for _, a in found for check in a.blocked_by)),
                warnings=prefixed([(name, assessment.warnings) for name, assessment in found], level),
                causes=prefixed([(name, assessment.causes) for name, assessment in found], level),
            )
        )
    return tuple(combined)


def block_unprobed(assessments: tuple[ModeAssessment, ...], causes: tuple[str, ...]) -> tuple[ModeAssessment, ...]:
    """A part no probe reached proves no mode, so while one exists no mode is usable on every part.

    Its checks did not run there: they block every mode, with the part and why (causes) as the cause.
    """
    if not causes:
        return assessments
    requires = {rule.mode: rule.requires for rule in recommend.DECISION_TABLE}
    return tuple(
        replace(
            assessment,
            usable=False,
            blocked_by=recommend.unique(assessment.blocked_by + requires[assessment.mode]),
            causes=recommend.unique(assessment.causes + causes),
        )
        for assessment in assessments
    )


def unusable(mode: Mode, parts: Sequence[Part], unprobed: Sequence[str]) -> tuple[str, ...]:
    """The parts where a mode is not usable: the probed ones in run order, then every part nothing was proven on."""
    if mode is Mode.NONE:
        return ()
    return (*(part.name for part in parts if not part.report.is_usable(mode)), *unprobed)


def _choice_reason(purpose: str, chosen: Mode, order: tuple[Mode, ...], level: str) -> str:
    ranking = ", ".join(mode.value for mode in order)
    if chosen is Mode.NONE:
        return f"{purpose}: none: no mode among ({ranking}) is usable on every {level}"
    return f"{purpose}: {chosen.value}: the most secure mode usable on every {level} ({ranking})"


def _per_part_reason(purpose: str, parts: Sequence[Part], chosen: Callable[[Recommendation], Mode], level: str) -> str:
    """What each part would get on its own: shows which part holds the every-part answer back."""
    each = ", ".join(f"{part.name} {chosen(part.report.recommendation).value}" for part in parts)
    return f"{purpose} per {level}: {each}"


def _nothing_builds_reason(parts: Sequence[Part], from_source: Mode, level: str) -> str:
    """The advice when no mode builds on every part: alternatives only when no part builds at all."""
    building = [part for part in parts if part.report.recommendation.build_only is not Mode.NONE]
    if not building:
        return recommend.no_dockerfile_path_advice(from_source)
    where = ", ".join(f"{part.name} ({part.report.recommendation.build_only.value})" for part in building)
    return (
        f"no mode builds on every {level}: build only on {level}(s) {where}, "
        f"or fix the others (see each {level}'s block)"
    )


def proven_on(mode: Mode, parts: Sequence[P]) -> P | None:
    """The first part where a pod spec of this mode was proven: the top-level snippet is that part's spec."""
    if mode is Mode.NONE:
        return None
    return next((part for part in parts if snippets.pick_tested(mode, part.report.tested_specs(mode))), None)


def differences(mode: Mode, source: Part, parts: Sequence[Part], level: str = POOL) -> tuple[str, ...]:
    """For each other part, what its own spec of the mode differs in from the source part's: said, never implied."""
    mine = source.report.tested_specs(mode)
    lines = []
    for part in parts:
        if part is source:
            continue
        found = snippets.differences(mode, mine, part.report.tested_specs(mode))
        lines.append(
            f"{level} {part.name}: differs in {', '.join(found)}" if found else f"{level} {part.name}: the same"
        )
    return tuple(lines)


def source_comments(source: Part, differences: tuple[str, ...], level: str = POOL) -> tuple[str, ...]:
    """The comment above a top-level pod spec of a level's report: where it was proven, how the others differ."""
    return (
        f"Proven on {level} {source.name} (its placement is that {level}'s). Each other {level}'s own spec:",
        *differences,
    )


def cache_on_every(parts: Sequence[Part]) -> OverlayResult | None:
    """The cache class result that holds everywhere: a part where overlay failed on it outweighs one where it worked."""
    tested = [found for part in parts if (found := part.report.cache_class()) is not None]
    return next((found for found in tested if found.overlay is not True), next(iter(tested), None))


def recommend_every(
    parts: Sequence[Part], assessments: tuple[ModeAssessment, ...], level: str = POOL
) -> Recommendation:
    """The most secure modes usable on every part, why (per part too), and config proven on one of the parts."""
    choice = recommend.choose(assessments)
    full_docker, build_only, from_source = choice.full_docker, choice.build_only, choice.from_source
    reasons = [
        _choice_reason("full_docker", full_docker, FULL_DOCKER_ORDER, level),
        _per_part_reason("full_docker", parts, lambda found: found.full_docker, level),
        _choice_reason("build_only", build_only, BUILD_ONLY_ORDER, level),
        _per_part_reason("build_only", parts, lambda found: found.build_only, level),
        _choice_reason("from_source", from_source, recommend.FROM_SOURCE_ORDER, level),
    ]
    reasons.extend(recommend.rejection_reason(assessment) for assessment in assessments if not assessment.usable)
    if build_only is Mode.NONE:
        reasons.append(_nothing_builds_reason(parts, from_source, level))
    sources = {
        mode: part for mode in (full_docker, build_only, from_source) if (part := proven_on(mode, parts)) is not None
    }
    said = {mode: differences(mode, source, parts, level) for mode, source in sources.items()}
    reasons.extend(
        f"config to paste for {mode.value}: the pod spec proven on {level} {sources[mode].name}; {'; '.join(lines)}; "
        f"each {level}'s own spec is in its block"
        for mode, lines in said.items()
    )

    def tested(mode: Mode) -> tuple[TestedSpec, ...]:
        source = sources.get(mode)
        return source.report.tested_specs(mode) if source is not None else ()

    comments = {mode: source_comments(sources[mode], lines, level) for mode, lines in said.items()}
    return recommend.conclude(
        choice, assessments, reasons, cache=cache_on_every(parts), tested=tested, comments=comments
    )
