"""from_source: buildpacks answer "can I build from source?", apart from build_only's "can I build a Dockerfile?".

On a cluster whose namespaces enforce Pod Security restricted, no Dockerfile builder is admitted and buildpacks
are: the report must say build_only none, from_source buildpacks, and that plainly, with the config to paste.
"""

from __future__ import annotations

from pathlib import Path

import yaml

import reports
from probes import specs
from probes.model import Mode, RunResult, Status, TestedSpec
from probes.settings import Images, Resources
from reports import json_report, recommend, snippets
from tests.reports.conftest import (
    CI_NODES,
    DEFAULT_NODES,
    DIND_NOT_ADMITTED,
    TESTBED_NODE_VERDICTS,
    TESTED_IMAGES,
    TESTED_RESOURCES,
    make_pool,
    make_pools_run,
    make_run,
    make_verdict,
    permissive,
    psa_baseline,
)

RESTRICTED_DIND = (
    'pods "dindcheck-dind" is forbidden: violates PodSecurity "restricted:latest": privileged (container "dind" must '
    "not set securityContext.privileged=true)"
)


def psa_restricted() -> RunResult:
    """--psa-default restricted: privileged, Unconfined profiles and root are refused; buildpacks build and push."""
    return make_run(
        make_verdict("privileged-admission", Status.FAIL, f"privileged pod rejected: {RESTRICTED_DIND}"),
        *DIND_NOT_ADMITTED,
        make_verdict("buildkit-rootless", Status.FAIL, 'buildkitd pod rejected by PodSecurity "restricted:latest"'),
        make_verdict("kaniko", Status.FAIL, 'the Kaniko pod was rejected by PodSecurity "restricted:latest"'),
        make_verdict("buildpacks", summary="built a Procfile app from source (no Dockerfile) and pushed it"),
        *TESTBED_NODE_VERDICTS,
    )


def test_restricted_cluster_has_no_dockerfile_path_but_a_source_path() -> None:
    recommendation = recommend.recommend(psa_restricted())
    assert recommendation.full_docker is Mode.NONE
    assert recommendation.build_only is Mode.NONE
    assert recommendation.from_source is Mode.BUILDPACKS
    assert recommend.SOURCE_ONLY_ADVICE in recommendation.reasons
    assert recommend.ALTERNATIVES_ADVICE not in recommendation.reasons  # "no verified way to build" would be false
    assert "from_source: buildpacks: the first usable mode in security order (buildpacks)" in recommendation.reasons


def test_the_plain_sentence_says_what_a_user_can_do() -> None:
    advice = recommend.SOURCE_ONLY_ADVICE
    assert advice.startswith("Dockerfile builds have no verified path on this cluster (build_only: none), but source")
    assert "without a Dockerfile" in advice
    assert "paste the buildpacks config" in advice


def test_buildpacks_never_answer_for_dockerfile_builds() -> None:
    assert Mode.BUILDPACKS not in recommend.BUILD_ONLY_ORDER
    assert Mode.BUILDPACKS not in recommend.FULL_DOCKER_ORDER
    assert recommend.FROM_SOURCE_ORDER == (Mode.BUILDPACKS,)


def test_the_tested_buildpacks_spec_is_the_config_to_paste() -> None:
    recommendation = recommend.recommend(psa_restricted())
    pod = yaml.safe_load(recommendation.snippets["buildpacks"])
    tested = psa_restricted().tested_specs(Mode.BUILDPACKS)[0]
    assert pod["spec"] == tested.spec
    assert pod["spec"]["containers"][0]["image"] == TESTED_IMAGES.builder
    assert pod["spec"]["containers"][0]["resources"] == TESTED_RESOURCES.to_spec()
    assert "Pod Security restricted" in recommendation.snippets["buildpacks"]


def test_json_carries_from_source_and_validates() -> None:
    report = reports.build_report(psa_restricted()).json
    assert report["recommendation"]["build_only"] == "none"
    assert report["recommendation"]["from_source"] == "buildpacks"
    assert {"id": "buildpacks", "usable": True, "blocked_by": [], "warnings": []} in report["modes"]
    assert json_report.validate(report) is True


def test_terminal_and_markdown_keep_the_two_questions_apart() -> None:
    report = reports.build_report(psa_restricted())
    lines = reports.render_terminal(report)
    assert "build only (build + push): none" in lines
    assert "from source, no Dockerfile (build + push): buildpacks" in lines
    assert f"  - {recommend.SOURCE_ONLY_ADVICE}" in lines
    markdown = reports.render_markdown(report)
    assert "**Build only (build + push):** `none` · **From source, no Dockerfile:** `buildpacks`" in markdown
    assert "Cloud Native Buildpacks creator, from source (pod spec)" in markdown
    assert "- **buildpacks**: No privileged, no root, no capability" in markdown


def test_where_nothing_builds_at_all_the_unverified_alternatives_stay() -> None:
    recommendation = recommend.recommend(psa_baseline())
    assert recommendation.from_source is Mode.NONE
    assert recommend.ALTERNATIVES_ADVICE in recommendation.reasons
    assert recommend.SOURCE_ONLY_ADVICE not in recommendation.reasons


def test_where_dockerfile_builds_work_from_source_is_its_own_answer() -> None:
    run = make_run(*permissive().verdicts, make_verdict("buildpacks"))
    recommendation = recommend.recommend(run)
    assert recommendation.build_only is Mode.BUILDKIT_ROOTLESS
    assert recommendation.from_source is Mode.BUILDPACKS
    assert set(recommendation.snippets) >= {"buildkit-rootless", "buildpacks"}
    assert recommend.SOURCE_ONLY_ADVICE not in recommendation.reasons


EXAMPLE = Path(__file__).parents[2] / "examples" / "gitlab-ci-buildpacks.yml"


def default_buildpacks_spec() -> TestedSpec:
    """The buildpacks spec with the default images and resources, as the probe records it."""
    spec = specs.buildpacks_pod_spec(Images(), Resources(), image="localhost:5000/dindcheck/buildpacks:abcde")
    return specs.record(Mode.BUILDPACKS, "buildpacks", spec, proven=True)


def test_the_gitlab_job_calls_the_creator_as_tested() -> None:
    tested = default_buildpacks_spec()
    text = snippets.gitlab_buildpacks_snippet(tested)
    job = yaml.safe_load(text)["buildpacks-build"]
    (creator,) = tested.spec["containers"]
    assert job["image"] == {"name": creator["image"], "entrypoint": [""]}
    assert job["variables"] == {"CNB_PLATFORM_API": "0.13"}
    (command,) = job["script"]
    assert command.startswith(
        '/cnb/lifecycle/creator -app="$CI_PROJECT_DIR" -layers=/layers -log-level=info -no-color '
    )
    assert command.endswith('"$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA"')
    assert "termination-log" not in command  # where the probe reads its digest, not a job's business
    for line in ("run_as_non_root = true", "allow_privilege_escalation = false", 'drop = ["ALL"]', "RuntimeDefault"):
        assert line in text


def test_the_gitlab_job_comes_with_buildpacks_recommended_for_source_builds() -> None:
    assert "gitlab-buildpacks" in recommend.recommend(psa_restricted()).snippets
    assert "gitlab-buildpacks" not in recommend.recommend(permissive()).snippets


def test_the_gitlab_example_is_what_the_renderer_writes() -> None:
    """examples/gitlab-ci-buildpacks.yml (checked against GitLab's CI schema by examples/validate) is the snippet."""
    assert EXAMPLE.read_text(encoding="utf-8") == snippets.gitlab_buildpacks_snippet(default_buildpacks_spec())


def test_every_pool_restricted_gives_from_source_buildpacks_on_every_pool() -> None:
    verdicts = psa_restricted().verdicts
    run = make_pools_run(make_pool("default", DEFAULT_NODES, verdicts), make_pool("ci", CI_NODES, verdicts))
    recommendation = reports.build_report(run).recommendation
    assert (recommendation.build_only, recommendation.from_source) == (Mode.NONE, Mode.BUILDPACKS)
    assert recommend.SOURCE_ONLY_ADVICE in recommendation.reasons
    assert "buildpacks" in recommendation.snippets
