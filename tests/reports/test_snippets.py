"""Snippets must be valid YAML that names the images the run used; security costs cover every mode."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from probes.model import Mode
from reports import snippets

IMAGES = {"dind": "registry.corp/mirror/docker:27-dind", "buildkit": "registry.corp/mirror/buildkit:v0.19-rootless"}
ASSESSED = (Mode.DIND, Mode.BUILDKIT_ROOTLESS, Mode.SYSBOX, Mode.HOST_SOCKET)


def parse(text: str) -> Any:
    return yaml.safe_load(text)


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


@pytest.mark.parametrize("mode", ASSESSED, ids=lambda mode: mode.value)
def test_every_pod_snippet_is_a_valid_pod(mode: Mode) -> None:
    pod = parse(snippets.POD_SNIPPETS[mode](IMAGES))
    assert pod["apiVersion"] == "v1"
    assert pod["kind"] == "Pod"
    mounted = {m["name"] for c in containers(pod).values() for m in c.get("volumeMounts", [])}
    assert mounted == {v["name"] for v in pod["spec"]["volumes"]}


def test_dind_pod_is_a_native_privileged_socket_only_sidecar() -> None:
    text = snippets.dind_pod(IMAGES)
    pod = parse(text)
    dind = containers(pod)["dind"]
    assert dind["image"] == IMAGES["dind"]
    assert IMAGES["dind"] in text
    assert dind["restartPolicy"] == "Always"
    assert dind["securityContext"] == {"privileged": True}
    assert {"name": "DOCKER_TLS_CERTDIR", "value": ""} in dind["env"]
    assert dind["args"] == ["dockerd", "--host=unix:///var/run/docker.sock"]
    assert dind["startupProbe"]["exec"]["command"] == ["docker", "info"]
    mounts = {m["mountPath"]: m["name"] for m in dind["volumeMounts"]}
    assert mounts == {"/var/run": "docker-run", "/var/lib/docker": "docker-data"}
    job = containers(pod)["job"]
    assert {"name": "docker-run", "mountPath": "/var/run"} in job["volumeMounts"]
    assert all("emptyDir" in volume for volume in pod["spec"]["volumes"])


def test_buildkit_pod_uses_the_rootless_reference_security_context() -> None:
    pod = parse(snippets.buildkit_rootless_pod(IMAGES))
    buildkitd = containers(pod)["buildkitd"]
    assert buildkitd["image"] == IMAGES["buildkit"]
    assert buildkitd["securityContext"] == {
        "seccompProfile": {"type": "Unconfined"},
        "appArmorProfile": {"type": "Unconfined"},
        "runAsUser": 1000,
        "runAsGroup": 1000,
    }
    assert buildkitd["args"] == [
        "--addr",
        "unix:///run/user/1000/buildkit/buildkitd.sock",
        "--oci-worker-no-process-sandbox",
    ]
    assert "/home/user/.local/share/buildkit" in {m["mountPath"] for m in buildkitd["volumeMounts"]}
    assert all("privileged" not in c.get("securityContext", {}) for c in containers(pod).values())


def test_sysbox_pod_runs_dockerd_without_privileged() -> None:
    pod = parse(snippets.sysbox_pod(IMAGES))
    assert pod["spec"]["runtimeClassName"] == "sysbox-runc"
    assert containers(pod)["dind"]["image"] == IMAGES["dind"]
    assert all("securityContext" not in c for c in containers(pod).values())


def test_host_socket_pod_says_it_is_discouraged() -> None:
    text = snippets.host_socket_pod(IMAGES)
    assert text.startswith("# DISCOURAGED")
    assert parse(text)["spec"]["volumes"][0]["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}


def test_upstream_images_are_the_default() -> None:
    assert "image: docker:28-dind" in snippets.dind_pod()
    assert "image: moby/buildkit:rootless" in snippets.buildkit_rootless_pod()


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
        cache=snippets.CacheClass(name="fuse-cache", overlay=False),
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
        images=IMAGES,
    )
    assert list(config) == ["skypilot", "dind", "buildkit-rootless"]
    for text in config.values():
        parse(text)
    assert list(snippets.build_snippets(full_docker=Mode.NONE, build_only=Mode.NONE, usable=frozenset())) == [
        "skypilot"
    ]


def test_unknown_image_keys_are_ignored_and_known_ones_win() -> None:
    resolved = snippets.resolve_images({"dind": "mine:1", "tools": "tools:1"})
    assert resolved["dind"] == "mine:1"
    assert resolved["buildkit"] == snippets.DEFAULT_IMAGES["buildkit"]


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
