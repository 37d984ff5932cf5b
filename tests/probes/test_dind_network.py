"""DinD networking: the nested transfer behind docker-run's MTU warning, and GitLab's TLS layout of socket-sharing.

Verdicts over recorded evidence, with the failure texts of the real software: busybox 1.35 wget (the nested
container's), the docker CLI 29.8.1 and 20.10.24 (the job container's), Python's ssl module (this machine's).
"""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from probes import specs
from probes.definitions import docker_run, socket_sharing
from probes.definitions._docker import (
    WAIT_FOR_DAEMON,
    Payload,
    _plain_http,
    image_repository,
    largest_layer,
    platform_manifest,
)
from probes.engine import CommandResult, ProbeContext, Progress, RunScope, key_values, run_probe
from probes.exceptions import ExecChannelError
from probes.model import Status
from probes.settings import Images, ProbeSettings, Resources

MIB8 = 8 * 1024 * 1024
REGISTRY = "10.88.0.1:5000"


# ----- locating the payload: a layer of the DinD image, in the registry that served it --------------------------------
@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("docker:29-dind", ("registry-1.docker.io", "library/docker", "29-dind")),
        ("docker.io/library/docker:29-dind", ("registry-1.docker.io", "library/docker", "29-dind")),
        ("myorg/dind", ("registry-1.docker.io", "myorg/dind", "latest")),
        ("10.88.0.1:5000/dindcheck/dind:c8bc4e637296", (REGISTRY, "dindcheck/dind", "c8bc4e637296")),
        ("registry.corp/mirror/docker:27-dind", ("registry.corp", "mirror/docker", "27-dind")),
        ("localhost/dind", ("localhost", "dind", "latest")),
        ("ghcr.io/a/b@sha256:" + "c" * 64, ("ghcr.io", "a/b", "sha256:" + "c" * 64)),
    ],
)
def test_image_references_are_normalised_as_docker_does(ref: str, expected: tuple[str, str, str]) -> None:
    assert image_repository(ref) == expected


# The shape of docker:29-dind's index on Docker Hub: BuildKit's attestation manifests sit beside the images, with
# platform unknown/unknown, and hold a few KiB.
INDEX: dict[str, Any] = {
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "schemaVersion": 2,
    "manifests": [
        {
            "annotations": {
                "vnd.docker.reference.digest": "sha256:" + "a" * 64,
                "vnd.docker.reference.type": "attestation-manifest",
            },
            "digest": "sha256:" + "b" * 64,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "platform": {"architecture": "unknown", "os": "unknown"},
            "size": 839,
        },
        {
            "digest": "sha256:" + "a" * 64,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "platform": {"architecture": "amd64", "os": "linux"},
            "size": 3021,
        },
    ],
}


def test_the_payload_comes_from_a_runnable_image_never_an_attestation() -> None:
    assert platform_manifest(INDEX) == "sha256:" + "a" * 64
    assert platform_manifest({"manifests": [INDEX["manifests"][0]]}) == ""


def test_the_payload_is_the_largest_layer() -> None:
    manifest = {
        "layers": [
            {"digest": "sha256:small", "size": 3_600_000},
            {"digest": "sha256:big", "size": 137_146_441},
            {"digest": "sha256:mid", "size": 20_000_000},
        ]
    }
    assert largest_layer(manifest) == ("sha256:big", 137_146_441)
    assert largest_layer({"layers": []}) == ("", 0)


def test_http_is_tried_only_when_https_met_plain_http() -> None:
    """Python's ssl words (OpenSSL 3.0) for an https request to the testbed's plain-HTTP registry; nothing else."""
    plain = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    assert _plain_http(plain)
    refused = ConnectionRefusedError(111, "Connection refused")
    assert not _plain_http(refused)
    untrusted = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert not _plain_http(untrusted)


def test_the_pull_token_and_a_signed_redirect_stay_out_of_the_evidence() -> None:
    payload = Payload(
        url="https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/ab/data?sig=SECRET",
        header="Authorization: Bearer TOKEN",
        size=MIB8,
        blob="sha256:ab",
        registry="registry-1.docker.io",
        token=True,
    )
    evidence = str(payload.to_evidence())
    assert "SECRET" not in evidence
    assert "TOKEN" not in evidence
    assert "anonymous bearer token" in evidence


# ----- the nested transfer: what the nested busybox printed --------------------------------------------------------
def transfer(state: str, got: int, seconds: float, mtu: int, **extra: Any) -> dict[str, Any]:
    return {
        "payload": {"registry": REGISTRY, "blob": "sha256:f066", "bytes": MIB8},
        "stall_s": 10,
        "bytes_wanted": MIB8,
        "state": state,
        "bytes": got,
        "seconds": seconds,
        "mtu": mtu,
        **extra,
    }


def nested_ok(pod_mtu: int, inner_mtu: int, **extra: Any) -> dict[str, Any]:
    return {
        "daemon": "ok",
        "import": "ok",
        "run_none": "ok",
        "run_bridge": "ok",
        "pod_mtu": str(pod_mtu),
        "inner_mtu": str(inner_mtu),
        "server_version": "29.8.1",
        **extra,
    }


def test_transfer_output_is_read_as_the_nested_container_printed_it() -> None:
    stdout = (
        "xfer_mtu=1500\nxfer=stalled\nxfer_bytes=0\nxfer_s=10.02\nxfer_response=\nxfer_error=\n"
        "some noise from docker run\n"
    )
    assert docker_run.transfer_result(key_values(stdout), "") == {
        "state": "stalled",
        "bytes": 0,
        "seconds": 10.02,
        "mtu": 1500,
    }
    broken = "xfer_mtu=1500\nxfer=broken\nxfer_bytes=0\nxfer_s=0.01\n"
    broken += "xfer_error=wget: can't connect to remote host (10.88.0.1): Connection refused \n"
    found = docker_run.transfer_result(key_values(broken), "")
    assert found["error"] == "wget: can't connect to remote host (10.88.0.1): Connection refused"
    waiting = "xfer_mtu=1500\nxfer=stalled\nxfer_bytes=0\nxfer_s=10.01\nxfer_tcp=02 06 \nxfer_error=\n"
    assert docker_run.transfer_result(key_values(waiting), "")["tcp"] == ["syn_sent", "time_wait"]
    assert docker_run.transfer_result({}, "")["state"] == "not_run"
    assert docker_run.transfer_result({}, "")["error"] == "the transfer script printed nothing"


def test_a_completed_transfer_passes_without_a_warning() -> None:
    evidence = nested_ok(1500, 1500, transfer=transfer("complete", MIB8, 0.41, 1500, response="HTTP/1.1 200 OK"))
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert "WARNING" not in outcome.summary
    assert f"fetched 8.0 MiB from {REGISTRY} in 0.41s" in outcome.summary
    assert outcome.remediation == ""
    assert docker_run.proven_remedies(evidence) == ()


def test_a_stall_fixed_by_the_pods_mtu_warns_and_proves_the_remedy() -> None:
    evidence = nested_ok(
        1400,
        1500,
        transfer=transfer("stalled", 0, 10.03, 1500),
        transfer_remedy={
            "network_option": "com.docker.network.driver.mtu=1400",
            **transfer("complete", MIB8, 0.52, 1400),
        },
        transfer_control=transfer("stalled", 0, 10.02, 1500, tcp=["established"]),
    )
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS, "the nested run worked: the stall is a warning"
    assert "WARNING" in outcome.summary
    assert "stalled" in outcome.summary
    assert "it got 0 bytes, then nothing for 10s" in outcome.summary
    assert "on a nested network with MTU 1400 the same transfer completed (8.0 MiB in 0.52s)" in outcome.summary
    assert "on the default bridge once more it stalled again (0 bytes)" in outcome.summary
    assert (outcome.remediation or "").startswith("Proven on this cluster")
    assert "--mtu=1400" in (outcome.remediation or "")
    assert outcome.evidence["mtu_remedy_proven"] == 1400
    (remedy,) = docker_run.proven_remedies(evidence)
    assert remedy.startswith("--mtu=1400: PROVEN")
    assert "stalled again on the default bridge" in remedy


@pytest.mark.parametrize(
    ("control", "why"),
    [
        (
            transfer("complete", MIB8, 0.48, 1500),
            "the default bridge then completed it too (8.0 MiB in 0.48s): a one-off",
        ),
        (
            {"state": "not_measured", "bytes_wanted": MIB8, "error": "the exec channel failed: broke"},
            "the control run on the default bridge did not stall again (the exec channel failed: broke)",
        ),
        (None, "the control run on the default bridge did not stall again (not run)"),
    ],
    ids=["completed", "channel-failed", "not-run"],
)
def test_an_mtu_remedy_without_a_control_that_stalls_again_is_not_proven(
    control: dict[str, Any] | None, why: str
) -> None:
    """The pod-MTU network completing after one stall is no proof: the same bridge may complete the second time."""
    evidence = nested_ok(
        1400,
        1500,
        transfer=transfer("stalled", 0, 10.03, 1500),
        transfer_remedy={
            "network_option": "com.docker.network.driver.mtu=1400",
            **transfer("complete", MIB8, 0.5, 1400),
        },
    )
    if control is not None:
        evidence["transfer_control"] = control
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert "WARNING" in outcome.summary
    assert why in outcome.summary
    assert "PROVEN" not in outcome.summary
    assert "Proven" not in (outcome.remediation or "")
    assert "Not proven here (the stall did not repeat)" in (outcome.remediation or "")
    assert "mtu_remedy_proven" not in outcome.evidence
    assert docker_run.proven_remedies(evidence) == ()


def test_a_stall_the_pods_mtu_does_not_fix_proves_no_mtu_remedy() -> None:
    evidence = nested_ok(
        1400,
        1500,
        transfer=transfer("stalled", 0, 10.0, 1500),
        transfer_remedy={"network_option": "com.docker.network.driver.mtu=1400", **transfer("stalled", 0, 10.0, 1400)},
    )
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert "WARNING" in outcome.summary
    assert "did not complete either" in outcome.summary
    assert "--mtu" not in (outcome.remediation or "")
    assert "MTU does not explain it" in (outcome.remediation or "")
    assert docker_run.proven_remedies(evidence) == ()


def test_a_stall_without_an_mtu_mismatch_is_not_called_one() -> None:
    evidence = nested_ok(1500, 1500, transfer=transfer("stalled", 16384, 10.0, 1500))
    outcome = docker_run.verdict(evidence)
    assert "WARNING" in outcome.summary
    assert "it got 16384 bytes" in outcome.summary
    assert "not an MTU mismatch" in outcome.summary
    assert docker_run.proven_remedies(evidence) == ()


@pytest.mark.parametrize(
    "error",
    [
        "wget: not an http or ftp url: https://registry-1.docker.io/v2/library/docker/blobs/sha256:ab",  # no TLS
        "wget: can't execute 'ssl_client': No such file or directory",  # Alpine's helper missing
    ],
)
def test_a_nested_wget_without_https_measures_nothing(error: str) -> None:
    evidence = nested_ok(1500, 1500, transfer=transfer("broken", 0, 0.01, 1500, error=error))
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert "transfer not measured: the nested busybox wget cannot fetch https: " + error in outcome.summary
    assert "fetched" not in outcome.summary
    assert "WARNING" not in outcome.summary


def test_a_payload_not_located_measures_nothing_and_an_mtu_mismatch_still_warns() -> None:
    error = (
        "the payload could not be located: https://registry-1.docker.io/v2/ unreachable from this machine: timed out"
    )
    evidence = nested_ok(1400, 1500, transfer={"state": "not_measured", "error": error})
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert f"transfer not measured: {error}" in outcome.summary
    assert "WARNING: the nested bridge's MTU 1500 exceeds the pod network's 1400" in outcome.summary
    assert "Not proven here" in (outcome.remediation or "")
    assert docker_run.proven_remedies(evidence) == ()


def test_a_slow_transfer_is_neither_a_stall_nor_a_completion() -> None:
    evidence = nested_ok(1500, 1500, transfer=transfer("slow", 3_000_000, 60.0, 1500))
    outcome = docker_run.verdict(evidence)
    assert "slow, not stalled" in outcome.summary
    assert "WARNING" not in outcome.summary
    assert "fetched" not in outcome.summary


# ----- a nested fetch that got nothing through: the pod's own fetch of the same bytes decides -------------------------
# busybox 1.36 wget's words (the nested container's), and what FETCH records of a connection still waiting.
NO_ANSWER = transfer("stalled", 0, 10.01, 1500, tcp=["syn_sent"])
BAD_ADDRESS = transfer("broken", 0, 0.02, 1500, error="wget: bad address 'registry-1.docker.io'")
REFUSED_NESTED = transfer(
    "broken", 0, 0.01, 1500, error="wget: can't connect to remote host (10.88.0.1): Connection refused"
)
NO_ROUTE = transfer("broken", 0, 3.05, 1500, error="wget: can't connect to remote host (10.88.0.1): No route to host")
POD_FETCHED = transfer("complete", MIB8, 0.31, 1500)


@pytest.mark.parametrize(
    ("nested", "facts", "cause", "words", "remedy"),
    [
        (
            NO_ANSWER,
            {"nat_masquerade": "absent", "ip_forward": "1"},
            "its connection got no answer in 10s (SYN sent, nothing came back)",
            "dockerd set up no NAT for its bridge (no MASQUERADE rule in the pod)",
            "--iptables=false",
        ),
        (
            NO_ANSWER,
            {"nat_masquerade": "present", "ip_forward": "0"},
            "its connection got no answer in 10s",
            "IP forwarding is off in the pod",
            "--ip-forward=false",
        ),
        (
            BAD_ADDRESS,
            {"nat_masquerade": "present", "ip_forward": "1"},
            "wget: bad address 'registry-1.docker.io'",
            "nested DNS",
            "--dns=",
        ),
        (
            NO_ROUTE,
            {"nat_masquerade": "present", "ip_forward": "1"},
            "No route to host",
            "while the pod itself fetched 8.0 MiB in 0.31s",
            "iptables-save",
        ),
        (
            REFUSED_NESTED,
            {"nat_masquerade": "unknown", "ip_forward": "1"},
            "Connection refused",
            "while the pod itself fetched 8.0 MiB in 0.31s",
            "DOCKER_IPTABLES_LEGACY=1",
        ),
    ],
    ids=["no-nat", "no-forwarding", "dns", "no-route", "refused"],
)
def test_nested_containers_without_network_fail_docker_run_with_the_cause(
    nested: dict[str, Any], facts: dict[str, str], cause: str, words: str, remedy: str
) -> None:
    """Every docker build with a RUN that downloads fails there: the check fails, with what to change."""
    evidence = nested_ok(1500, 1500, transfer=dict(nested), transfer_pod=POD_FETCHED, **facts)
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.FAIL, outcome.summary
    assert outcome.summary.startswith(
        "nested containers run on the bridge and with --network none, but have no network: a nested container on "
        f"the default bridge got nothing from {REGISTRY}: "
    )
    assert cause in outcome.summary
    assert words in outcome.summary
    assert "while the pod itself fetched 8.0 MiB in 0.31s" in outcome.summary
    assert remedy in (outcome.remediation or "")
    assert docker_run.proven_remedies(evidence) == ()


def test_a_stall_the_pods_mtu_does_not_fix_with_nothing_through_fails_when_the_pod_fetches() -> None:
    evidence = nested_ok(
        1400,
        1500,
        transfer=dict(NO_ANSWER),
        transfer_remedy={"network_option": "com.docker.network.driver.mtu=1400", **transfer("stalled", 0, 10.0, 1400)},
        transfer_pod=transfer("complete", MIB8, 0.3, 1400),
        nat_masquerade="absent",
    )
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.FAIL
    assert "no MASQUERADE rule" in outcome.summary


def test_a_fetch_the_pod_cannot_make_either_is_not_a_nested_network_failure() -> None:
    """The registry beyond the pod network's reach (egress policy, proxy): not DinD's doing, so nothing is failed."""
    pod = transfer("broken", 0, 0.02, 1500, error="wget: bad address 'registry-1.docker.io'")
    evidence = nested_ok(1500, 1500, transfer=dict(BAD_ADDRESS), transfer_pod=pod, nat_masquerade="present")
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert "transfer not measured: a nested container on the default bridge got nothing from" in outcome.summary
    assert "and the pod itself got nothing either (wget: bad address 'registry-1.docker.io')" in outcome.summary
    assert "not DinD's doing" in outcome.summary
    assert "fetched" not in outcome.summary


def test_a_pod_fetch_that_could_not_run_concludes_nothing() -> None:
    pod = {"state": "not_measured", "bytes_wanted": MIB8, "error": "the exec channel failed: broke"}
    evidence = nested_ok(1500, 1500, transfer=dict(NO_ANSWER), transfer_pod=pod, nat_masquerade="absent")
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert "transfer not measured" in outcome.summary
    assert "could not be run (the exec channel failed: broke)" in outcome.summary


def test_an_http_answer_or_bytes_are_not_nothing_through() -> None:
    """The registry answered (an HTTP error) or bytes came: the nested network works; nothing to fail."""
    answered = transfer("broken", 0, 0.1, 1500, response="HTTP/1.1 401 Unauthorized", error="wget: server returned")
    assert not docker_run.got_nothing(answered)
    assert not docker_run.got_nothing(transfer("stalled", 16384, 10.0, 1500))
    assert not docker_run.got_nothing(
        transfer("broken", 0, 0.01, 1500, error="wget: not an http or ftp url: https://x")
    )
    assert docker_run.got_nothing(NO_ANSWER)
    evidence = nested_ok(1500, 1500, transfer=answered, transfer_pod=POD_FETCHED)
    assert docker_run.verdict(evidence).status is Status.PASS


def test_a_pass_does_not_claim_the_run_with_network_none_when_it_failed() -> None:
    evidence = nested_ok(1500, 1500, transfer=transfer("complete", MIB8, 0.4, 1500))
    evidence.update(run_none="failed", run_none_error="docker: Error response from daemon: failed to set up netns")
    outcome = docker_run.verdict(evidence)
    assert outcome.status is Status.PASS
    assert "with --network none it failed: docker: Error response from daemon" in outcome.summary
    assert "works on the bridge and with --network none" not in outcome.summary


def test_the_transfer_never_decides_a_failed_nested_run() -> None:
    evidence = nested_ok(1500, 1500, run_bridge="failed", run_bridge_error="x")
    evidence["transfer"] = transfer("complete", MIB8, 0.4, 1500)
    assert docker_run.verdict(evidence).status is Status.FAIL


# ----- GitLab's TLS layout: the docker CLI's words, each to its cause -------------------------------------------------
# docker CLI 29.8.1 and 20.10.24 with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH=/certs/client, against dockerd's TLS
# listener (go's crypto/tls and crypto/x509 texts in the handshake).
CERTS_MISSING_29 = (
    "Failed to initialize: unable to resolve docker endpoint: open /certs/client/ca.pem: no such file or directory"
)
CERTS_MISSING_20 = "unable to resolve docker endpoint: open /certs/client/ca.pem: no such file or directory"
KEY_DENIED_29 = "Failed to initialize: unable to resolve docker endpoint: open /certs/client/key.pem: permission denied"
KEY_DENIED_20 = "unable to resolve docker endpoint: open /certs/client/key.pem: permission denied"
NOT_DOCKER_29 = (
    'error during connect: Get "https://docker:2376/v1.56/info": tls: failed to verify certificate: x509: '
    "certificate is valid for localhost, dind-7f3a, not docker"
)
NOT_DOCKER_20 = (
    'ERROR: error during connect: Get "https://docker:2376/v1.24/info": x509: certificate is valid for localhost, '
    "dind-7f3a, not docker"
)
UNKNOWN_CA_29 = (
    'error during connect: Get "https://docker:2376/v1.56/info": tls: failed to verify certificate: x509: '
    "certificate signed by unknown authority"
)
NO_CLIENT_CERT_29 = (
    'error during connect: Get "https://docker:2376/v1.56/info": remote error: tls: certificate required'
)


SERVING_LOG = 'level=info msg="API listen on [::]:2376"'
"""dockerd's log when it serves: a client that still cannot reach it has found a problem, not a slow node."""


def tls_layout(values: dict[str, str], dockerd_log: str = SERVING_LOG) -> dict[str, Any]:
    found = socket_sharing.layout_result(
        {"client_uid": "1000", "docker_host": "tcp://docker:2376", "cert_path": "/certs/client", **values}, ""
    )
    return {**found, "dockerd_log": dockerd_log} if not found["ok"] else found


@pytest.mark.parametrize(
    ("error", "cause", "remedy"),
    [
        (CERTS_MISSING_29, "client certificates never appeared in /certs/client", "DOCKER_TLS_CERTDIR=/certs"),
        (CERTS_MISSING_20, "client certificates never appeared in /certs/client", "until docker info"),
        (KEY_DENIED_29, "(uid 1000) cannot read the client key (600 root:root)", "0644"),
        (KEY_DENIED_20, "(uid 1000) cannot read the client key (600 root:root)", "run the job as root"),
        (NOT_DOCKER_29, "TLS handshake with dockerd failed", "DOCKER_TLS_SAN"),
        (NOT_DOCKER_20, "TLS handshake with dockerd failed", "DOCKER_TLS_SAN"),
        (UNKNOWN_CA_29, "TLS handshake with dockerd failed", "regenerates the certs"),
        (NO_CLIENT_CERT_29, "TLS handshake with dockerd failed", "trust the CA"),
    ],
    ids=["certs-29", "certs-20.10", "key-29", "key-20.10", "name-29", "name-20.10", "ca-29", "no-client-cert-29"],
)
def test_tls_failures_are_named_in_the_clis_words(error: str, cause: str, remedy: str) -> None:
    tls = tls_layout(
        {"daemon": "unreachable", "daemon_error": error, "key_mode": "600 root:root", "certs_wait_s": "60"}
    )
    clause, remediation = socket_sharing.tls_finding(tls)
    assert clause.startswith("TLS over tcp://docker:2376 (GitLab's form) failed: ")
    assert cause in clause
    assert error in clause, "the CLI's own words are quoted"
    assert remedy in remediation


def test_an_unknown_tls_failure_names_no_cause() -> None:
    tls = tls_layout(
        {"daemon": "unreachable", "daemon_error": "Cannot connect to the Docker daemon at tcp://docker:2376."},
        dockerd_log='level=info msg="starting up" | level=error msg="something unforeseen"',
    )
    clause, remediation = socket_sharing.tls_finding(tls)
    assert "dockerd never answered on tcp://docker:2376: Cannot connect" in clause
    assert "dockerd log: level=info" in clause
    assert remediation == ""


# dockerd's entrypoint on a slow node, still making its RSA keys: openssl's progress, no error, nothing listening
KEYGEN_LOG = "Generating RSA private key, 4096 bit long modulus (2 primes) | ......++++"


@pytest.mark.parametrize(
    ("values", "waited"),
    [
        ({"certs": "missing", "daemon_error": CERTS_MISSING_29, "certs_wait_s": "300", "daemon_wait_s": "9"}, "300"),
        ({"certs": "present", "daemon_error": "Cannot connect to the Docker daemon", "daemon_wait_s": "300"}, "300"),
    ],
    ids=["certs-not-yet-written", "daemon-not-yet-listening"],
)
def test_a_tls_dockerd_still_starting_concludes_nothing(values: dict[str, str], waited: str) -> None:
    """Before: a vm node's slow RSA keygen read 'the client certificates never appeared ... within 60s' (a failure)."""
    clause, remediation = socket_sharing.tls_finding(tls_layout({"daemon": "unreachable", **values}, KEYGEN_LOG))
    assert clause.startswith("TLS over tcp://docker:2376 (GitLab's form): not concluded (dockerd did not answer ")
    assert f"within {waited}s" in clause
    assert "larger --timeout" in clause
    assert "failed" not in clause
    assert remediation == ""


def test_a_tls_dockerd_that_exited_is_not_still_starting() -> None:
    tls = tls_layout({"daemon": "unreachable", "daemon_error": CERTS_MISSING_29}, KEYGEN_LOG)
    tls["dockerd_exit"] = {"exit_code": 1, "reason": "Error", "log": KEYGEN_LOG}
    clause, _ = socket_sharing.tls_finding(tls)
    assert "failed: the client certificates never appeared" in clause


def test_the_tls_layout_records_the_certs_race_and_its_time_to_ready() -> None:
    tls = tls_layout(
        {
            "daemon": "ok",
            "certs": "present",
            "certs_race": CERTS_MISSING_29,
            "certs_waited_s": "4.21",
            "key_mode": "644",
        }
    )
    tls["ready_s"] = 7.9
    clause, remediation = socket_sharing.tls_finding(tls)
    assert clause.startswith("TLS over tcp://docker:2376 (GitLab's form) ready in 7.9s as uid 1000")
    assert CERTS_MISSING_29 in clause
    assert "waited 4.21s for them" in clause
    assert remediation == ""


def socket_ok(**extra: Any) -> dict[str, Any]:
    found = socket_sharing.layout_result({"daemon": "ok", "client_uid": "1000", "socket": "socket 660 root:1000"}, "")
    return {**found, "ready_s": 3.1, **extra}


def test_socket_sharing_names_the_tls_layouts_result_in_a_pass() -> None:
    ready = tls_layout({"daemon": "ok", "certs": "present"}) | {"ready_s": 6.5}
    outcome = socket_sharing.verdict(
        {"classic": socket_ok(), "native_sidecar": {"supported": True, **socket_ok()}, "tls": ready}
    )
    assert outcome.status is Status.PASS
    assert "native sidecar ready in 3.1s; TLS over tcp://docker:2376 (GitLab's form) ready in 6.5s" in outcome.summary
    assert outcome.remediation == ""


def test_a_failed_tls_layout_is_named_in_a_socket_pass_with_its_remedy() -> None:
    failed = tls_layout({"daemon": "unreachable", "daemon_error": KEY_DENIED_29, "key_mode": "600 root:root"})
    outcome = socket_sharing.verdict({"classic": socket_ok(), "native_sidecar": {"supported": False}, "tls": failed})
    assert outcome.status is Status.PASS
    assert "TLS over tcp://docker:2376 (GitLab's form) failed: the job container (uid 1000)" in outcome.summary
    assert "0644" in (outcome.remediation or "")


def test_the_tls_layout_alone_passes_the_check_and_says_the_sockets_failed() -> None:
    refused = "permission denied while trying to connect to the Docker daemon socket"
    classic = socket_sharing.layout_result({"daemon": "unreachable", "daemon_error": refused}, "")
    ready = tls_layout({"daemon": "ok"}) | {"ready_s": 6.5}
    outcome = socket_sharing.verdict({"classic": classic, "native_sidecar": {"supported": False}, "tls": ready})
    assert outcome.status is Status.PASS
    assert f"classic sidecar failed ({refused})" in outcome.summary
    assert "(GitLab's form) ready in 6.5s" in outcome.summary


def test_a_tls_pod_that_did_not_run_or_a_broken_channel_concludes_nothing_about_tls() -> None:
    clause, _ = socket_sharing.tls_finding({"ok": False, "pod_ran": False, "reason": "ImagePullBackOff"})
    assert clause == "TLS over tcp://docker:2376 (GitLab's form): the pod did not run (ImagePullBackOff)"
    clause, _ = socket_sharing.tls_finding(
        {"ok": False, "pod_ran": True, "concluded": False, "reason": "exec channel: broke"}
    )
    assert "not concluded" in clause
    assert "failed" not in clause


def _tls_wait_with_fake_docker(tmp_path: Path, certs_after_s: float) -> dict[str, str]:
    """TLS_WAIT_FOR_CERTS + WAIT_FOR_DAEMON by a real sh, against a stand-in `docker`.

    It answers like CLI 29.8.1 (missing certs) until a stand-in entrypoint writes the certs after certs_after_s.
    """
    certs = tmp_path / "certs"
    certs.mkdir()
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        f'[ -s "{certs}/ca.pem" ] || {{ echo "Failed to initialize: unable to resolve docker endpoint: open '
        f'{certs}/ca.pem: no such file or directory" >&2; exit 1; }}\n'
        'case "$1" in version) echo 29.8.1 ;; info) echo "Server Version: 29.8.1" ;; esac\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "DOCKER_CERT_PATH": str(certs), "DOCKER_HOST": "tcp://docker:2376"}
    script = socket_sharing.TLS_WAIT_FOR_CERTS + WAIT_FOR_DAEMON
    with subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.PIPE, text=True) as proc:
        time.sleep(certs_after_s)
        for name in ("key.pem", "cert.pem", "ca.pem"):  # the entrypoint's order: ca.pem is copied last
            (certs / name).write_text("pem\n")
        stdout, _ = proc.communicate(timeout=30)
    return key_values(stdout)


def test_waiting_for_the_certs_quotes_the_race_then_reaches_dockerd(tmp_path: Path) -> None:
    found = _tls_wait_with_fake_docker(tmp_path, 0.6)
    assert found["certs_race"].endswith("ca.pem: no such file or directory")
    assert found["certs"] == "present"
    assert float(found["certs_waited_s"]) >= 0.4
    assert found["daemon"] == "ok"


def test_the_tls_spec_is_gitlabs_kubernetes_executor_form() -> None:
    spec = specs.dind_tls_pod_spec(
        Images(dind="mirror/docker:29-dind", job="mirror/runner:1"),
        Resources(),
        job_uid=1001,
        dind_env=(("DOCKER_IPTABLES_LEGACY", "1"),),
    )
    dind, job = spec["containers"]
    assert spec["hostAliases"] == [{"ip": "127.0.0.1", "hostnames": ["docker"]}]
    assert "args" not in dind, "docker:dind's entrypoint picks the TLS listeners itself"
    assert dind["securityContext"] == {"privileged": True}
    assert dind["env"] == [
        {"name": "DOCKER_TLS_CERTDIR", "value": "/certs"},
        {"name": "DOCKER_IPTABLES_LEGACY", "value": "1"},
    ]
    assert {e["name"]: e["value"] for e in job["env"]} == {
        "DOCKER_HOST": "tcp://docker:2376",
        "DOCKER_TLS_CERTDIR": "/certs",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/certs/client",
        "HOME": "/tmp",  # noqa: S108 - the job's HOME as the spec sets it
    }
    assert job["securityContext"] == {"runAsUser": 1001, "runAsGroup": 1001}
    assert "privileged" not in str(job)
    assert job["volumeMounts"] == [{"name": "docker-certs", "mountPath": "/certs/client"}]
    assert {"name": "docker-certs", "emptyDir": {"medium": "Memory"}} in spec["volumes"]


# ----- FETCH, run by a real sh: GNU wget and coreutils stand in for the job image's busybox ---------------------------
def _pod_fetch(tmp_path: Path, url: str, want: int) -> tuple[dict[str, Any], float]:
    """POD_FETCH as the job container runs it (stall after 2 s, stop after 6 s); returns its result and duration."""
    busybox = tmp_path / "busybox"
    busybox.write_text('#!/bin/sh\ncmd=$1; shift; exec "$cmd" "$@"\n')
    busybox.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "XFER_URL": url,
        "XFER_HEADER": "",
        "XFER_BYTES": str(want),
        "XFER_STALL_S": "2",
        "XFER_MAX_S": "6",
    }
    started = time.monotonic()
    done = subprocess.run(
        ["/bin/sh", "-c", docker_run.POD_FETCH], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return docker_run.transfer_result(key_values(done.stdout), done.stderr), time.monotonic() - started


class _Blob(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"x" * 65536
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        """Quiet."""


def test_the_fetch_script_completes_and_names_an_unanswered_wait(tmp_path: Path) -> None:
    """A server that answers; one that accepts and never answers (the fetch, left running, never holds the output)."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blob) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        found, _ = _pod_fetch(tmp_path, f"http://127.0.0.1:{server.server_address[1]}/blob", 65536)
        server.shutdown()
    assert found["state"] == "complete", found
    assert found["bytes"] == 65536
    assert found["response"].startswith("HTTP/1.")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        found, took = _pod_fetch(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}/blob", 65536)
    assert found["state"] == "stalled", found
    assert found["bytes"] == 0
    assert "established" in found["tcp"]
    assert took < 6, "the fetch left running held the script's output open"
    assert docker_run.got_nothing(found)


# ----- a dockerd that dies at start: its container's state and log, not an exec into it ------------------------------
# dockerd 29's words when the image's iptables backend does not work on the node (docker-library/docker#463).
IPTABLES_DEATH = [
    'time="2026-12-04T16:40:01.1Z" level=info msg="Starting up"',
    'time="2026-12-04T16:40:01.9Z" level=info msg="Loading containers: start."',
    (
        "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed "
        'to register "bridge" driver: failed to create NAT chain DOCKER: iptables failed: iptables --wait -t nat -N '
        "DOCKER: iptables v1.8.11 (nf_tables): Could not fetch rule set generation id: Invalid argument"
    ),
    " (exit status 4)",
]
API_ENV_DEATH = [
    "dockerd-entrypoint: runc without time namespace support: adding --feature time-namespaces=false",
    "invalid DOCKER_MIN_API_VERSION: minimum supported API version is 1.24: 1.12",
]
UNREACHABLE = "daemon=unreachable\ndaemon_error=Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n"


def _status(name: str, *, ended: bool, exit_code: int = 1) -> SimpleNamespace:
    state = SimpleNamespace(
        running=None if ended else SimpleNamespace(started_at="now"),
        terminated=SimpleNamespace(exit_code=exit_code, reason="Error", message=None) if ended else None,
        waiting=None,
    )
    return SimpleNamespace(name=name, state=state, started=not ended, ready=not ended, image_id="")


class DyingDind:
    """The API server's view of a DinD pod whose dockerd exits after `alive_reads` reads of the pod."""

    def __init__(self, log: list[str], alive_reads: int, exit_code: int = 1) -> None:
        self.log = "\n".join(log) + "\n"
        self.alive_reads = alive_reads
        self.exit_code = exit_code
        self.reads = 0
        self.deleted: list[str] = []

    def create_namespaced_pod_with_http_info(self, _namespace: str, _body: Any, **_kwargs: Any) -> Any:
        """Created."""
        return None, 201, {}

    def read_namespaced_pod(self, _name: str, _namespace: str, **_kwargs: Any) -> Any:
        """Running, with dockerd's container terminated after the first alive_reads reads."""
        self.reads += 1
        ended = self.reads > self.alive_reads
        statuses = [_status("dind", ended=ended, exit_code=self.exit_code), _status("job", ended=False)]
        status = SimpleNamespace(
            phase="Running",
            reason=None,
            message=None,
            container_statuses=statuses,
            init_container_statuses=[],
            conditions=[],
        )
        spec = SimpleNamespace(node_name="node-a", containers=[], init_containers=[])
        return SimpleNamespace(spec=spec, status=status)

    def read_namespaced_pod_log(self, _name: str, _namespace: str, **_kwargs: Any) -> str:
        """What dockerd printed as it died."""
        return self.log

    def list_namespaced_event(self, _namespace: str, **_kwargs: Any) -> Any:
        """No events."""
        return SimpleNamespace(items=[])

    def delete_namespaced_pod(self, name: str, _namespace: str, **_kwargs: Any) -> None:
        """Deleted (remembered)."""
        self.deleted.append(name)

    def read_node(self, name: str, **_kwargs: Any) -> Any:
        """The node is Ready."""
        ready = SimpleNamespace(type="Ready", status="True", reason="KubeletReady", message="")
        return SimpleNamespace(metadata=SimpleNamespace(name=name), status=SimpleNamespace(conditions=[ready]))


class ScriptedContext(ProbeContext):
    """A probe context whose exec answers from the job container as the real one did; the dead dind refuses exec."""

    def exec(self, pod_name: str, container: str, script: str, *, timeout_s: float = 60.0) -> CommandResult:
        """The job's wait finds no daemon; an exec into the dead dind container fails on the channel."""
        if container == "dind":
            raise ExecChannelError(f'exec into {pod_name}/dind failed: container not found ("dind")')
        assert WAIT_FOR_DAEMON in script, "only the wait runs while dockerd is dead"
        return CommandResult(0, UNREACHABLE, "", timeout_s)


@pytest.mark.parametrize("alive_reads", [0, 1], ids=["dead-before-running", "dead-after-running"])
@pytest.mark.parametrize(
    ("log", "words", "remedy"),
    [
        (
            IPTABLES_DEATH,
            "the DinD image's iptables backend does not work on this node: failed to start daemon",
            "DOCKER_IPTABLES_LEGACY=1",
        ),
        (
            API_ENV_DEATH,
            "dockerd's last words: invalid DOCKER_MIN_API_VERSION: minimum supported API version is 1.24: 1.12",
            "Change that on the dind container",
        ),
    ],
    ids=["iptables", "bad-env"],
)
def test_a_dockerd_that_died_at_start_fails_with_its_own_words(
    monkeypatch: pytest.MonkeyPatch, log: list[str], words: str, remedy: str, alive_reads: int
) -> None:
    """Before: the exec into the dead dind container (or the pod never running) made the check prove nothing."""
    monkeypatch.setattr(docker_run, "locate_payload", lambda _image: Payload(error="not needed"))
    core = DyingDind(log, alive_reads)
    connection: Any = SimpleNamespace(core=core, api_client=None)
    task = docker_run.PROBE.task(ProbeSettings())
    ctx = ScriptedContext(task, connection, RunScope("ns", "run1", timeout_s=5), Progress(), threading.Event())
    verdict = run_probe(task, ctx)
    assert verdict.status is Status.FAIL, verdict.summary
    assert verdict.summary.startswith("dockerd did not start: ")
    assert words in verdict.summary
    assert remedy in verdict.remediation
    ended = verdict.evidence["dockerd_exit"]
    assert (ended["exit_code"], ended["reason"]) == (1, "Error")
    assert log[-1].strip() in ended["log"]
    assert core.deleted == ["dc-run1-docker-run-run"], "the pod is deleted after its state and log were read"


class KilledMidProbe(ProbeContext):
    """dockerd answers, the host facts are read, then it is killed: the nested import fails, dockerd answers no more."""

    def exec(self, _pod_name: str, container: str, script: str, *, timeout_s: float = 60.0) -> CommandResult:  # noqa: ARG002
        """Each step as the real pod answered it on the testbed when containerd restarted under dockerd."""
        if container == "dind":
            return CommandResult(0, "driver=overlayfs\niptables=iptables v1.8.9 (nf_tables)\n", "", 0.1)
        if WAIT_FOR_DAEMON in script:
            return CommandResult(0, "daemon=ok\n", "", 0.1)
        if script == docker_run.DAEMON_ALIVE:
            return CommandResult(0, "alive=no\n", "", 0.1)
        return CommandResult(1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", 0.1)


def test_a_dockerd_killed_mid_probe_proves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the testbed this was 'could not import an image into the nested dockerd': a failure the node caused."""
    monkeypatch.setattr(docker_run, "locate_payload", lambda _image: Payload(error="not needed"))
    core = DyingDind(["time=... msg=\"Processing signal 'terminated'\""], alive_reads=2, exit_code=137)
    connection: Any = SimpleNamespace(core=core, api_client=None)
    task = docker_run.PROBE.task(ProbeSettings())
    ctx = KilledMidProbe(task, connection, RunScope("ns", "run1", timeout_s=5), Progress(), threading.Event())
    verdict = run_probe(task, ctx)
    assert verdict.status is Status.INCONCLUSIVE, verdict.summary
    assert "dockerd answered, then stopped mid-probe: its container exited 137 (Error)" in verdict.summary
    assert "was killed by the node (exit 137, Error)" in verdict.summary
