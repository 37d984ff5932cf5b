"""Turn check verdicts into a usable/blocked assessment per mode and a recommended mode.

The decision table is data (DECISION_TABLE): adding or re-ranking a mode means editing one row, not the logic.
Only a PASS proves a capability; fail, inconclusive, skipped and "not run" (a check deselected with -k) all block.
The checks a mode needs must pass on one and the same node: passes on different nodes prove no node does it all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from probes.model import Mode, OverlayResult, RunResult, Status, TestedSpec, Verdict
from reports import snippets

STATUS_WORDS: Mapping[Status, str] = {
    Status.PASS: "passed",
    Status.FAIL: "failed",
    Status.INCONCLUSIVE: "inconclusive",
    Status.SKIPPED: "skipped",
}

HOST_SOCKET_WARNING = "root on the node: any job can take over the node; discouraged"

SAME_NODE_REMEDY = (
    "probe one node: --node NAME, --node-selector KEY=VALUE (the first matching node by name) or --each-pool LABEL "
    "(one node per pool)"
)

ALTERNATIVES_ADVICE = (
    "no verified way to build images on this cluster; UNVERIFIED alternatives (dindcheck did not probe them): "
    "Buildah with --isolation chroot, or a remote builder outside this cluster (BuildKit on a VM, a cloud build "
    "service)"
)

SOURCE_ONLY_ADVICE = (
    "Dockerfile builds have no verified path on this cluster (build_only: none), but source builds do: Cloud Native "
    "Buildpacks (from_source: buildpacks) build your app from its source, without a Dockerfile, and push the image, "
    "as a non-root user with no capabilities (Pod Security restricted); paste the buildpacks config. For Dockerfile "
    "builds, UNVERIFIED alternatives (dindcheck did not probe them): Buildah with --isolation chroot, or a remote "
    "builder outside this cluster"
)


@dataclass(frozen=True)
class ModeRule:
    """One row of the decision table: what a mode needs, what merely worries us, and what it can do."""

    mode: Mode
    requires: tuple[str, ...]
    """Checks that must PASS for the mode to be usable."""
    cautions: tuple[str, ...]
    """Checks read for warnings and for explaining a rejection; they never block."""
    can_run: bool
    can_build: bool
    """Builds a Dockerfile and pushes (build_only)."""
    cache_path: str = ""
    """Where the mode keeps its layer cache: named in overlay advice."""
    standing_warnings: tuple[str, ...] = ()
    """Warnings that hold whatever the checks say."""
    from_source: bool = False
    """Builds an app from its source, without a Dockerfile, and pushes (from_source): never a Dockerfile builder."""


# Rows are in security order (most secure first): the recommendation takes the first usable row that can do the job.
DECISION_TABLE: tuple[ModeRule, ...] = (
    ModeRule(
        mode=Mode.BUILDKIT_ROOTLESS,
        requires=("buildkit-rootless",),
        cautions=("overlay-cache", "lsm", "privileged-admission"),
        can_run=False,
        can_build=True,
        cache_path="/home/user/.local/share/buildkit",
    ),
    ModeRule(
        mode=Mode.KANIKO,
        requires=("kaniko",),
        cautions=("lsm", "privileged-admission"),
        can_run=False,
        can_build=True,
    ),
    ModeRule(
        mode=Mode.SYSBOX,
        requires=("sysbox",),
        cautions=("lsm", "privileged-admission"),
        can_run=True,
        can_build=True,
    ),
    ModeRule(
        mode=Mode.DIND,
        requires=("privileged-admission", "socket-sharing", "docker-run"),
        cautions=("overlay-cache", "lsm", "privileged-admission"),
        can_run=True,
        can_build=True,
        cache_path="/var/lib/docker",
    ),
    ModeRule(
        mode=Mode.HOST_SOCKET,
        requires=("host-socket",),
        cautions=("lsm", "privileged-admission"),
        can_run=True,
        can_build=True,
        standing_warnings=(HOST_SOCKET_WARNING,),
    ),
    # from source only: a question of its own (from_source), after the Dockerfile modes
    ModeRule(
        mode=Mode.BUILDPACKS,
        requires=("buildpacks",),
        cautions=("lsm", "privileged-admission"),
        can_run=False,
        can_build=False,
        from_source=True,
    ),
)

FULL_DOCKER_ORDER: tuple[Mode, ...] = tuple(rule.mode for rule in DECISION_TABLE if rule.can_run)
BUILD_ONLY_ORDER: tuple[Mode, ...] = tuple(rule.mode for rule in DECISION_TABLE if rule.can_build)
FROM_SOURCE_ORDER: tuple[Mode, ...] = tuple(rule.mode for rule in DECISION_TABLE if rule.from_source)


@dataclass(frozen=True)
class ModeAssessment:
    """Whether one mode is usable on this cluster, which checks stand in its way, and what to watch out for."""

    mode: Mode
    usable: bool
    blocked_by: tuple[str, ...]
    warnings: tuple[str, ...]
    causes: tuple[str, ...] = ()
    """Why the mode is not usable, as a cause chain ('privileged-admission failed: ...'); empty when usable."""


@dataclass(frozen=True)
class Recommendation:
    """The modes to use, why (including why the others were rejected), and the config to paste."""

    full_docker: Mode
    build_only: Mode
    reasons: tuple[str, ...]
    snippets: dict[str, str]
    from_source: Mode = Mode.NONE
    """The mode that builds from source without a Dockerfile (buildpacks), apart from build_only's Dockerfile builds."""


@dataclass(frozen=True)
class _Reading:
    """What a caution check says about one mode.

    warnings always reach the mode; hints explain a rejection when the mode is blocked and become warnings when the
    mode is usable anyway (e.g. an LSM setting that would block it on another node pool).
    """

    warnings: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()


def describe_check(check_id: str, verdict: Verdict | None) -> str:
    """One link of a cause chain: 'privileged-admission failed: <summary>' or 'docker-run not run'."""
    if verdict is None:
        return f"{check_id} not run"
    return f"{check_id} {STATUS_WORDS[verdict.status]}: {verdict.summary}"


def _read_overlay_cache(verdict: Verdict | None, rule: ModeRule) -> _Reading:
    """Overlay failing on the cache volume degrades a mode (slow or broken cache) but the mode still works."""
    advice = f"keep {rule.cache_path} on an emptyDir on node disk or use block storage"
    if verdict is None:
        return _Reading(warnings=(f"overlay-cache not run: overlay on the cache volume is unproven; {advice}",))
    if verdict.status is Status.PASS:
        return _Reading()
    cache = verdict.facts.cache_overlay()
    emptydir = verdict.facts.emptydir_overlay()
    outcome = "failed" if verdict.status is Status.FAIL else STATUS_WORDS[verdict.status]
    if cache is not None and cache.overlay is not True:
        nfs_hint = " (the class is RWX-capable, usually NFS-like [inferred])" if cache.nfs_like else ""
        reason = cache.reason or verdict.summary
        return _Reading(
            warnings=(f"overlay on the cache class {cache.storage_class} {outcome}: {reason}{nfs_hint}; {advice}",)
        )
    if emptydir is not None and emptydir.overlay is False:
        return _Reading(
            warnings=(
                (
                    f"overlay on an emptyDir ({emptydir.fs_type or 'unknown fs'}) {outcome}: {verdict.summary}; the "
                    "cache falls back to a slow copying driver (vfs/native); put the node's container storage on "
                    "ext4, xfs or btrfs"
                ),
            ),
        )
    return _Reading(warnings=(f"{describe_check('overlay-cache', verdict)}; {advice}",))


def _read_lsm(verdict: Verdict | None, rule: ModeRule) -> _Reading:
    """An LSM or userns setting that blocks this mode, labelled observed or inferred as the lsm check labels it."""
    if verdict is None:
        return _Reading()
    return _Reading(hints=tuple(f"lsm {block.describe()}" for block in verdict.facts.blocks_for(rule.mode)))


def _read_admission(verdict: Verdict | None, rule: ModeRule) -> _Reading:
    """Who refused this mode's pod spec, and the Warning headers the API server sent about it."""
    if verdict is None:
        return _Reading()
    answer = verdict.facts.admission.get(rule.mode)
    if answer is None:
        return _Reading()
    mode = rule.mode.value
    warnings = tuple(f"admission warning for the {mode} pod: {text}" for text in answer.warnings)
    if answer.admitted is False:
        source = answer.source or "unknown source"
        message = answer.message or "no message"
        return _Reading(warnings=warnings, hints=(f"admission rejected the {mode} pod ({source}): {message}",))
    return _Reading(warnings=warnings)


CAUTION_READERS: Mapping[str, Callable[[Verdict | None, ModeRule], _Reading]] = {
    "overlay-cache": _read_overlay_cache,
    "lsm": _read_lsm,
    "privileged-admission": _read_admission,
}


def _passed(verdict: Verdict | None) -> bool:
    return verdict is not None and verdict.status is Status.PASS


def _readings(run: RunResult, rule: ModeRule) -> _Reading:
    """Every caution check's reading for one mode, merged in table order."""
    warnings: list[str] = []
    hints: list[str] = []
    for check_id in rule.cautions:
        reading = CAUTION_READERS[check_id](run.verdict(check_id), rule)
        warnings.extend(reading.warnings)
        hints.extend(reading.hints)
    return _Reading(warnings=tuple(warnings), hints=tuple(hints))


def split_across_nodes(run: RunResult, rule: ModeRule) -> str:
    """Where a mode's checks ran when that was more than one node ('' when one node, or none recorded).

    A mode is usable only on a node where everything it needs works: privileged admitted on node A and docker run
    working on node B prove neither node does both (a pool with another kernel or runtime, a node without iptables
    nat). Each check's pods may land anywhere unless the run is told where to go.
    """
    ran = [(check_id, verdict.nodes) for check_id in rule.requires if (verdict := run.verdict(check_id)) is not None]
    if len({node for _, nodes in ran for node in nodes}) <= 1:
        return ""
    where = ", ".join(f"{check_id} on {', '.join(nodes)}" for check_id, nodes in ran if nodes)
    return f"proven on different nodes: {where}; no one node was seen to do it all ({SAME_NODE_REMEDY})"


def assess_mode(run: RunResult, rule: ModeRule) -> ModeAssessment:
    """Apply one row of the decision table to the verdicts."""
    blocked_by = tuple(check_id for check_id in rule.requires if not _passed(run.verdict(check_id)))
    reading = _readings(run, rule)
    split = "" if blocked_by else split_across_nodes(run, rule)
    if not blocked_by and not split:
        warnings = rule.standing_warnings + reading.warnings + reading.hints
        return ModeAssessment(mode=rule.mode, usable=True, blocked_by=(), warnings=unique(warnings))
    described = tuple(describe_check(check_id, run.verdict(check_id)) for check_id in blocked_by) or (split,)
    blocked_by = blocked_by or rule.requires
    # a hint that only repeats what a blocking check already quoted (the same server message) adds nothing
    fresh_hints = tuple(hint for hint in reading.hints if not any(hint.split("): ", 1)[-1] in d for d in described))
    causes = described + fresh_hints
    return ModeAssessment(
        mode=rule.mode,
        usable=False,
        blocked_by=blocked_by,
        warnings=unique(rule.standing_warnings + reading.warnings),
        causes=unique(causes),
    )


def assess(run: RunResult) -> tuple[ModeAssessment, ...]:
    """Every mode of the decision table, in table (security) order. Mode.NONE is never assessed."""
    return tuple(assess_mode(run, rule) for rule in DECISION_TABLE)


def unique(texts: tuple[str, ...]) -> tuple[str, ...]:
    """Drop repeated texts (two checks can say the same thing) but keep the first-seen order."""
    return tuple(dict.fromkeys(texts))


def first_usable(order: tuple[Mode, ...], assessments: Mapping[Mode, ModeAssessment]) -> Mode:
    """The most secure usable mode of an order (Mode.NONE when none is)."""
    return next((mode for mode in order if assessments[mode].usable), Mode.NONE)


def choice_reason(purpose: str, chosen: Mode, order: tuple[Mode, ...]) -> str:
    """'full_docker: dind: the first usable mode in security order (...)'."""
    ranking = ", ".join(mode.value for mode in order)
    if chosen is Mode.NONE:
        return f"{purpose}: none: no usable mode among ({ranking})"
    return f"{purpose}: {chosen.value}: the first usable mode in security order ({ranking})"


def rejection_reason(assessment: ModeAssessment) -> str:
    """'dind not usable: <cause>; <cause>'."""
    return f"{assessment.mode.value} not usable: " + "; ".join(assessment.causes)


def tested_cache_class(run: RunResult) -> OverlayResult | None:
    """The cache StorageClass overlay-cache tested, or None when it tested none (or did not run)."""
    verdict = run.verdict("overlay-cache")
    return verdict.facts.cache_overlay() if verdict is not None else None


@dataclass(frozen=True)
class Choice:
    """The most secure usable mode for each question the report answers."""

    full_docker: Mode
    build_only: Mode
    from_source: Mode


def choose(assessments: tuple[ModeAssessment, ...]) -> Choice:
    """The first usable mode of each order (none when no mode of it is usable)."""
    by_mode = {assessment.mode: assessment for assessment in assessments}
    return Choice(
        full_docker=first_usable(FULL_DOCKER_ORDER, by_mode),
        build_only=first_usable(BUILD_ONLY_ORDER, by_mode),
        from_source=first_usable(FROM_SOURCE_ORDER, by_mode),
    )


def conclude(
    choice: Choice,
    assessments: tuple[ModeAssessment, ...],
    reasons: list[str],
    *,
    cache: OverlayResult | None,
    tested: Callable[[Mode], tuple[TestedSpec, ...]],
    comments: Mapping[Mode, tuple[str, ...]] | None = None,
) -> Recommendation:
    """The recommendation of a choice: its reasons, and the config to paste of the specs that were tested."""
    config = snippets.build_snippets(
        full_docker=choice.full_docker,
        build_only=choice.build_only,
        usable=frozenset(assessment.mode for assessment in assessments if assessment.usable),
        cache=cache,
        tested=tested,
        comments=comments,
        from_source=choice.from_source,
    )
    return Recommendation(
        full_docker=choice.full_docker,
        build_only=choice.build_only,
        reasons=tuple(reasons),
        snippets=config,
        from_source=choice.from_source,
    )


def recommend(run: RunResult, assessments: tuple[ModeAssessment, ...] | None = None) -> Recommendation:
    """Pick the most secure usable mode for full Docker and for build-only, and say why for every mode."""
    if assessments is None:
        assessments = assess(run)
    choice = choose(assessments)
    reasons = [
        choice_reason("full_docker", choice.full_docker, FULL_DOCKER_ORDER),
        choice_reason("build_only", choice.build_only, BUILD_ONLY_ORDER),
        choice_reason("from_source", choice.from_source, FROM_SOURCE_ORDER),
    ]
    reasons.extend(rejection_reason(assessment) for assessment in assessments if not assessment.usable)
    if choice.build_only is Mode.NONE:
        reasons.append(no_dockerfile_path_advice(choice.from_source))
    return conclude(choice, assessments, reasons, cache=tested_cache_class(run), tested=run.tested_specs)


def no_dockerfile_path_advice(from_source: Mode) -> str:
    """No Dockerfile builder is usable: say plainly whether source builds still are, and the unverified options."""
    return ALTERNATIVES_ADVICE if from_source is Mode.NONE else SOURCE_ONLY_ADVICE
