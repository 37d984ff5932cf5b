"""The config to paste is the pod a probe submitted: each probe runs here against a stand-in for the cluster.

Every probe that records a spec runs for real (its own run(), the engine's pod_manifest and run_probe) with a
context whose API verbs only capture what was submitted and answer as an empty cluster would. Each rendered snippet
is then parsed back and compared field by field with the manifest submitted for it: the tested containers, the
volumes they mount and every pod-level field. The only differences allowed are the documented ones: the run's own
deadline and grace (left out, said in a comment), its labels and object names, the probe's helper containers, and the
push-credentials Secret, which the snippet names as the user's Secret instead of the run's copy.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from probes.definitions import _docker, catalog, docker_run, sysbox
from probes.engine import CommandResult, ProbeContext, Progress, RunScope, run_probe
from probes.model import Admission, Mode, Placement, TestedSpec, Verdict
from probes.settings import Images, ProbeSettings, Resources
from reports import snippets

RUN_COPY = "dc-r1abc-registry"
USERS_SECRET = "push-creds"  # noqa: S105 - the name of a Secret, not a password
SETTINGS = ProbeSettings(
    images=Images(
        dind="mirror.corp/docker:29-dind",
        buildkit="mirror.corp/buildkit:rootless",
        tools="mirror.corp/debian:bookworm-slim",
        registry="mirror.corp/registry:2",
        kaniko="mirror.corp/kaniko:v1.25",
        job="mirror.corp/runner:2.330",
    ),
    resources=Resources(requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "2", "memory": "2Gi"}),
    registry="registry.corp:5000",
    registry_secret=RUN_COPY,
    registry_secret_source=f"team-ci/{USERS_SECRET}",
    job_uid=1001,
    dind_env=(("DOCKER_IPTABLES_LEGACY", "1"),),
)
SCOPE = RunScope("dindcheck-r1abc", "r1abc", timeout_s=60.0, image_pull_secret="mirror-pull")  # noqa: S106
SPC_T_SCOPE = replace(SCOPE, selinux_type="spc_t")
"""A run with --selinux-type spc_t: every probe pod, and so every pasted pod, runs as spc_t."""
CI_TAINT = {"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}
PLACEMENT = Placement(node_selector={"pool": "ci"}, tolerations=(CI_TAINT,))
RUN_ONLY_POD_FIELDS = ("activeDeadlineSeconds", "terminationGracePeriodSeconds")
"""Documented: the probe's own safety net and quick cleanup; the snippet says it left them out."""
TESTED_CONTAINERS = {
    Mode.DIND: {"dind", "job"},
    Mode.SYSBOX: {"dind", "job"},
    Mode.BUILDKIT_ROOTLESS: {"buildkitd"},
    Mode.KANIKO: {"kaniko"},
    Mode.HOST_SOCKET: {"job"},
}
"""The containers users paste; the rest of a probe pod (registry, context writer, base build, keep-alive) is the
probe's scaffolding."""
RECORDING_PROBES = ("socket-sharing", "docker-run", "buildkit-rootless", "kaniko", "sysbox", "host-socket")


class CapturingContext(ProbeContext):
    """The engine's own context (pod_manifest, names, labels), with the cluster replaced by a recorder.

    Pods are admitted and run, commands exit 0 and print nothing, containers never finish: each probe ends with
    nothing proven, but after building, submitting and recording its pods exactly as on a cluster.
    """

    def __init__(self, check_id: str, scope: RunScope = SCOPE) -> None:
        definition = next(probe for probe in catalog() if probe.id == check_id)
        task = definition.task(SETTINGS)
        task = type(task)(
            task.id, task.capability, task.remediation, task.work, placement=PLACEMENT, paste_placement=PLACEMENT
        )
        connection: Any = SimpleNamespace(core=SimpleNamespace(list_node=None), api_client=None)
        super().__init__(task, connection, scope, Progress(), threading.Event())
        self.submitted: dict[str, dict[str, Any]] = {}

    def create_pod(self, manifest: dict[str, Any]) -> Admission:
        """Record the pod as submitted."""
        self.submitted[manifest["metadata"]["name"]] = copy.deepcopy(manifest)
        return Admission(admitted=True, code=201)

    def dry_run(self, manifest: dict[str, Any]) -> Admission:
        """Admit every dry-run."""
        del manifest
        return Admission(admitted=True, code=201)

    def read_pod(self, pod_name: str) -> Any:
        """The pod as submitted, running, its containers' statuses not reported."""
        spec = self.submitted[pod_name]["spec"]
        init = [SimpleNamespace(restart_policy=c.get("restartPolicy")) for c in spec.get("initContainers", [])]
        return SimpleNamespace(
            metadata=SimpleNamespace(name=pod_name),
            spec=SimpleNamespace(init_containers=init, node_name="node-ci-1"),
            status=SimpleNamespace(phase="Running", init_container_statuses=[], container_statuses=[]),
        )

    def wait_running(self, pod_name: str, **_: Any) -> Any:
        """Running at once."""
        return self.read_pod(pod_name)

    def wait_terminated(self, pod_name: str, container: str, **_: Any) -> Any:
        """Ended, with nothing reported."""
        del container
        return self.read_pod(pod_name)

    def exec(self, pod_name: str, container: str, script: str, *, timeout_s: float = 60.0) -> CommandResult:
        """Every command exits 0 and prints nothing."""
        del pod_name, container, script, timeout_s
        return CommandResult(0, "", "", 0.0)

    def logs(self, pod_name: str, container: str, *, tail: int = 40) -> str:
        """No logs."""
        del pod_name, container, tail
        return ""

    def delete_pod(self, pod_name: str) -> None:
        """Nothing to delete."""
        del pod_name


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-run locates a registry payload from this machine, sysbox reads its RuntimeClass: answer both here."""
    monkeypatch.setattr(docker_run, "locate_payload", lambda _image: _docker.Payload(error="not looked up in a test"))
    monkeypatch.setattr(sysbox, "api_call", lambda *_args, **_kwargs: SimpleNamespace(handler="sysbox-runc", items=[]))


def probe(
    check_id: str, *, recording: bool = True, scope: RunScope = SCOPE
) -> tuple[Verdict, dict[str, dict[str, Any]]]:
    """Run one probe as the runner does; its verdict and every pod it submitted, by name."""
    context = CapturingContext(check_id, scope)
    verdict = run_probe(context.task, context)
    assert verdict.facts.specs or not recording, f"{check_id} recorded no spec: {verdict.summary}"
    return verdict, context.submitted


def test_every_probe_that_records_a_spec_is_compared_here() -> None:
    """A probe that starts recording specs (or stops) must be listed, so its snippets are held to its pods too."""
    recording = {probe.id for probe in catalog() if probe_records(probe.id)}
    assert recording == set(RECORDING_PROBES)


def probe_records(check_id: str) -> bool:
    return bool(probe(check_id, recording=False)[0].facts.specs)


def submitted_for(tested: TestedSpec, submitted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The pod the spec was recorded from: the probe's only pod, or the one named after the layout."""
    if len(submitted) == 1:
        return next(iter(submitted.values()))
    (found,) = (manifest for name, manifest in submitted.items() if name.endswith(f"-{tested.layout}"))
    return found


def containers(spec: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    return {container["name"]: container for container in spec.get(key, [])}


def users_secret(volume: dict[str, Any]) -> dict[str, Any]:
    """A submitted volume as the snippet must have it: the registry Secret is the user's, not the run's copy."""
    pasted = copy.deepcopy(volume)
    secret = pasted.get("secret") or {}
    if secret.get("secretName") == RUN_COPY:
        secret["secretName"] = USERS_SECRET
    return pasted


def pod_fields(spec: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in spec.items() if key not in ("initContainers", "containers", "volumes")}


@pytest.mark.parametrize("check_id", RECORDING_PROBES)
def test_every_snippet_is_the_pod_the_probe_submitted(check_id: str) -> None:
    verdict, submitted = probe(check_id)
    for tested in verdict.facts.specs:
        where = f"{check_id} {tested.layout}"
        manifest = submitted_for(tested, submitted)
        text = snippets.pod_snippet(tested)
        pod = yaml.safe_load(text)
        ran, pasted = manifest["spec"], pod["spec"]

        pasted_names = set()
        for key in ("initContainers", "containers"):
            for name, container in containers(pasted, key).items():
                assert container == containers(ran, key).get(name), f"{where}: {key} {name} is not as submitted"
                pasted_names.add(name)
        assert pasted_names == TESTED_CONTAINERS[tested.mode], where

        mounted = {
            mount["name"]
            for key in ("initContainers", "containers")
            for container in pasted.get(key, [])
            for mount in container.get("volumeMounts", [])
        }
        assert pasted.get("volumes", []) == [users_secret(v) for v in ran.get("volumes", []) if v["name"] in mounted]

        expected = {key: value for key, value in pod_fields(ran).items() if key not in RUN_ONLY_POD_FIELDS}
        assert pod_fields(pasted) == expected, f"{where}: pod-level fields differ from the probe pod's"
        assert pod["metadata"].get("annotations", {}) == manifest["metadata"].get("annotations", {}), where
        assert "labels" not in pod["metadata"], f"{where}: the run's labels are not the user's"

        comments = " ".join(line[2:] for line in text.splitlines() if line.startswith("#"))
        for field in RUN_ONLY_POD_FIELDS:
            assert field in comments, f"{where}: the snippet does not say it left out {field}"
        assert RUN_COPY not in text, f"{where}: the snippet names the run's copy of the Secret, which cleanup deletes"


@pytest.mark.parametrize("check_id", ["buildkit-rootless", "kaniko"])
def test_the_builders_snippets_mount_the_users_secret_and_say_where_it_must_exist(check_id: str) -> None:
    verdict, submitted = probe(check_id)
    (tested,) = verdict.facts.specs
    text = snippets.pod_snippet(tested)
    secrets = [v["secret"]["secretName"] for v in yaml.safe_load(text)["spec"]["volumes"] if "secret" in v]
    assert secrets == [USERS_SECRET]
    (manifest,) = submitted.values()
    assert RUN_COPY in [v["secret"]["secretName"] for v in manifest["spec"]["volumes"] if "secret" in v]
    comments = " ".join(line[2:] for line in text.splitlines() if line.startswith("#"))
    assert f"the Secret {USERS_SECRET} (type kubernetes.io/dockerconfigjson) must exist in the namespace" in comments
    assert f"team-ci/{USERS_SECRET}" in comments


def test_a_layout_is_the_same_pod_whichever_check_ran_it() -> None:
    """socket-sharing and docker-run both record the classic DinD layout: the name must mean one pod."""
    recorded = [
        (tested.check, tested.layout, tested.spec)
        for check_id in ("socket-sharing", "docker-run")
        for tested in probe(check_id)[0].facts.specs
    ]
    classic = [(check, spec) for check, layout, spec in recorded if layout == "classic"]
    assert [check for check, _ in classic] == ["socket-sharing", "docker-run"]
    assert classic[0][1] == classic[1][1]


@pytest.mark.parametrize("check_id", RECORDING_PROBES)
def test_the_selinux_type_the_pods_ran_as_is_in_the_config_to_paste(check_id: str) -> None:
    """Pasted without it, a pod proven as spc_t would meet the refusals it was run to avoid: it is carried and said."""
    verdict, submitted = probe(check_id, scope=SPC_T_SCOPE)
    for tested in verdict.facts.specs:
        where = f"{check_id} {tested.layout}"
        ran = submitted_for(tested, submitted)["spec"]
        text = snippets.pod_snippet(tested)
        pasted = yaml.safe_load(text)["spec"]
        assert ran["securityContext"]["seLinuxOptions"] == {"type": "spc_t"}, where
        assert pasted["securityContext"] == ran["securityContext"], where
        comments = " ".join(line[2:] for line in text.splitlines() if line.startswith("#"))
        assert "--selinux-type spc_t" in comments, f"{where}: the snippet does not say where spc_t came from"
