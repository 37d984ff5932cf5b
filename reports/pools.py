"""What holds on every node pool of an --each-pool run: the top level of such a report.

A CI job may land on any pool its runner reaches, so at top level a mode is usable only where it was proven on every
probed pool, and the recommendation is the most secure such mode. Each pool's own answer stays in its pool block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from probes.model import Mode, OverlayResult, TestedSpec
from reports import recommend, snippets
from reports.recommend import BUILD_ONLY_ORDER, FULL_DOCKER_ORDER, ModeAssessment, Recommendation

if TYPE_CHECKING:
    from reports.report import PoolReport


def pool_prefixed(texts_by_pool: Sequence[tuple[str, tuple[str, ...]]]) -> tuple[str, ...]:
    """A text every pool says, once as it is; the others as 'pool ci: ...', pool by pool (who it holds for)."""
    if not texts_by_pool:
        return ()
    shared = set.intersection(*(set(texts) for _, texts in texts_by_pool))
    first = tuple(text for text in texts_by_pool[0][1] if text in shared)
    own = tuple(f"pool {name}: {text}" for name, texts in texts_by_pool for text in texts if text not in shared)
    return recommend.unique(first + own)


def assess(pools: Sequence[PoolReport]) -> tuple[ModeAssessment, ...]:
    """Every mode of the decision table, usable only when usable on every pool; blockers and causes of every pool."""
    per_pool = [(pool.name, {assessment.mode: assessment for assessment in pool.report.assessments}) for pool in pools]
    combined = []
    for rule in recommend.DECISION_TABLE:
        found = [(name, by_mode[rule.mode]) for name, by_mode in per_pool]
        combined.append(
            ModeAssessment(
                mode=rule.mode,
                usable=all(assessment.usable for _, assessment in found),
                blocked_by=recommend.unique(tuple(check for _, a in found for check in a.blocked_by)),
                warnings=pool_prefixed([(name, assessment.warnings) for name, assessment in found]),
                causes=pool_prefixed([(name, assessment.causes) for name, assessment in found]),
            )
        )
    return tuple(combined)


def _choice_reason(purpose: str, chosen: Mode, order: tuple[Mode, ...]) -> str:
    ranking = ", ".join(mode.value for mode in order)
    if chosen is Mode.NONE:
        return f"{purpose}: none: no mode among ({ranking}) is usable on every pool"
    return f"{purpose}: {chosen.value}: the most secure mode usable on every pool ({ranking})"


def _per_pool_reason(purpose: str, pools: Sequence[PoolReport], chosen: Callable[[Recommendation], Mode]) -> str:
    """What each pool would get on its own: shows which pool holds the every-pool answer back."""
    each = ", ".join(f"{pool.name} {chosen(pool.report.recommendation).value}" for pool in pools)
    return f"{purpose} per pool: {each}"


def _nothing_builds_reason(pools: Sequence[PoolReport], from_source: Mode) -> str:
    """The advice when no mode builds on every pool: alternatives only when no pool builds at all."""
    building = [pool for pool in pools if pool.report.recommendation.build_only is not Mode.NONE]
    if not building:
        return recommend.no_dockerfile_path_advice(from_source)
    where = ", ".join(f"{pool.name} ({pool.report.recommendation.build_only.value})" for pool in building)
    return f"no mode builds on every pool: build only on pool(s) {where}, or fix the others (see each pool's block)"


def proven_on(mode: Mode, pools: Sequence[PoolReport]) -> PoolReport | None:
    """The first pool where a pod spec of this mode was proven: the top-level snippet is that pool's spec."""
    if mode is Mode.NONE:
        return None
    return next((pool for pool in pools if snippets.pick_tested(mode, pool.report.run.tested_specs(mode))), None)


def pool_differences(mode: Mode, source: PoolReport, pools: Sequence[PoolReport]) -> tuple[str, ...]:
    """For each other pool, what its own spec of the mode differs in from the source pool's: said, never implied."""
    mine = source.report.run.tested_specs(mode)
    lines = []
    for pool in pools:
        if pool is source:
            continue
        found = snippets.differences(mode, mine, pool.report.run.tested_specs(mode))
        lines.append(f"pool {pool.name}: differs in {', '.join(found)}" if found else f"pool {pool.name}: the same")
    return tuple(lines)


def source_comments(source: PoolReport, differences: tuple[str, ...]) -> tuple[str, ...]:
    """The comment above a top-level pod spec of a multi-pool report: where it was proven, how the others differ."""
    return (f"Proven on pool {source.name} (its placement is that pool's). Each other pool's own spec:", *differences)


def _cache_on_every_pool(pools: Sequence[PoolReport]) -> OverlayResult | None:
    """The cache class result that holds everywhere: a pool where overlay failed on it outweighs one where it worked."""
    tested = [found for pool in pools if (found := recommend.tested_cache_class(pool.report.run)) is not None]
    return next((found for found in tested if found.overlay is not True), next(iter(tested), None))


def recommend_every_pool(pools: Sequence[PoolReport], assessments: tuple[ModeAssessment, ...]) -> Recommendation:
    """The most secure modes usable on every pool, why (per pool too), and config proven on one of the pools."""
    choice = recommend.choose(assessments)
    full_docker, build_only, from_source = choice.full_docker, choice.build_only, choice.from_source
    reasons = [
        _choice_reason("full_docker", full_docker, FULL_DOCKER_ORDER),
        _per_pool_reason("full_docker", pools, lambda found: found.full_docker),
        _choice_reason("build_only", build_only, BUILD_ONLY_ORDER),
        _per_pool_reason("build_only", pools, lambda found: found.build_only),
        _choice_reason("from_source", from_source, recommend.FROM_SOURCE_ORDER),
    ]
    reasons.extend(recommend.rejection_reason(assessment) for assessment in assessments if not assessment.usable)
    if build_only is Mode.NONE:
        reasons.append(_nothing_builds_reason(pools, from_source))
    sources = {
        mode: pool for mode in (full_docker, build_only, from_source) if (pool := proven_on(mode, pools)) is not None
    }
    said = {mode: pool_differences(mode, source, pools) for mode, source in sources.items()}
    reasons.extend(
        f"config to paste for {mode.value}: the pod spec proven on pool {sources[mode].name}; {'; '.join(lines)}; "
        "each pool's own spec is in its block"
        for mode, lines in said.items()
    )

    def tested(mode: Mode) -> tuple[TestedSpec, ...]:
        source = sources.get(mode)
        return source.report.run.tested_specs(mode) if source is not None else ()

    comments = {mode: source_comments(sources[mode], lines) for mode, lines in said.items()}
    return recommend.conclude(
        choice, assessments, reasons, cache=_cache_on_every_pool(pools), tested=tested, comments=comments
    )
