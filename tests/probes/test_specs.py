"""Mode pod specs carry the run's resources on every container, and the harness wraps them without touching them."""

from __future__ import annotations

import copy
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from probes import specs
from probes.definitions import host_socket
from probes.engine import EXEC_BUDGET_S, CommandResult, Outcome, ProbeContext, Progress, RunScope, Task
from probes.model import Mode
from probes.settings import Images, ProbeSettings, Resources

IMAGES = Images(dind="mirror/docker:dind", buildkit="mirror/buildkit:rootless", tools="mirror/debian")
RESOURCES = Resources(requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "2", "memory": "2Gi"})


def every_container(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def all_specs(resources: Resources) -> dict[str, dict[str, Any]]:
    """Every spec a probe submits, by a readable name: each mode's, the native DinD layout, the tools pod."""
    found = {mode.value: spec for mode, spec in specs.mode_specs(IMAGES, resources, job_uid=1000).items()}
    found["dind-native"] = specs.dind_pod_spec(IMAGES, resources, layout=specs.NATIVE, job_uid=1000)
    found["dind-tls"] = specs.dind_tls_pod_spec(IMAGES, resources, job_uid=1000)
    found["tools"] = specs.tools_pod_spec(IMAGES.tools, resources, privileged=True)
    return found


@pytest.mark.parametrize("name", sorted(all_specs(RESOURCES)))
def test_every_container_gets_the_requests_and_limits_given(name: str) -> None:
    """A namespace with a ResourceQuota or LimitRange refuses containers without them."""
    for container in every_container(all_specs(RESOURCES)[name]):
        assert container["resources"] == {"requests": dict(RESOURCES.requests), "limits": dict(RESOURCES.limits)}


def test_empty_requests_are_left_out_not_sent_empty() -> None:
    """--pod-requests '' means no requests at all (the LimitRange's defaults apply), not an empty block."""
    for spec in all_specs(Resources(requests={}, limits={"cpu": "1"})).values():
        for container in every_container(spec):
            assert container["resources"] == {"limits": {"cpu": "1"}}


def test_mode_specs_cover_every_mode_with_the_containers_users_name() -> None:
    names = {
        mode: [c["name"] for c in every_container(spec)]
        for mode, spec in specs.mode_specs(IMAGES, RESOURCES, job_uid=1000).items()
    }
    assert names == {
        Mode.DIND: ["dind", "job"],
        Mode.BUILDKIT_ROOTLESS: ["buildkitd"],
        Mode.KANIKO: ["kaniko"],
        Mode.SYSBOX: ["dind", "job"],
        Mode.HOST_SOCKET: ["job"],
        Mode.BUILDPACKS: ["creator"],
    }


def test_kaniko_runs_as_root_but_within_pod_security_baseline() -> None:
    """Root, default capabilities, RuntimeDefault seccomp, no escalation, writable root: what baseline admits."""
    secret_ref = "push-credentials"  # noqa: S105 - the name of a Secret, not a password
    spec = specs.kaniko_pod_spec(
        IMAGES,
        RESOURCES,
        destination="r.example/a:b",
        insecure_registries=("localhost:5000",),
        registry_secret=secret_ref,
    )
    (kaniko,) = spec["containers"]
    assert kaniko["securityContext"] == {
        "runAsUser": 0,
        "allowPrivilegeEscalation": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "privileged" not in kaniko["securityContext"]
    assert "--destination=r.example/a:b" in kaniko["args"]
    assert "--insecure-registry=localhost:5000" in kaniko["args"]
    assert "--digest-file=/dev/termination-log" in kaniko["args"]
    assert {"name": "DOCKER_CONFIG", "value": "/kaniko/.docker"} in kaniko["env"]
    assert [v["name"] for v in spec["volumes"]] == ["workspace", "registry-auth"]


def test_sysbox_is_the_dind_layout_without_privileged_under_its_runtime_class() -> None:
    sysbox = specs.sysbox_pod_spec(IMAGES, RESOURCES, job_uid=1000)
    assert sysbox["runtimeClassName"] == specs.SYSBOX_RUNTIME_CLASS
    without_class = {key: value for key, value in sysbox.items() if key != "runtimeClassName"}
    assert without_class == specs.dind_pod_spec(IMAGES, RESOURCES, privileged=False, job_uid=1000)
    assert not any("privileged" in str(c.get("securityContext", {})) for c in every_container(sysbox))
    assert specs.SYSBOX_ANNOTATIONS


def test_native_layout_moves_only_the_sidecar() -> None:
    classic = specs.dind_pod_spec(IMAGES, RESOURCES, job_uid=1000)
    native = specs.dind_pod_spec(IMAGES, RESOURCES, layout=specs.NATIVE, job_uid=1000)
    sidecar = native["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"
    assert "startupProbe" in sidecar
    plain = {key: value for key, value in sidecar.items() if key not in ("restartPolicy", "startupProbe")}
    assert [plain, *native["containers"]] == classic["containers"]
    assert native["volumes"] == classic["volumes"]


class HostSocketRun:
    """A ProbeContext for the host-socket probe: the real pod_manifest, the pod kept, the daemon answering `answer`."""

    def __init__(self, answer: str) -> None:
        self.real = probe_context(RunScope("ns-1", "r1abc", timeout_s=30.0))
        self.scope = self.real.scope
        self.nodes: set[str] = set()
        self.created: list[dict[str, Any]] = []
        self.answer = answer

    def pod_manifest(self, suffix: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The engine's own manifest around the probe's spec."""
        return self.real.pod_manifest(suffix, spec)

    def say(self, _message: str) -> None:
        """Progress goes nowhere."""

    def create_pod(self, manifest: dict[str, Any]) -> None:
        """Keep what was submitted (a copy: later changes to the probe's dicts must not hide a difference)."""
        self.created.append(copy.deepcopy(manifest))

    def wait_running(self, _name: str, **_kwargs: Any) -> None:
        """The pod runs."""

    def exec(self, _pod: str, _container: str, _script: str, **_kwargs: Any) -> CommandResult:
        """The daemon's answer to `docker version`."""
        return CommandResult(0, self.answer, "", 0.1)

    def delete_pod(self, _name: str) -> None:
        """Nothing to delete."""


@pytest.mark.parametrize(("answer", "proven"), [("server=27.3.1", True), ("server=Cannot connect", False)])
def test_the_spec_recorded_for_the_report_is_the_one_the_probe_submitted(answer: str, proven: bool) -> None:
    """The config to paste is the submitted pod's spec without the harness's part, proven only when it worked."""
    ctx = HostSocketRun(answer)
    settings = ProbeSettings(images=IMAGES, resources=RESOURCES)
    outcome = host_socket.run(ctx, settings)  # type: ignore[arg-type]
    (submitted,) = ctx.created
    (tested,) = outcome.facts.specs
    harness = ctx.pod_manifest("x", {"containers": []})["spec"].keys() - {"containers"}
    assert dict(tested.spec) == {key: value for key, value in submitted["spec"].items() if key not in harness}
    assert tested.proven is proven
    assert (tested.mode, tested.layout) == (Mode.HOST_SOCKET, "host-socket")
    assert {c["image"] for c in tested.spec["containers"]} == {IMAGES.dind}, "the run's images, as submitted"


# ----- the harness's part of a probe pod ---------------------------------------------------------------------------
def never_run(_context: ProbeContext) -> Outcome:
    raise AssertionError("pod_manifest does not run the probe")


def probe_context(scope: RunScope) -> ProbeContext:
    """A context whose connection is never used: pod_manifest only builds a dict."""
    connection: Any = SimpleNamespace(core=None, api_client=None)
    task = Task("docker-run", "docker-run", "", never_run)
    return ProbeContext(task, connection, scope, Progress(), threading.Event())


@pytest.mark.parametrize("mode", [m for m in Mode if m is not Mode.NONE], ids=lambda mode: mode.value)
def test_pod_manifest_adds_a_deadline_around_the_spec_and_leaves_containers_alone(mode: Mode) -> None:
    spec = specs.mode_specs(IMAGES, RESOURCES, job_uid=1000)[mode]
    submitted = copy.deepcopy(spec)
    scope = RunScope("ns-1", "r1abc", timeout_s=42.0, image_pull_secret="pull")  # noqa: S106 - a Secret's name
    manifest = probe_context(scope).pod_manifest("run", spec, annotations=specs.SYSBOX_ANNOTATIONS)
    pod_spec = manifest["spec"]
    assert pod_spec["activeDeadlineSeconds"] == scope.active_deadline_s == 42 + EXEC_BUDGET_S
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["imagePullSecrets"] == [{"name": "pull"}]
    for key, value in spec.items():
        assert pod_spec[key] == value, key
    assert spec == submitted, "pod_manifest changed the probe's spec"
    assert manifest["metadata"]["annotations"] == specs.SYSBOX_ANNOTATIONS
    assert manifest["metadata"]["namespace"] == "ns-1"
    assert manifest["metadata"]["labels"]["dindcheck.io/run"] == "r1abc"


@pytest.mark.parametrize("name", sorted(all_specs(RESOURCES)))
def test_the_selinux_type_is_a_pod_field_of_every_probe_pod(name: str) -> None:
    """--selinux-type reaches every pod as pod securityContext.seLinuxOptions.type, beside the spec's own settings."""
    spec = all_specs(RESOURCES)[name]
    spec["securityContext"] = {**spec.get("securityContext", {}), "fsGroup": 1000}
    submitted = copy.deepcopy(spec)
    scope = RunScope("ns-1", "r1abc", selinux_type="spc_t")
    pod_spec = probe_context(scope).pod_manifest("run", spec)["spec"]
    assert pod_spec["securityContext"] == {"seLinuxOptions": {"type": "spc_t"}, "fsGroup": 1000}
    assert spec == submitted, "pod_manifest changed the probe's spec"
    for container in every_container(pod_spec):
        assert "seLinuxOptions" not in container.get("securityContext", {}), "a pod field, not a container's"


def test_without_a_selinux_type_the_runtime_picks_the_label() -> None:
    pod_spec = probe_context(RunScope("ns", "r1abc")).pod_manifest("run", {"containers": []})["spec"]
    assert "securityContext" not in pod_spec


def test_a_pod_of_a_killed_run_ends_by_itself_after_the_wait_and_the_commands() -> None:
    """The pod deadline must outlast the start timeout plus the commands, or it would cut a probe short."""
    assert RunScope("ns", "r", timeout_s=120.0).active_deadline_s == 120 + EXEC_BUDGET_S
    assert RunScope("ns", "r", timeout_s=0.5).active_deadline_s >= EXEC_BUDGET_S


def test_manifest_names_fit_dns_1123() -> None:
    manifest = probe_context(RunScope("ns", "r1abc")).pod_manifest("x" * 80, {"containers": []})
    name = manifest["metadata"]["name"]
    assert len(name) <= 63
    assert not name.endswith("-")
    assert "imagePullSecrets" not in manifest["spec"]


def test_the_users_dind_env_and_job_image_reach_every_dind_spec() -> None:
    """--dind-env and --image-job shape the spec that runs, so the config to paste carries them too."""
    images = Images(dind="mirror/docker:29-dind", job="mirror/runner:2.330")
    env = (("DOCKER_MIN_API_VERSION", "1.41"), ("DOCKER_IPTABLES_LEGACY", "1"))
    for spec in (
        specs.dind_pod_spec(images, RESOURCES, job_uid=1001, dind_env=env),
        specs.dind_pod_spec(images, RESOURCES, layout=specs.NATIVE, job_uid=1001, dind_env=env),
        specs.sysbox_pod_spec(images, RESOURCES, job_uid=1001, dind_env=env),
        specs.dind_tls_pod_spec(images, RESOURCES, job_uid=1001, dind_env=env),
    ):
        by_name = {c["name"]: c for c in every_container(spec)}
        assert by_name["dind"]["image"] == "mirror/docker:29-dind"
        assert {"name": "DOCKER_MIN_API_VERSION", "value": "1.41"} in by_name["dind"]["env"]
        assert {"name": "DOCKER_IPTABLES_LEGACY", "value": "1"} in by_name["dind"]["env"]
        assert by_name["job"]["image"] == "mirror/runner:2.330"
    host = specs.host_socket_pod_spec(images, RESOURCES)
    assert host["containers"][0]["image"] == "mirror/runner:2.330"
    assert specs.dind_pod_spec(IMAGES, RESOURCES)["containers"][1]["image"] == IMAGES.dind  # default: dind's CLI
    assert "job" in images.by_role()
    assert "job" not in IMAGES.by_role()
