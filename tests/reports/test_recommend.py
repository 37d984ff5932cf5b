"""The decision table over the testbed profiles, and the rules that keep it honest."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import pytest

from probes.definitions import catalog
from probes.model import Mode, RunResult, Status, Verdict
from reports.recommend import (
    ALTERNATIVES_ADVICE,
    BUILD_ONLY_ORDER,
    CAUTION_READERS,
    DECISION_TABLE,
    FULL_DOCKER_ORDER,
    HOST_SOCKET_WARNING,
    ModeAssessment,
    ModeRule,
    assess,
    recommend,
)

MakeVerdict = Callable[..., Verdict]
MakeRun = Callable[..., RunResult]

EXPECTED = {
    "permissive": (Mode.DIND, Mode.BUILDKIT_ROOTLESS),
    "deny-privileged": (Mode.NONE, Mode.BUILDKIT_ROOTLESS),
    "psa-baseline": (Mode.NONE, Mode.NONE),
    "userns-off": (Mode.DIND, Mode.DIND),
    "fuse-cache": (Mode.DIND, Mode.BUILDKIT_ROOTLESS),
}
NON_PASSING = (Status.FAIL, Status.INCONCLUSIVE, Status.SKIPPED)

CHECK_IDS = tuple(definition.id for definition in catalog())


def by_mode(run: RunResult) -> dict[Mode, ModeAssessment]:
    return {assessment.mode: assessment for assessment in assess(run)}


def all_pass(make_verdict: MakeVerdict, *, except_for: dict[str, Status] | None = None) -> tuple[Verdict, ...]:
    statuses = except_for or {}
    return tuple(make_verdict(check_id, statuses.get(check_id, Status.PASS)) for check_id in CHECK_IDS)


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED.items()))
def test_profiles_recommend_the_expected_modes(
    profiles: dict[str, RunResult], name: str, expected: tuple[Mode, Mode]
) -> None:
    recommendation = recommend(profiles[name])
    assert (recommendation.full_docker, recommendation.build_only) == expected


def test_every_profile_is_covered(profiles: dict[str, RunResult]) -> None:
    assert set(profiles) == set(EXPECTED)


def test_psa_baseline_advises_unverified_alternatives(profiles: dict[str, RunResult]) -> None:
    reasons = recommend(profiles["psa-baseline"]).reasons
    assert ALTERNATIVES_ADVICE in reasons
    assert "UNVERIFIED" in ALTERNATIVES_ADVICE
    for alternative in ("Buildah", "chroot", "remote builder"):
        assert alternative in ALTERNATIVES_ADVICE


def test_alternatives_are_only_advised_when_nothing_builds(profile_run: RunResult) -> None:
    recommendation = recommend(profile_run)
    assert (ALTERNATIVES_ADVICE in recommendation.reasons) == (recommendation.build_only is Mode.NONE)


def test_psa_baseline_explains_who_refused_buildkit(profiles: dict[str, RunResult]) -> None:
    reasons = recommend(profiles["psa-baseline"]).reasons
    rejection = next(reason for reason in reasons if reason.startswith("buildkit-rootless not usable: "))
    assert "buildkit-rootless failed: buildkitd pod rejected" in rejection
    assert "admission rejected the buildkit-rootless pod (pod-security-admission)" in rejection
    assert 'securityContext.seccompProfile.type to "Unconfined"' in rejection


def test_deny_privileged_gives_the_cause_chain_for_dind(profiles: dict[str, RunResult]) -> None:
    reasons = recommend(profiles["deny-privileged"]).reasons
    rejection = next(reason for reason in reasons if reason.startswith("dind not usable: "))
    assert rejection.startswith(
        "dind not usable: privileged-admission failed: the dind pod was rejected by ValidatingAdmissionPolicy"
    )
    assert "socket-sharing skipped: the dind pod was not admitted" in rejection
    assert "admission rejected the dind pod (validating-admission-policy)" in rejection
    assert by_mode(profiles["deny-privileged"])[Mode.DIND].blocked_by == (
        "privileged-admission",
        "socket-sharing",
        "docker-run",
    )


def test_userns_off_blames_the_observed_sysctl(profiles: dict[str, RunResult]) -> None:
    reasons = recommend(profiles["userns-off"]).reasons
    assert (
        "buildkit-rootless not usable: buildkit-rootless failed: rootlesskit: fork/exec /proc/self/exe: "
        "no space left on device; lsm observed: user.max_user_namespaces=0"
    ) in reasons


def test_fuse_cache_warns_about_the_cache_class_but_keeps_dind(profiles: dict[str, RunResult]) -> None:
    dind = by_mode(profiles["fuse-cache"])[Mode.DIND]
    assert dind.usable
    assert dind.blocked_by == ()
    assert (
        "overlay on the cache class fuse-cache failed: overlayfs: upper fs does not support tmpfile; "
        "keep /var/lib/docker on an emptyDir on node disk or use block storage"
    ) in dind.warnings


@pytest.mark.parametrize("status", [Status.INCONCLUSIVE, Status.SKIPPED])
def test_unproven_overlay_warns_without_blocking(make_verdict: MakeVerdict, make_run: MakeRun, status: Status) -> None:
    run = make_run(*all_pass(make_verdict, except_for={"overlay-cache": status}))
    dind = by_mode(run)[Mode.DIND]
    assert dind.usable
    assert any(warning.startswith(f"overlay-cache {status.value}") for warning in dind.warnings)


def test_overlay_not_run_warns_that_the_cache_is_unproven(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    verdicts = tuple(v for v in all_pass(make_verdict) if v.id != "overlay-cache")
    dind = by_mode(make_run(*verdicts))[Mode.DIND]
    assert dind.usable
    assert any(warning.startswith("overlay-cache not run") for warning in dind.warnings)


def test_overlay_failing_on_emptydir_says_the_cache_degrades(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    overlay = make_verdict(
        "overlay-cache",
        Status.FAIL,
        "overlay failed on the emptyDir",
        {"emptydir": {"overlay": False, "fs_type": "nfs"}},
    )
    verdicts = tuple(overlay if v.id == "overlay-cache" else v for v in all_pass(make_verdict))
    warnings = by_mode(make_run(*verdicts))[Mode.DIND].warnings
    assert any("overlay on an emptyDir (nfs) failed" in warning and "vfs" in warning for warning in warnings)


def test_sysbox_is_preferred_over_dind_when_both_work(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    recommendation = recommend(make_run(*all_pass(make_verdict)))
    assert recommendation.full_docker is Mode.SYSBOX
    assert recommendation.build_only is Mode.BUILDKIT_ROOTLESS


def test_kaniko_builds_when_rootless_buildkit_does_not(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    """Kaniko needs neither privileged nor user namespaces: it comes before sysbox and dind for build + push."""
    run = make_run(*all_pass(make_verdict, except_for={"buildkit-rootless": Status.FAIL}))
    recommendation = recommend(run)
    assert recommendation.build_only is Mode.KANIKO
    assert recommendation.full_docker is Mode.SYSBOX  # Kaniko never runs containers


def test_sysbox_builds_when_neither_rootless_builder_does(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    run = make_run(
        *all_pass(make_verdict, except_for={"buildkit-rootless": Status.FAIL, "kaniko": Status.INCONCLUSIVE})
    )
    assert recommend(run).build_only is Mode.SYSBOX


def test_host_socket_is_the_last_resort(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    run = make_run(make_verdict("host-socket"))
    recommendation = recommend(run)
    assert (recommendation.full_docker, recommendation.build_only) == (Mode.HOST_SOCKET, Mode.HOST_SOCKET)


@pytest.mark.parametrize("status", [*NON_PASSING, Status.PASS])
def test_host_socket_always_carries_its_warning(make_verdict: MakeVerdict, make_run: MakeRun, status: Status) -> None:
    host_socket = by_mode(make_run(make_verdict("host-socket", status)))[Mode.HOST_SOCKET]
    assert HOST_SOCKET_WARNING in host_socket.warnings
    assert "discouraged" in HOST_SOCKET_WARNING


def test_host_socket_warning_holds_when_the_check_was_not_run(make_run: MakeRun) -> None:
    assert HOST_SOCKET_WARNING in by_mode(make_run())[Mode.HOST_SOCKET].warnings


def test_absent_checks_never_count_as_pass(make_run: MakeRun) -> None:
    run = make_run()
    recommendation = recommend(run)
    assert (recommendation.full_docker, recommendation.build_only) == (Mode.NONE, Mode.NONE)
    for rule in DECISION_TABLE:
        assessment = by_mode(run)[rule.mode]
        assert not assessment.usable
        assert assessment.blocked_by == rule.requires
        assert assessment.causes == tuple(f"{check_id} not run" for check_id in rule.requires)


def test_one_deselected_requirement_blocks_dind(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    verdicts = tuple(v for v in all_pass(make_verdict) if v.id != "socket-sharing")
    run = make_run(*verdicts)
    assert by_mode(run)[Mode.DIND].blocked_by == ("socket-sharing",)
    assert "dind not usable: socket-sharing not run" in recommend(run).reasons


@pytest.mark.parametrize("status", NON_PASSING)
@pytest.mark.parametrize("rule", DECISION_TABLE, ids=lambda rule: rule.mode.value)
def test_any_requirement_not_passing_blocks(
    make_verdict: MakeVerdict, make_run: MakeRun, rule: ModeRule, status: Status
) -> None:
    for required in rule.requires:
        run = make_run(*all_pass(make_verdict, except_for={required: status}))
        assessment = by_mode(run)[rule.mode]
        assert not assessment.usable
        assert assessment.blocked_by == (required,)


def test_inconclusive_blocks_and_says_so(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    run = make_run(make_verdict("buildkit-rootless", Status.INCONCLUSIVE, "image pull failed"))
    assert recommend(run).build_only is Mode.NONE
    assert "buildkit-rootless not usable: buildkit-rootless inconclusive: image pull failed" in recommend(run).reasons


def test_none_is_never_assessed(profile_run: RunResult) -> None:
    modes = [assessment.mode for assessment in assess(profile_run)]
    assert Mode.NONE not in modes
    assert sorted(mode.value for mode in modes) == sorted(mode.value for mode in Mode if mode is not Mode.NONE)


def test_every_rejection_and_choice_has_a_reason(profile_run: RunResult) -> None:
    recommendation = recommend(profile_run)
    assert recommendation.reasons[0].startswith(f"full_docker: {recommendation.full_docker.value}")
    assert recommendation.reasons[1].startswith(f"build_only: {recommendation.build_only.value}")
    for assessment in assess(profile_run):
        rejected = any(reason.startswith(f"{assessment.mode.value} not usable: ") for reason in recommendation.reasons)
        assert rejected == (not assessment.usable)
        assert bool(assessment.causes) == (not assessment.usable)


def test_lsm_inferred_blocks_are_labelled_inferred(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    lsm = make_verdict(
        "lsm",
        Status.FAIL,
        "AppArmor may restrict unprivileged user namespaces",
        {
            "blocks": {"buildkit-rootless": "kernel.apparmor_restrict_unprivileged_userns=1 (Ubuntu 24.04 default)"},
            "observed": [],
            "inferred": ["kernel.apparmor_restrict_unprivileged_userns=1"],
        },
    )
    run = make_run(lsm, make_verdict("buildkit-rootless", Status.FAIL, "rootlesskit: permission denied"))
    rejection = next(r for r in recommend(run).reasons if r.startswith("buildkit-rootless not usable"))
    assert rejection.endswith("lsm inferred: kernel.apparmor_restrict_unprivileged_userns=1 (Ubuntu 24.04 default)")


def test_lsm_block_on_a_usable_mode_becomes_a_warning(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    lsm = make_verdict("lsm", Status.FAIL, "userns limited", {"blocks": {"buildkit-rootless": "limited userns"}})
    run = make_run(lsm, make_verdict("buildkit-rootless"))
    assert "lsm observed: limited userns" in by_mode(run)[Mode.BUILDKIT_ROOTLESS].warnings


def test_admission_warning_headers_reach_the_mode(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    specs = {"specs": {"dind": {"admitted": True, "warnings": ["would violate PodSecurity restricted:latest"]}}}
    run = make_run(make_verdict("privileged-admission", evidence=specs))
    assert (
        "admission warning for the dind pod: would violate PodSecurity restricted:latest"
        in by_mode(run)[Mode.DIND].warnings
    )


def test_the_recommendation_reads_facts_not_evidence(make_run: MakeRun) -> None:
    """Evidence is for people: odd evidence with no typed facts cannot move the recommendation."""
    odd = {"cache_class": "fuse", "emptydir": None, "blocks": ["buildkit-rootless"], "specs": {"dind": "refused"}}
    run = make_run(
        *(
            Verdict(id=check_id, capability=check_id, status=Status.FAIL, summary="odd", evidence=odd)
            for check_id in ("overlay-cache", "lsm", "privileged-admission")
        )
    )
    recommendation = recommend(run)
    assert recommendation.full_docker is Mode.NONE
    assert "overlay-cache failed: odd" in by_mode(run)[Mode.DIND].warnings[0]


def test_decision_table_names_only_known_checks() -> None:
    for rule in DECISION_TABLE:
        assert set(rule.requires) <= set(CHECK_IDS)
        assert set(rule.cautions) <= set(CAUTION_READERS)
        assert rule.can_build or rule.can_run or rule.from_source


def test_orders_follow_the_security_first_contract() -> None:
    assert FULL_DOCKER_ORDER == (Mode.SYSBOX, Mode.DIND, Mode.HOST_SOCKET)
    assert BUILD_ONLY_ORDER == (Mode.BUILDKIT_ROOTLESS, Mode.KANIKO, Mode.SYSBOX, Mode.DIND, Mode.HOST_SOCKET)


def test_dind_requirements_match_the_contract() -> None:
    rules = {rule.mode: rule for rule in DECISION_TABLE}
    assert rules[Mode.DIND].requires == ("privileged-admission", "socket-sharing", "docker-run")
    assert rules[Mode.BUILDKIT_ROOTLESS].requires == ("buildkit-rootless",)
    assert not rules[Mode.BUILDKIT_ROOTLESS].can_run
    assert rules[Mode.SYSBOX].requires == ("sysbox",)
    assert rules[Mode.HOST_SOCKET].requires == ("host-socket",)
    assert rules[Mode.KANIKO].requires == ("kaniko",)
    assert not rules[Mode.KANIKO].can_run


def test_a_server_message_quoted_by_the_blocking_check_is_not_repeated(
    make_verdict: MakeVerdict, make_run: MakeRun
) -> None:
    message = 'pods "p" is forbidden: violates PodSecurity "baseline:latest": privileged'
    refused = {"admitted": False, "message": message, "source": "pod-security-admission", "warnings": []}
    run = make_run(
        make_verdict(
            "privileged-admission",
            Status.FAIL,
            f"privileged pod rejected by pod-security-admission: {message}",
            {"specs": {"dind": refused}},
        ),
    )
    rejection = next(reason for reason in recommend(run).reasons if reason.startswith("dind not usable: "))
    assert rejection.count(message) == 1


# --- one node must prove everything a mode needs ---

DIND_CHECKS = ("privileged-admission", "socket-sharing", "docker-run")


def on_nodes(make_verdict: MakeVerdict, placed: Mapping[str, tuple[str, ...]]) -> tuple[Verdict, ...]:
    """Passing verdicts of the given checks, each recorded as run on the given nodes (as the engine records them)."""
    return tuple(replace(make_verdict(check_id), nodes=nodes) for check_id, nodes in placed.items())


def test_dind_proven_piecewise_on_two_nodes_is_not_usable(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    """Privileged admitted and the socket shared on node-a, nested docker run on node-b: no node did it all."""
    placed = {"privileged-admission": ("node-a",), "socket-sharing": ("node-a",), "docker-run": ("node-b",)}
    run = make_run(*on_nodes(make_verdict, placed))
    dind = by_mode(run)[Mode.DIND]
    assert not dind.usable
    assert dind.blocked_by == DIND_CHECKS
    cause = "proven on different nodes: privileged-admission on node-a, socket-sharing on node-a, docker-run on node-b"
    assert dind.causes[0].startswith(cause), dind.causes
    assert "--node NAME" in dind.causes[0]
    assert "--each-pool LABEL" in dind.causes[0]
    recommendation = recommend(run)
    assert recommendation.full_docker is Mode.NONE
    assert any(reason.startswith(f"dind not usable: {cause}") for reason in recommendation.reasons)
    assert Mode.DIND.value not in recommendation.snippets


def test_one_check_whose_pods_spread_over_two_nodes_proves_neither(
    make_verdict: MakeVerdict, make_run: MakeRun
) -> None:
    placed = {"privileged-admission": ("node-a",), "socket-sharing": ("node-a", "node-b"), "docker-run": ("node-a",)}
    dind = by_mode(make_run(*on_nodes(make_verdict, placed)))[Mode.DIND]
    assert not dind.usable
    assert "socket-sharing on node-a, node-b" in dind.causes[0]


def test_dind_proven_on_one_node_is_usable(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    run = make_run(*on_nodes(make_verdict, dict.fromkeys(DIND_CHECKS, ("node-a",))))
    assert by_mode(run)[Mode.DIND].usable
    assert recommend(run).full_docker is Mode.DIND


def test_modes_are_judged_each_on_their_own_checks_nodes(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    """Rootless BuildKit on node-b and DinD on node-a: each mode was proven whole on one node, so both are usable."""
    placed = {**dict.fromkeys(DIND_CHECKS, ("node-a",)), "buildkit-rootless": ("node-b",)}
    found = by_mode(make_run(*on_nodes(make_verdict, placed)))
    assert found[Mode.DIND].usable
    assert found[Mode.BUILDKIT_ROOTLESS].usable


def test_a_failing_check_is_the_cause_not_the_nodes(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    verdicts = (
        *on_nodes(make_verdict, {"privileged-admission": ("node-a",), "socket-sharing": ("node-a",)}),
        replace(make_verdict("docker-run", Status.FAIL, "no iptables nat"), nodes=("node-b",)),
    )
    dind = by_mode(make_run(*verdicts))[Mode.DIND]
    assert dind.blocked_by == ("docker-run",)
    assert dind.causes == ("docker-run failed: no iptables nat",)
