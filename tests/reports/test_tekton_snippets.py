"""The Tekton form of the builders' config: a v1 Task whose one step is the tested container, and its TaskRun.

The step must be the spec the probe ran (the same objects, not values copied by hand), and the snippet keys must
come with the mode they belong to. The API server's dry run against Tekton's CRDs is testbed/conformance's part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import reports
from probes import specs
from probes.model import Mode, TestedSpec
from probes.settings import Images, Resources
from reports import recommend, snippets
from tests.reports.conftest import TESTED_IMAGES, TESTED_RESOURCES, make_run, make_verdict, psa_baseline
from tests.reports.test_from_source import psa_restricted

SPECS = {
    Mode.KANIKO: lambda: specs.kaniko_pod_spec(
        Images(),
        Resources(),
        destination="localhost:5000/dindcheck/kaniko:abcde",
        registry_secret="regcred",  # noqa: S106 (a Secret's name)
    ),
    Mode.BUILDPACKS: lambda: specs.buildpacks_pod_spec(
        Images(), Resources(), image="localhost:5000/dindcheck/buildpacks:abcde"
    ),
}


def recorded(mode: Mode, **pod_fields: Any) -> TestedSpec:
    return specs.record(mode, mode.value, {**SPECS[mode](), **pod_fields}, proven=True)


def documents(tested_spec: TestedSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    task, run = yaml.safe_load_all(snippets.tekton_snippet(tested_spec))
    return task, run


def kaniko_baseline() -> Any:
    """psa-baseline where Kaniko builds: no privileged, no Unconfined, but root is allowed."""
    return make_run(*psa_baseline().verdicts, make_verdict("kaniko", summary="built and pushed with the executor"))


@pytest.mark.parametrize("mode", [Mode.KANIKO, Mode.BUILDPACKS])
def test_the_step_is_the_tested_container(mode: Mode) -> None:
    spec = recorded(mode)
    (container,) = spec.spec["containers"]
    task, run = documents(spec)
    assert (task["apiVersion"], task["kind"], run["apiVersion"], run["kind"]) == (
        "tekton.dev/v1",
        "Task",
        "tekton.dev/v1",
        "TaskRun",
    )
    (step,) = task["spec"]["steps"]
    for field in ("name", "image", "command", "env", "securityContext"):
        assert step.get(field) == container.get(field), field
    assert step["computeResources"] == container["resources"] == Resources().to_spec()
    (result,) = task["spec"]["results"]
    path = f"$(results.{result['name']}.path)"
    assert step["args"] == [arg.replace("/dev/termination-log", path) for arg in container["args"]]
    assert path in "".join(step["args"])  # the one change: the probe's result file is the Task result
    assert "/dev/termination-log" not in snippets.tekton_snippet(spec)
    assert set(step) <= {*snippets.TEKTON_STEP_FIELDS, "computeResources"}
    assert run["spec"]["taskRef"] == {"kind": "Task", "name": task["metadata"]["name"]}


@pytest.mark.parametrize("mode", [Mode.KANIKO, Mode.BUILDPACKS])
def test_the_source_emptydir_is_a_workspace_the_taskrun_binds_to_an_emptydir(mode: Mode) -> None:
    spec = recorded(mode)
    (container,) = spec.spec["containers"]
    task, run = documents(spec)
    assert task["spec"]["workspaces"] == [{"name": "source", "mountPath": "/workspace"}]
    assert run["spec"]["workspaces"] == [{"name": "source", "emptyDir": {}}]
    (step,) = task["spec"]["steps"]
    others = [mount for mount in container["volumeMounts"] if mount["mountPath"] != "/workspace"]
    assert step.get("volumeMounts", []) == others
    assert task["spec"].get("volumes", []) == [v for v in spec.spec["volumes"] if v["name"] != "workspace"]


def test_the_push_secret_and_the_layers_volume_stay_the_tasks() -> None:
    kaniko, _ = documents(recorded(Mode.KANIKO))
    assert [v["name"] for v in kaniko["spec"]["volumes"]] == [specs.REGISTRY_AUTH_VOLUME]
    assert kaniko["spec"]["volumes"][0]["secret"]["secretName"] == "regcred"
    buildpacks, _ = documents(recorded(Mode.BUILDPACKS))
    assert buildpacks["spec"]["volumes"] == [{"name": "layers", "emptyDir": {}}]


def test_pod_fields_go_to_the_podtemplate_and_what_has_no_place_is_said() -> None:
    fields = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "imagePullSecrets": [{"name": "pull"}],
        "nodeSelector": {"pool": "ci"},
        "tolerations": [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
        "hostPID": False,
    }
    spec = recorded(Mode.BUILDPACKS, **fields)
    _, run = documents(spec)
    assert run["spec"]["podTemplate"] == {
        key: value for key, value in fields.items() if key not in {"restartPolicy", "hostPID"}
    }
    text = snippets.tekton_snippet(spec)
    assert "# Not carried by the Tekton form (no Step or podTemplate field): hostPID." in text
    assert "restartPolicy" not in text  # Tekton's own: its pods never restart
    assert "Not carried" not in snippets.tekton_snippet(recorded(Mode.BUILDPACKS, restartPolicy="Never"))


def test_the_tested_specs_notes_come_as_comments() -> None:
    spec = specs.record(Mode.KANIKO, "kaniko", SPECS[Mode.KANIKO](), proven=True, notes=("Push credentials: regcred",))
    assert "# Push credentials: regcred\n" in snippets.tekton_snippet(spec)


def test_restricted_gives_the_buildpacks_tekton_form_of_the_recommended_spec() -> None:
    recommendation = recommend.recommend(psa_restricted())
    assert recommendation.from_source is Mode.BUILDPACKS
    assert "kaniko-tekton" not in recommendation.snippets
    task, _ = yaml.safe_load_all(recommendation.snippets["buildpacks-tekton"])
    pod = yaml.safe_load(recommendation.snippets["buildpacks"])
    (step,) = task["spec"]["steps"]
    (container,) = pod["spec"]["containers"]
    assert step["image"] == container["image"] == TESTED_IMAGES.builder
    assert step["securityContext"] == container["securityContext"] == specs.restricted_context()
    assert step["computeResources"] == TESTED_RESOURCES.to_spec()


def test_kaniko_recommended_gives_the_kaniko_tekton_form() -> None:
    recommendation = recommend.recommend(kaniko_baseline())
    assert recommendation.build_only is Mode.KANIKO
    assert list(recommendation.snippets).index("kaniko") < list(recommendation.snippets).index("kaniko-tekton")
    assert "buildpacks-tekton" not in recommendation.snippets
    task, run = yaml.safe_load_all(recommendation.snippets["kaniko-tekton"])
    (step,) = task["spec"]["steps"]
    assert step["image"] == TESTED_IMAGES.kaniko
    assert run["spec"]["podTemplate"]["automountServiceAccountToken"] is False  # the probe pod's own field


def test_no_tekton_form_where_neither_builder_is_recommended() -> None:
    recommendation = recommend.recommend(psa_baseline())
    assert not set(recommendation.snippets) & set(snippets.TEKTON_SNIPPETS.values())


def test_markdown_names_the_tekton_forms() -> None:
    markdown = reports.render_markdown(reports.build_report(psa_restricted()))
    assert "### Tekton: CNB creator as a Task step, and its TaskRun (`tekton.dev/v1`)" in markdown
    assert "kind: TaskRun" in markdown
    markdown = reports.render_markdown(reports.build_report(kaniko_baseline()))
    assert "### Tekton: Kaniko executor as a Task step, and its TaskRun (`tekton.dev/v1`)" in markdown


EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("mode", [Mode.KANIKO, Mode.BUILDPACKS])
def test_the_tekton_examples_are_what_the_renderer_writes(mode: Mode) -> None:
    """examples/tekton-MODE.yaml (dry-run by the testbed's conformance) is the snippet for the default images."""
    spec = (specs.kaniko_pod_spec if mode is Mode.KANIKO else specs.buildpacks_pod_spec)(Images(), Resources())
    expected = snippets.tekton_snippet(specs.record(mode, mode.value, spec, proven=True))
    assert (EXAMPLES / f"tekton-{mode.value}.yaml").read_text(encoding="utf-8") == expected
