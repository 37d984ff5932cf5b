"""The config to paste is the spec that was tested (valid YAML, the run's images); security costs cover every mode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import yaml

import reports
from probes import specs
from probes.model import Facts, Mode, OverlayResult, RunResult, TestedSpec, Verdict
from probes.settings import Images, Resources
from reports import snippets

MakeVerdict = Callable[..., Verdict]
MakeRun = Callable[..., RunResult]

IMAGES = Images(dind="registry.corp/mirror/docker:27-dind", buildkit="registry.corp/mirror/buildkit:v0.19-rootless")
RESOURCES = Resources(requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "2", "memory": "2Gi"})
ASSESSED = (Mode.DIND, Mode.BUILDKIT_ROOTLESS, Mode.SYSBOX, Mode.HOST_SOCKET)


def parse(text: str) -> Any:
    return yaml.safe_load(text)


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def probe_spec(mode: Mode, *, layout: str = "", proven: bool = True, check: str = "") -> TestedSpec:
    """The spec a probe of this mode submits, built by the same functions the probes call (check: who ran it)."""
    builders = {
        Mode.DIND: lambda: specs.dind_pod_spec(IMAGES, RESOURCES, layout=layout or specs.CLASSIC, job_uid=1001),
        Mode.BUILDKIT_ROOTLESS: lambda: specs.buildkit_pod_spec(IMAGES, RESOURCES),
        Mode.SYSBOX: lambda: specs.sysbox_pod_spec(IMAGES, RESOURCES, job_uid=1001),
        Mode.HOST_SOCKET: lambda: specs.host_socket_pod_spec(IMAGES, RESOURCES),
    }
    annotations = specs.SYSBOX_ANNOTATIONS if mode is Mode.SYSBOX else None
    tested = specs.record(mode, layout or mode.value, builders[mode](), proven=proven, annotations=annotations)
    return replace(tested, check=check)


@pytest.mark.parametrize("mode", ASSESSED, ids=lambda mode: mode.value)
def test_the_snippet_is_the_tested_spec(mode: Mode) -> None:
    """What users paste is exactly what the probe submitted: same containers, images, resources, volumes."""
    spec = probe_spec(mode)
    pod = parse(snippets.pod_snippet(spec))
    assert pod["apiVersion"] == "v1"
    assert pod["kind"] == "Pod"
    assert pod["spec"] == spec.spec
    mounted = {m["name"] for c in containers(pod).values() for m in c.get("volumeMounts", [])}
    assert mounted == {v["name"] for v in pod["spec"]["volumes"]}
    assert all(c["resources"] == RESOURCES.to_spec() for name, c in containers(pod).items() if name != "registry")


def socket_sharing(*, native: bool = True) -> tuple[TestedSpec, ...]:
    """What socket-sharing records: docker info reached through the classic and the native sidecar layouts."""
    return (
        probe_spec(Mode.DIND, layout=specs.CLASSIC, check="socket-sharing"),
        probe_spec(Mode.DIND, layout=specs.NATIVE, proven=native, check="socket-sharing"),
    )


def docker_run(layout: str = specs.CLASSIC, *, proven: bool = True) -> TestedSpec:
    """What docker-run records: the nested run, in the layout it ran (the classic one today)."""
    return probe_spec(Mode.DIND, layout=layout, proven=proven, check="docker-run")


def test_the_dind_pod_is_a_layout_docker_run_proved_too() -> None:
    """A native sidecar that only reached dockerd is not the pod a nested docker run was proven in."""
    classic, native = socket_sharing()
    assert snippets.pick_tested(Mode.DIND, (classic, native, docker_run())) == classic
    native_run = docker_run(specs.NATIVE)
    assert snippets.pick_tested(Mode.DIND, (classic, native, native_run)) == native
    assert snippets.pick_tested(Mode.DIND, (*socket_sharing(native=False), native_run)) is None
    assert snippets.pick_tested(Mode.DIND, (classic, native, docker_run(proven=False))) is None


@pytest.mark.parametrize("native_proven", [True, False], ids=["native-proven", "native-failed"])
def test_the_reports_dind_snippet_is_the_layout_every_dind_check_proved(
    make_verdict: MakeVerdict, make_run: MakeRun, native_proven: bool
) -> None:
    """Through the whole report: the classic pod docker-run ran is printed, the native one only named beside it."""
    run = make_run(
        make_verdict("privileged-admission"),
        replace(make_verdict("socket-sharing"), facts=Facts(specs=socket_sharing(native=native_proven))),
        replace(make_verdict("docker-run"), facts=Facts(specs=(docker_run(),))),
    )
    report = reports.build_report(run)
    assert report.recommendation.full_docker is Mode.DIND
    text = report.json["recommendation"]["snippets"]["dind"]
    assert parse(text)["spec"] == docker_run().spec
    said = "The native layout was proven by socket-sharing, not by docker-run: it is not the spec below."
    assert (said in " ".join(line[2:] for line in text.splitlines())) is native_proven


def test_a_usable_mode_without_a_proven_spec_gets_no_snippet(make_verdict: MakeVerdict, make_run: MakeRun) -> None:
    """No template falls in for a missing spec: the report prints only what a probe ran."""
    run = make_run(replace(make_verdict("buildkit-rootless"), facts=Facts()))
    report = reports.build_report(run)
    assert report.recommendation.build_only is Mode.BUILDKIT_ROOTLESS
    assert list(report.recommendation.snippets) == ["skypilot"]


def test_dind_snippet_gives_the_non_root_job_the_socket() -> None:
    pod = parse(snippets.pod_snippet(probe_spec(Mode.DIND, layout=specs.NATIVE)))
    dind, job = containers(pod)["dind"], containers(pod)["job"]
    assert dind["image"] == IMAGES.dind
    assert dind["restartPolicy"] == "Always"
    assert dind["securityContext"] == {"privileged": True}
    assert {"name": "DOCKER_TLS_CERTDIR", "value": ""} in dind["env"]
    assert dind["args"] == ["dockerd", "--host=unix:///var/run/docker.sock", "--group=1001"]
    assert job["securityContext"] == {"runAsUser": 1001, "runAsGroup": 1001}
    assert {"name": "docker-run", "mountPath": "/var/run"} in job["volumeMounts"]


def test_buildkit_snippet_uses_the_rootless_reference_security_context_and_says_non_root() -> None:
    buildkitd = containers(parse(snippets.pod_snippet(probe_spec(Mode.BUILDKIT_ROOTLESS))))["buildkitd"]
    assert buildkitd["image"] == IMAGES.buildkit
    assert buildkitd["securityContext"] == {
        "seccompProfile": {"type": "Unconfined"},
        "appArmorProfile": {"type": "Unconfined"},
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "runAsNonRoot": True,
    }


def test_sysbox_snippet_carries_the_probes_annotations_and_no_privileged() -> None:
    pod = parse(snippets.pod_snippet(probe_spec(Mode.SYSBOX)))
    assert pod["metadata"]["annotations"] == specs.SYSBOX_ANNOTATIONS
    assert pod["spec"]["runtimeClassName"] == "sysbox-runc"
    assert all("privileged" not in str(c.get("securityContext", {})) for c in containers(pod).values())


def test_host_socket_snippet_says_it_is_discouraged() -> None:
    assert "DISCOURAGED" in snippets.pod_snippet(probe_spec(Mode.HOST_SOCKET))


def test_no_snippet_for_a_mode_without_a_proven_spec() -> None:
    config = snippets.build_snippets(
        full_docker=Mode.DIND,
        build_only=Mode.BUILDKIT_ROOTLESS,
        usable=frozenset({Mode.DIND, Mode.BUILDKIT_ROOTLESS}),
        tested=lambda mode: (probe_spec(mode, proven=mode is Mode.DIND),),
    )
    assert list(config) == ["skypilot", "dind"]


@pytest.mark.parametrize(
    ("usable", "expected"),
    [
        (frozenset({Mode.DIND}), True),
        (frozenset({Mode.DIND, Mode.BUILDKIT_ROOTLESS}), True),
        (frozenset({Mode.BUILDKIT_ROOTLESS}), "BUILD"),
    ],
)
def test_skypilot_enable_docker_follows_the_usable_modes(usable: frozenset[Mode], expected: object) -> None:
    full_docker = Mode.DIND if Mode.DIND in usable else Mode.NONE
    config = parse(snippets.skypilot_config(usable=usable, full_docker=full_docker))
    assert config == {"kubernetes": {"enable_docker": expected}}


def test_skypilot_without_a_usable_mode_is_only_comments() -> None:
    text = snippets.skypilot_config(usable=frozenset({Mode.SYSBOX}), full_docker=Mode.SYSBOX)
    assert parse(text) is None
    assert "leave enable_docker unset" in text


def test_skypilot_warns_against_a_cache_class_without_overlay() -> None:
    text = snippets.skypilot_config(
        usable=frozenset({Mode.DIND}),
        full_docker=Mode.DIND,
        cache=OverlayResult(storage_class="fuse-cache", fs_type="fuse.bindfs", overlay=False),
    )
    assert "overlay FAILED on StorageClass fuse-cache" in text
    assert "cache_volume" in text


def test_skypilot_mentions_the_preferred_mode_it_cannot_configure() -> None:
    text = snippets.skypilot_config(usable=frozenset({Mode.DIND, Mode.SYSBOX}), full_docker=Mode.SYSBOX)
    assert "prefers sysbox" in text


def test_build_snippets_always_has_skypilot_and_one_pod_per_recommended_mode() -> None:
    config = snippets.build_snippets(
        full_docker=Mode.DIND,
        build_only=Mode.BUILDKIT_ROOTLESS,
        usable=frozenset({Mode.DIND, Mode.BUILDKIT_ROOTLESS}),
        tested=lambda mode: (probe_spec(mode),),
    )
    assert list(config) == ["skypilot", "dind", "buildkit-rootless"]
    for text in config.values():
        parse(text)
    assert list(snippets.build_snippets(full_docker=Mode.NONE, build_only=Mode.NONE, usable=frozenset())) == [
        "skypilot"
    ]


@pytest.mark.parametrize("mode", ASSESSED, ids=lambda mode: mode.value)
def test_every_mode_states_its_security_cost(mode: Mode) -> None:
    assert len(snippets.SECURITY_COST[mode]) > 80


def test_security_costs_name_the_key_risks() -> None:
    cost = snippets.SECURITY_COST
    assert "root-equivalent on the node" in cost[Mode.DIND]
    assert "mount the node's disk" in cost[Mode.DIND]
    assert "Unconfined" in cost[Mode.BUILDKIT_ROOTLESS]
    assert "allowPrivilegeEscalation" in cost[Mode.BUILDKIT_ROOTLESS]
    assert "baseline" in cost[Mode.BUILDKIT_ROOTLESS]
    assert "user namespaces" in cost[Mode.SYSBOX]
    assert "root on the node" in cost[Mode.HOST_SOCKET]


# ----- GitLab's TLS layout and remedies a probe proved --------------------------------------------------------------
def tls_spec(*, proven: bool = True) -> TestedSpec:
    spec = specs.dind_tls_pod_spec(IMAGES, RESOURCES, job_uid=1001, dind_env=(("DOCKER_IPTABLES_LEGACY", "1"),))
    return specs.record(Mode.DIND, specs.TLS, spec, proven=proven)


MTU_REMEDY = (
    "--mtu=1400: PROVEN by docker-run on this cluster: a nested container's transfer stalled on dockerd's default "
    "bridge (MTU 1500) and completed on a nested network with MTU 1400. Append --mtu=1400 to the dind container's "
    "args (the spec below ran without it)."
)


def test_the_dind_pod_is_a_socket_layout_wherever_one_was_proven() -> None:
    classic, native = probe_spec(Mode.DIND, layout=specs.CLASSIC), probe_spec(Mode.DIND, layout=specs.NATIVE)
    tls = tls_spec()
    assert snippets.pick_tested(Mode.DIND, (tls, classic)) == classic
    assert snippets.pick_tested(Mode.DIND, (tls, classic, native)) == native
    assert snippets.pick_tested(Mode.DIND, (probe_spec(Mode.DIND, proven=False), tls)) == tls


def test_the_gitlab_snippet_is_the_tls_layout_as_tested() -> None:
    """The job's variables are the job container's env as run; the service is the dind image, alias docker."""
    tested = tls_spec()
    text = snippets.gitlab_snippet(tested)
    job = parse(text)["docker-build"]
    dind, runner = tested.spec["containers"]
    assert job["image"] == runner["image"]
    assert job["variables"] == {e["name"]: e["value"] for e in runner["env"]}
    assert job["variables"]["DOCKER_HOST"] == "tcp://docker:2376"
    assert job["services"] == [{"name": dind["image"], "alias": "docker", "variables": {"DOCKER_IPTABLES_LEGACY": "1"}}]
    assert job["before_script"] == ["until docker info >/dev/null 2>&1; do sleep 1; done"]
    for line in (
        "[runners.kubernetes.service_container_security_context]",
        "privileged = true",
        "run_as_user = 1001",
        'mount_path = "/certs/client"',
        'medium = "Memory"',
        'service_memory_limit = "2Gi"',
    ):
        assert line in text


def test_the_gitlab_snippet_comes_only_with_a_proven_tls_layout_and_dind_recommended() -> None:
    def run(tls: TestedSpec, full_docker: Mode) -> dict[str, str]:
        return snippets.build_snippets(
            full_docker=full_docker,
            build_only=Mode.BUILDKIT_ROOTLESS,
            usable=frozenset({Mode.DIND, Mode.BUILDKIT_ROOTLESS, Mode.SYSBOX}),
            tested=lambda mode: (
                (probe_spec(mode, layout=specs.CLASSIC if mode is Mode.DIND else ""), tls)
                if mode is Mode.DIND
                else (probe_spec(mode),)
            ),
        )

    assert list(run(tls_spec(), Mode.DIND)) == ["skypilot", "dind", "gitlab", "buildkit-rootless"]
    assert "gitlab" not in run(tls_spec(proven=False), Mode.DIND)
    assert "gitlab" not in run(tls_spec(), Mode.SYSBOX)


def test_a_proven_remedy_is_a_comment_beside_the_spec_never_inside_it() -> None:
    classic = probe_spec(Mode.DIND, layout=specs.CLASSIC)
    remedied = specs.record_remedied(Mode.DIND, specs.CLASSIC, dict(classic.spec), proven=True, remedies=(MTU_REMEDY,))
    config = snippets.build_snippets(
        full_docker=Mode.DIND,
        build_only=Mode.DIND,
        usable=frozenset({Mode.DIND}),
        tested=lambda _mode: (probe_spec(Mode.DIND, layout=specs.NATIVE), tls_spec(), remedied),
    )
    for key in ("dind", "gitlab"):
        comments = " ".join(line[2:] for line in config[key].splitlines() if line.startswith("#"))
        assert MTU_REMEDY in comments, key
        assert "--mtu" not in yaml.safe_dump(parse(config[key])), f"{key}: the remedy leaked into the tested spec"
    assert parse(config["dind"])["spec"] == probe_spec(Mode.DIND, layout=specs.NATIVE).spec


def test_no_remedy_comment_without_a_proven_remedy() -> None:
    assert specs.record_remedied(Mode.DIND, specs.CLASSIC, {}, proven=True, remedies=()) == specs.record(
        Mode.DIND, specs.CLASSIC, {}, proven=True
    )
    assert "PROVEN" not in snippets.pod_snippet(probe_spec(Mode.DIND))


def test_the_gitlab_snippet_says_docker_run_was_not_proven_in_its_layout() -> None:
    """GitLab's TLS layout only reached dockerd (socket-sharing); the nested run was proven in the classic pod."""
    tls = replace(tls_spec(), check="socket-sharing")
    config = snippets.build_snippets(
        full_docker=Mode.DIND,
        build_only=Mode.DIND,
        usable=frozenset({Mode.DIND}),
        tested=lambda _mode: (*socket_sharing(), tls, docker_run()),
    )
    said = [line[2:] for line in config["gitlab"].splitlines() if line.startswith("# ")]
    assert "The tls layout was proven by socket-sharing, not by docker-run." in said
    assert not any("tls" in line for line in config["dind"].splitlines() if line.startswith("# The "))


# ----- an SELinux type the pods ran as (--selinux-type) ------------------------------------------------------------
SPC_T_POD = {"seLinuxOptions": {"type": "spc_t"}}


def as_spc_t(tested: TestedSpec) -> TestedSpec:
    """The tested spec as a run with --selinux-type spc_t records it: the type is a pod field of what ran."""
    return replace(tested, spec={**tested.spec, "securityContext": SPC_T_POD})


def test_the_gitlab_runner_config_gives_the_jobs_pod_the_selinux_type_it_ran_as() -> None:
    text = snippets.gitlab_snippet(as_spc_t(tls_spec()))
    lines = [line.strip("# ") for line in text.splitlines()]
    table = lines.index("[runners.kubernetes.pod_security_context]")
    assert lines[table + 1] == 'selinux_type = "spc_t"', lines[table:]


@pytest.mark.parametrize(("mode", "enable_docker"), [(Mode.DIND, True), (Mode.BUILDKIT_ROOTLESS, "BUILD")])
def test_skypilot_gives_its_pod_the_selinux_type_the_mode_ran_as(mode: Mode, enable_docker: object) -> None:
    """SkyPilot's own pod without the type would meet the refusals the probe pods were run as spc_t to avoid."""
    config = snippets.build_snippets(
        full_docker=mode if mode is Mode.DIND else Mode.NONE,
        build_only=mode,
        usable=frozenset({mode}),
        tested=lambda wanted: (as_spc_t(probe_spec(wanted)),),
    )
    kubernetes = parse(config["skypilot"])["kubernetes"]
    assert kubernetes == {"enable_docker": enable_docker, "pod_config": {"spec": {"securityContext": SPC_T_POD}}}
    assert "--selinux-type" in config["skypilot"]


def test_skypilot_sets_no_pod_config_when_the_pods_ran_as_the_runtime_chose() -> None:
    config = snippets.build_snippets(
        full_docker=Mode.DIND, build_only=Mode.DIND, usable=frozenset({Mode.DIND}), tested=lambda m: (probe_spec(m),)
    )
    assert "pod_config" not in parse(config["skypilot"])["kubernetes"]


def test_the_gitlab_buildpacks_job_gets_the_selinux_type_its_pod_ran_as() -> None:
    spec = specs.buildpacks_pod_spec(Images(), RESOURCES)
    text = snippets.gitlab_buildpacks_snippet(as_spc_t(specs.record(Mode.BUILDPACKS, "buildpacks", spec, proven=True)))
    lines = [line.strip("# ") for line in text.splitlines()]
    table = lines.index("[runners.kubernetes.pod_security_context]")
    assert lines[table + 1] == 'selinux_type = "spc_t"', lines[table:]
