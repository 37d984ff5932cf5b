"""DinD networking on the testbed: the nested transfer (docker-run) and GitLab's TLS layout (socket-sharing).

With `testbed/up --pod-mtu 1400` the pod veths get MTU 1400 while dcbr0 and the registry on the node stay at 1500:
a nested container on dockerd's default bridge (1500) advertises MSS 1460, the registry sends 1500-byte frames and
the bridge drops them at the pod's veth, silently. Elsewhere the same transfer completes.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from testbed.conformance.harness import Profile, SuiteRun

PAYLOAD = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def pod_mtu(profile: Profile) -> int:
    """The active profile's --pod-mtu (0: not set)."""
    return profile.pod_mtu or 0


def registry_host(env: dict[str, str]) -> str:
    return env["TESTBED_IMAGE_DIND"].split("/", 1)[0]


def comments(snippet: str) -> str:
    return " ".join(line[2:] for line in snippet.splitlines() if line.startswith("#"))


def test_the_nested_transfer_completes_without_a_warning_on_the_permissive_profile(
    suite_run: SuiteRun, profile: Profile, pod_mtu: int, testbed_env: dict[str, str]
) -> None:
    if profile.name != "permissive" or pod_mtu:
        pytest.skip("shown on the permissive profile")
    check = suite_run.check("docker-run")
    assert check["status"] == "pass", check["summary"]
    transfer = check["evidence"]["transfer"]
    assert transfer["state"] == "complete", transfer
    assert transfer["bytes"] == transfer["bytes_wanted"] == PAYLOAD, transfer
    assert transfer["payload"]["registry"] == registry_host(testbed_env)
    assert transfer["payload"]["blob"].startswith("sha256:")
    assert f"fetched 8.0 MiB from {registry_host(testbed_env)} in {transfer['seconds']}s" in check["summary"]
    assert "WARNING" not in check["summary"]
    assert "transfer_remedy" not in check["evidence"]
    assert "transfer_control" not in check["evidence"]
    assert "transfer_pod" not in check["evidence"]
    assert check["evidence"]["nat_masquerade"] == "present"
    assert check["evidence"]["ip_forward"] == "1"
    assert check["remediation"] == ""
    snippets = suite_run.report["recommendation"]["snippets"]
    assert "--mtu" not in snippets["dind"]


def test_a_smaller_pod_mtu_stalls_the_nested_transfer_and_proves_the_remedy(
    suite_run: SuiteRun, pod_mtu: int, testbed_env: dict[str, str]
) -> None:
    mtu = pod_mtu
    if not mtu:
        pytest.skip("needs a profile with --pod-mtu")
    check = suite_run.check("docker-run")
    evidence: dict[str, Any] = check["evidence"]
    assert check["status"] == "pass", check["summary"]
    assert int(evidence["pod_mtu"]) == mtu
    assert int(evidence["inner_mtu"]) > mtu
    transfer = evidence["transfer"]
    assert transfer["state"] == "stalled", transfer
    assert transfer["bytes"] < transfer["bytes_wanted"] == PAYLOAD
    assert transfer["payload"]["registry"] == registry_host(testbed_env)
    remedy = evidence["transfer_remedy"]
    assert remedy["state"] == "complete", remedy
    assert remedy["mtu"] == mtu
    assert remedy["bytes"] == PAYLOAD
    assert remedy["network_option"] == f"com.docker.network.driver.mtu={mtu}"
    control = evidence["transfer_control"]
    assert control["state"] == "stalled", "the remedy is proven only when the default bridge stalls again"
    assert control["mtu"] > mtu
    assert control["bytes"] < PAYLOAD
    assert "transfer_pod" not in evidence, "a stall the pod's MTU fixes is not a nested network without reach"
    assert "WARNING" in check["summary"]
    assert f"it got {transfer['bytes']} bytes, then nothing" in check["summary"]
    assert f"on a nested network with MTU {mtu} the same transfer completed" in check["summary"]
    assert "on the default bridge once more it stalled again" in check["summary"]
    assert check["remediation"].startswith("Proven on this cluster")
    assert f"--mtu={mtu}" in check["remediation"]
    assert suite_run.mode("dind")["usable"]
    snippets = suite_run.report["recommendation"]["snippets"]
    for key in ("dind", "gitlab"):
        assert f"--mtu={mtu}: PROVEN" in comments(snippets[key]), key
        assert "--mtu" not in yaml.safe_dump(yaml.safe_load(snippets[key])), f"{key}: the spec must stay as it ran"


def test_gitlabs_tls_layout_reaches_dockerd_as_the_non_root_job(
    suite_run: SuiteRun, profile: Profile, pod_mtu: int, testbed_env: dict[str, str]
) -> None:
    if profile.name != "permissive" and not pod_mtu:
        pytest.skip("shown where privileged DinD works: the permissive and --pod-mtu profiles")
    sharing = suite_run.check("socket-sharing")
    assert sharing["status"] == "pass", sharing["summary"]
    tls = sharing["evidence"]["tls"]
    assert tls["ok"] is True, tls
    assert tls["client_uid"] != "0"
    assert tls["client_uid"] == sharing["evidence"]["classic"]["client_uid"]
    assert tls["docker_host"] == "tcp://docker:2376"
    assert tls["certs"] == "present"
    assert tls["key_mode"].split()[0] == "644", "docker:dind opens the client key to any uid"
    assert tls["server_version"] == suite_run.check("docker-run")["evidence"]["server_version"]
    assert (
        f"TLS over tcp://docker:2376 (GitLab's form) ready in {tls['ready_s']}s as uid {tls['client_uid']}"
        in (sharing["summary"])
    )
    gitlab = yaml.safe_load(suite_run.report["recommendation"]["snippets"]["gitlab"])["docker-build"]
    assert gitlab["services"][0] == {"name": testbed_env["TESTBED_IMAGE_DIND"], "alias": "docker"}
    assert gitlab["variables"]["DOCKER_HOST"] == "tcp://docker:2376"
    assert gitlab["variables"]["DOCKER_TLS_VERIFY"] == "1"
    assert gitlab["variables"]["DOCKER_CERT_PATH"] == "/certs/client"
    assert f"run_as_user = {tls['client_uid']}" in suite_run.report["recommendation"]["snippets"]["gitlab"]
