"""The report's Tekton forms (kaniko-tekton, buildpacks-tekton) are accepted by the API server with Tekton's CRDs.

testbed/up installs Tekton Pipelines' CRDs as released (github.com/tektoncd/pipeline v1.0.0, config/300-crds): no
controller and no webhook. So the proof is a server-side dry run with strict field validation against the CRDs'
structural OpenAPI schemas, whose v1 Task types every step down to the container fields (image, command, args, env,
securityContext, volumeMounts, computeResources): an unknown field, a wrong type or a missing step name is refused.
The negative controls prove that, so an accepted snippet means something. What only Tekton's webhook checks (its
semantic rules, e.g. that a $(results...) reference names a declared result) is not proven here.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from probes import specs
from probes.engine import Outcome, ProbeContext, RunScope, Task, pasted
from probes.model import Mode, Placement, TestedSpec
from probes.settings import Images, Resources
from reports import snippets
from testbed.conformance.harness import REPO, Profile, SuiteRun, kubectl, kubectl_answer

CRDS = ("tasks.tekton.dev", "taskruns.tekton.dev", "pipelines.tekton.dev", "pipelineruns.tekton.dev")
NAMESPACE = "default"  # a dry run creates nothing
EXPECTED_FORM = {"from_source": Mode.BUILDPACKS, "build_only": Mode.KANIKO}
"""Where the report recommends these builders, their Tekton form must be among its snippets."""


def dry_run(env: dict[str, str], documents: str) -> subprocess.CompletedProcess[str]:
    """The API server's answer to a server-side dry-run create of documents, unknown fields refused (Strict)."""
    return kubectl_answer(
        env,
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        NAMESPACE,
        "-f",
        "-",
        "-o",
        "name",
        stdin=documents,
    )


def assert_accepted(env: dict[str, str], documents: str) -> None:
    """Every document dry-run created: the API server names each Task and TaskRun it accepted."""
    done = dry_run(env, documents)
    assert done.returncode == 0, f"refused: {done.stderr.strip()}\n{documents}"
    wanted = [f"{d['kind'].lower()}.tekton.dev/{d['metadata']['name']}" for d in yaml.safe_load_all(documents)]
    assert done.stdout.split() == wanted


@pytest.fixture(scope="module")
def tekton_env(testbed_env: dict[str, str]) -> dict[str, str]:
    """Tekton's CRDs, Established: testbed/up installs them on every profile (missing: a testbed defect, not a skip)."""
    for crd in CRDS:
        kubectl(testbed_env, "wait", "--for", "condition=Established", "--timeout=30s", f"crd/{crd}")
    return testbed_env


@pytest.fixture
def tekton_once(tekton_env: dict[str, str], profile: Profile) -> dict[str, str]:
    """A dry run against a CRD does not depend on the profile (no Pod Security, no policy applies to a Task)."""
    if profile.name != "permissive":
        pytest.skip(
            "a dry run against Tekton's CRDs does not depend on the profile: the probes' specs, the examples and the "
            "negative controls run on the permissive profile only"
        )
    return tekton_env


def _not_run(_context: ProbeContext) -> Outcome:
    raise AssertionError("nothing runs a probe here")


def probe_specs(env: dict[str, str]) -> dict[Mode, TestedSpec]:
    """The Kaniko and buildpacks specs as their probes build them on the testbed, as the engine records them."""
    images = Images(kaniko=env["TESTBED_IMAGE_KANIKO"], builder=env["TESTBED_IMAGE_BUILDER"])
    scope = RunScope("dindcheck", "abcd", image_pull_secret="testbed-pull")  # noqa: S106 (a Secret's name)
    placement = Placement(
        node_selector={"dindcheck.io/pool": "ci"},
        tolerations=({"key": "ci", "operator": "Exists", "effect": "NoSchedule"},),
    )
    built = {
        Mode.KANIKO: specs.kaniko_pod_spec(
            images,
            Resources(),
            destination=f"{env['TESTBED_REGISTRY']}/dindcheck/kaniko:abcd",
            insecure_registries=(env["TESTBED_REGISTRY"],),
            registry_secret="registry-push",  # noqa: S106 (a Secret's name)
        ),
        Mode.BUILDPACKS: specs.buildpacks_pod_spec(
            images,
            Resources(),
            image=f"{env['TESTBED_REGISTRY']}/dindcheck/buildpacks:abcd",
            insecure_registries=(env["TESTBED_REGISTRY"],),
        ),
    }
    return {
        mode: pasted(
            specs.record(mode, mode.value, spec, proven=True),
            scope,
            Task(mode.value, mode.value, "", _not_run, paste_placement=placement),
        )
        for mode, spec in built.items()
    }


@pytest.mark.parametrize("mode", [Mode.KANIKO, Mode.BUILDPACKS])
def test_the_tekton_form_of_the_probes_spec_is_accepted(tekton_once: dict[str, str], mode: Mode) -> None:
    tested = probe_specs(tekton_once)[mode]
    _, run = yaml.safe_load_all(snippets.tekton_snippet(tested))
    assert run["spec"]["podTemplate"]["nodeSelector"] == {"dindcheck.io/pool": "ci"}  # the pod fields came along
    assert_accepted(tekton_once, snippets.tekton_snippet(tested))


@pytest.mark.parametrize("name", ["tekton-kaniko.yaml", "tekton-buildpacks.yaml"])
def test_the_tekton_examples_are_accepted(tekton_once: dict[str, str], name: str) -> None:
    """examples/ shows the Tekton forms for the default images: the same dry run accepts them."""
    assert_accepted(tekton_once, (REPO / "examples" / name).read_text(encoding="utf-8"))


def broken(mode: Mode, env: dict[str, str], change: str) -> str:
    """The probe spec's Tekton form with one deliberate defect in its step."""
    task, run = yaml.safe_load_all(snippets.tekton_snippet(probe_specs(env)[mode]))
    step = task["spec"]["steps"][0]
    if change == "unknown field":
        step["securityContxt"] = step.pop("securityContext")
    elif change == "wrong type":
        step["securityContext"] = {**step["securityContext"], "runAsNonRoot": "yes"}
    elif change == "no step name":
        del step["name"]
    return yaml.safe_dump_all([task, run], sort_keys=False)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ("unknown field", 'unknown field "spec.steps[0].securityContxt"'),
        ("wrong type", "spec.steps[0].securityContext.runAsNonRoot: Invalid value"),
        ("no step name", "spec.steps[0].name: Required value"),
    ],
)
def test_a_broken_tekton_form_is_refused(tekton_once: dict[str, str], change: str, refusal: str) -> None:
    """The negative control: the same dry run refuses a step the CRD's schema does not allow, naming the field."""
    done = dry_run(tekton_once, broken(Mode.BUILDPACKS, tekton_once, change))
    assert done.returncode != 0, f"a step with {change} was accepted: the dry run validates nothing"
    assert refusal in done.stderr, done.stderr


def report_snippets(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, recommendation) for the run and each of its pools."""
    found = [("the run", report["recommendation"])]
    found += [(f"pool {pool['pool']}", pool["recommendation"]) for pool in report.get("pools", [])]
    return found


def test_the_reports_tekton_forms_are_accepted(tekton_env: dict[str, str], suite_run: SuiteRun) -> None:
    """Every Tekton form the run's report gives is accepted; one is given wherever its builder is recommended."""
    assert suite_run.report, suite_run.output[-3000:]
    checked = []
    for where, recommendation in report_snippets(suite_run.report):
        for question, mode in EXPECTED_FORM.items():
            key = snippets.TEKTON_SNIPPETS[mode]
            if recommendation[question] == mode.value:
                assert key in recommendation["snippets"], f"{where}: {question} {mode.value} without {key}"
            if key in recommendation["snippets"]:
                assert_accepted(tekton_env, recommendation["snippets"][key])
                checked.append(f"{where}: {key}")
    if not checked:
        pytest.skip("this profile's report recommends neither Kaniko (build_only) nor buildpacks (from_source)")
