"""Bad input and interruption against the live testbed: the documented verdict or exit code, and a clear cause."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import signal
import subprocess
import tarfile
import time
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.conformance.harness import (
    REPO,
    Profile,
    applied,
    fresh_namespace,
    kubectl,
    labelled_objects,
    pod_manifest,
    run_suite,
    suite_command,
    wait_until_clean,
    wait_until_enforced,
    with_kubeconfig,
)

USAGE_ERROR = 4
PAYLOAD_BYTES = 8 * 1024 * 1024


@pytest.mark.usefixtures("permissive")
def test_unknown_storage_class_is_a_usage_error(testbed_env: dict[str, str], out_root: Path) -> None:
    started = time.monotonic()
    run = run_suite(testbed_env, out_root / "fault-storage-class", "--storage-class", "no-such-class")
    assert run.exit_code == USAGE_ERROR, run.output[-2000:]
    assert "StorageClass 'no-such-class' not found" in run.output
    assert "Traceback" not in run.output
    assert time.monotonic() - started < 30
    assert wait_until_clean(testbed_env, 30) == []


@pytest.mark.usefixtures("permissive")
def test_unknown_image_is_inconclusive_with_the_pull_error(testbed_env: dict[str, str], out_root: Path) -> None:
    missing = f"{testbed_env['TESTBED_REGISTRY']}/dindcheck/does-not-exist:1"
    run = run_suite(testbed_env, out_root / "fault-image", "-k", "lsm", "--image-tools", missing)
    check = run.check("lsm")
    assert check["status"] == "inconclusive", check
    assert "ErrImagePull" in check["summary"] or "ImagePullBackOff" in check["summary"]
    assert check["evidence"]["pod"]["reason"] in check["summary"]
    assert run.exit_code == 0  # inconclusive is a skip, not a failure
    assert "proved nothing: 1 of 1 checks (1 inconclusive" in run.output
    assert wait_until_clean(testbed_env, 30) == []
    strict = run_suite(
        testbed_env, out_root / "fault-image-strict", "-k", "lsm", "--image-tools", missing, "--fail-on-inconclusive"
    )
    assert strict.check("lsm")["status"] == "inconclusive"
    assert strict.exit_code == 1, strict.output[-2000:]
    assert "--fail-on-inconclusive: lsm proved nothing" in strict.output
    assert wait_until_clean(testbed_env, 30) == []


@pytest.mark.usefixtures("permissive")
def test_unreachable_registry_is_inconclusive_with_the_push_error(testbed_env: dict[str, str], out_root: Path) -> None:
    run = run_suite(
        testbed_env,
        out_root / "fault-registry",
        "-k",
        "buildkit_rootless",
        "--registry",
        "127.0.0.1:9",
        "--registry-insecure",
    )
    check = run.check("buildkit-rootless")
    assert check["status"] == "inconclusive", check
    assert "127.0.0.1:9" in check["summary"]
    assert "connection refused" in check["summary"].lower()
    assert not run.mode("buildkit-rootless")["usable"]
    assert wait_until_clean(testbed_env, 30) == []


@pytest.mark.usefixtures("permissive")
def test_push_to_the_testbed_registry(testbed_env: dict[str, str], out_root: Path) -> None:
    run = run_suite(
        testbed_env,
        out_root / "user-registry",
        "-k",
        "buildkit_rootless or kaniko",
        "--registry",
        testbed_env["TESTBED_REGISTRY"],
        "--registry-insecure",
    )
    for check_id in ("buildkit-rootless", "kaniko"):
        check = run.check(check_id)
        assert check["status"] == "pass", check
        assert check["evidence"]["registry"]["kind"] == "user"
        assert check["evidence"]["image"].startswith(testbed_env["TESTBED_REGISTRY"] + "/")
        assert check["evidence"]["readback"]["ok"] is True
        assert check["evidence"]["readback"]["via"] == "http from this machine"
        assert check["evidence"]["readback"]["digest"] == check["evidence"]["digest"]


@pytest.mark.usefixtures("permissive")
def test_the_pasted_builder_names_the_users_registry_secret_not_the_runs_copy(
    testbed_env: dict[str, str], out_root: Path
) -> None:
    """--registry-secret NS/NAME: the run mounts its copy (deleted with the run); the config to paste mounts NAME."""
    namespace, secret, registry = "dindcheck-creds", "push-creds", testbed_env["TESTBED_REGISTRY"]
    kubectl(testbed_env, "create", "namespace", namespace)
    try:
        kubectl(
            testbed_env,
            *("create", "secret", "docker-registry", secret, "--namespace", namespace, "--docker-server", registry),
            *("--docker-username", "dindcheck", "--docker-password", "not-checked-by-the-testbed-registry"),
        )
        run = run_suite(
            testbed_env,
            out_root / "registry-secret",
            *("-k", "buildkit_rootless", "--registry", registry, "--registry-insecure"),
            *("--registry-secret", f"{namespace}/{secret}"),
        )
        assert run.check("buildkit-rootless")["status"] == "pass", run.output[-3000:]
        snippet = run.report["recommendation"]["snippets"]["buildkit-rootless"]
        spec = yaml.safe_load(snippet)["spec"]
        assert [volume["secret"]["secretName"] for volume in spec["volumes"] if "secret" in volume] == [secret]
        run_copy = f"dc-{run.report['cluster']['namespace'].removeprefix('dindcheck-')}-registry"
        assert run_copy not in snippet
        assert f"the Secret {secret} (type kubernetes.io/dockerconfigjson) must exist" in snippet
        assert f"--registry-secret {namespace}/{secret}" in snippet
        assert (spec["restartPolicy"], spec["automountServiceAccountToken"]) == ("Never", False)
    finally:
        kubectl(testbed_env, "delete", "namespace", namespace, "--wait=false")


NON_ROOT_POLICY = "dindcheck-testbed-non-root-user"


def non_root_policy(namespace: str) -> list[dict[str, object]]:
    """Kyverno's require-run-as-nonroot and require-run-as-non-root-user as one ValidatingAdmissionPolicy.

    Bound to one namespace. Every container and init container needs runAsNonRoot true and runAsUser > 0 (its own or
    the pod's): common on clusters that lock pods down. Rootless BuildKit (uid 1000) is admitted, Kaniko (root) is not.
    """
    metadata = {"name": NON_ROOT_POLICY, "labels": {"app.kubernetes.io/managed-by": "dindcheck-testbed"}}
    pod = "has(object.spec.securityContext) && has(object.spec.securityContext.{0})"
    own = "has(c.securityContext) && has(c.securityContext.{0})"
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": metadata,
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                    ]
                },
                "variables": [
                    {
                        "name": "containers",
                        "expression": "object.spec.containers + (has(object.spec.initContainers) ? "
                        "object.spec.initContainers : [])",
                    },
                    {
                        "name": "podUser",
                        "expression": f"{pod.format('runAsUser')} ? object.spec.securityContext.runAsUser : 0",
                    },
                    {
                        "name": "podNonRoot",
                        "expression": f"{pod.format('runAsNonRoot')} ? object.spec.securityContext.runAsNonRoot "
                        ": false",
                    },
                    {
                        "name": "root",
                        "expression": f"variables.containers.filter(c, ({own.format('runAsUser')} ? "
                        "c.securityContext.runAsUser : variables.podUser) == 0).map(c, c.name)",
                    },
                    {
                        "name": "unsaid",
                        "expression": f"variables.containers.filter(c, !({own.format('runAsNonRoot')} ? "
                        "c.securityContext.runAsNonRoot : variables.podNonRoot)).map(c, c.name)",
                    },
                ],
                "validations": [
                    {
                        "expression": "size(variables.root) == 0",
                        "reason": "Forbidden",
                        "messageExpression": f"'[denied by {NON_ROOT_POLICY}] containers must set runAsUser > 0: ' "
                        "+ variables.root.join(', ')",
                    },
                    {
                        "expression": "size(variables.unsaid) == 0",
                        "reason": "Forbidden",
                        "messageExpression": f"'[denied by {NON_ROOT_POLICY}] containers must set runAsNonRoot: ' "
                        "+ variables.unsaid.join(', ')",
                    },
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": metadata,
            "spec": {
                "policyName": NON_ROOT_POLICY,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
            },
        },
    ]


@pytest.mark.usefixtures("permissive")
def test_a_builder_is_judged_by_its_own_spec_not_the_probes_helpers(
    testbed_env: dict[str, str], out_root: Path
) -> None:
    """Under a no-root policy each builder is judged by its own spec, not by the probe's helper containers.

    Rootless BuildKit passes (the throwaway registry in its probe pod runs as nobody); Kaniko fails in the policy's
    words about its own container alone.
    """
    namespace = "dindcheck-non-root"
    policy = yaml.safe_dump_all(non_root_policy(namespace))
    with fresh_namespace(testbed_env, namespace), applied(testbed_env, policy):
        root_pod = pod_manifest("dc-policy-check", namespace, testbed_env["TESTBED_IMAGE_TOOLS"])
        wait_until_enforced(testbed_env, root_pod, f"[denied by {NON_ROOT_POLICY}] containers must set runAsUser")
        run = run_suite(
            testbed_env, out_root / "non-root-policy", "-k", "buildkit_rootless or kaniko", "--namespace", namespace
        )
        buildkit = run.check("buildkit-rootless")
        assert buildkit["status"] == "pass", buildkit
        kaniko = run.check("kaniko")
        assert kaniko["status"] == "fail", kaniko
        answer = kaniko["evidence"]["admission_of_the_tested_spec"]
        assert answer["admitted"] is False
        assert answer["source"] == "validating-admission-policy", answer
        # a policy stops at its first failed validation: the runAsUser one
        assert answer["message"].endswith("containers must set runAsUser > 0: kaniko"), answer["message"]
        assert answer["message"] in kaniko["summary"]
        assert run.report["recommendation"]["build_only"] == "buildkit-rootless"


@pytest.mark.usefixtures("permissive")
def test_require_mode_sysbox_fails_when_sysbox_is_absent(testbed_env: dict[str, str], out_root: Path) -> None:
    run = run_suite(testbed_env, out_root / "require-sysbox", "-k", "sysbox", "--require-mode", "sysbox")
    assert run.exit_code == 1, run.output[-2000:]
    assert run.report["required_mode"] == {"mode": "sysbox", "usable": False}
    assert "--require-mode sysbox: NOT usable" in run.output


def test_require_mode_gates_on_the_mode_only(profile: Profile, testbed_env: dict[str, str], out_root: Path) -> None:
    if profile.name != "deny-privileged":
        pytest.skip("the gate is shown where one mode works and another does not")
    selection = "privileged_admission or buildkit_rootless"
    dind = run_suite(testbed_env, out_root / "require-dind", "-k", selection, "--require-mode", "dind")
    assert dind.exit_code == 1
    assert dind.report["required_mode"]["usable"] is False
    build = run_suite(
        testbed_env, out_root / "require-buildkit", "-k", selection, "--require-mode", "buildkit-rootless"
    )
    assert build.exit_code == 0, build.output[-2000:]
    assert build.check("privileged-admission")["status"] == "fail"
    assert build.report["required_mode"] == {"mode": "buildkit-rootless", "usable": True}


@pytest.mark.usefixtures("permissive")
def test_sigint_mid_probe_cleans_up_and_exits_interrupted(testbed_env: dict[str, str], out_root: Path) -> None:
    out = out_root / "sigint"
    command = suite_command(testbed_env, out)
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        deadline = time.monotonic() + 90
        while not any(name.startswith("pod/") for name in labelled_objects(testbed_env)):
            assert proc.poll() is None, "the run ended before any probe pod existed"
            assert time.monotonic() < deadline, "no probe pod appeared within 90 s"
            time.sleep(0.5)
        time.sleep(2)  # in the middle of probing
        proc.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        output, _ = proc.communicate(timeout=60)
    (out / "output.txt").write_text(output)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-2000:]
    left = wait_until_clean(testbed_env, max(1.0, 30 - (time.monotonic() - interrupted_at)))
    assert left == [], f"left after SIGINT: {left}"


@pytest.mark.usefixtures("permissive")
def test_sigint_during_setup_leaves_nothing(testbed_env: dict[str, str], out_root: Path) -> None:
    """Ctrl-C the moment the run's namespace exists (before or while probes start): everything made is deleted."""
    out = out_root / "sigint-setup"
    command = suite_command(testbed_env, out)
    watcher = subprocess.Popen(
        [
            str(Path(testbed_env["TESTBED_BIN"]) / "kubectl"),
            "--kubeconfig",
            testbed_env["KUBECONFIG"],
            "get",
            "namespaces",
            "-l",
            "app.kubernetes.io/managed-by=dindcheck",
            "--watch-only",
            "-o",
            "name",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)  # the watch is established
        with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            assert watcher.stdout is not None
            created = watcher.stdout.readline().strip()
            proc.send_signal(signal.SIGINT)
            interrupted_at = time.monotonic()
            output, _ = proc.communicate(timeout=60)
    finally:
        watcher.kill()
        watcher.wait()
    (out / "output.txt").write_text(output)
    assert created.startswith("namespace/dindcheck-"), created
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-2000:]
    left = wait_until_clean(testbed_env, max(1.0, 30 - (time.monotonic() - interrupted_at)))
    assert left == [], f"left after SIGINT during setup: {left}"
    assert kubectl(
        testbed_env, "get", "namespace", created.split("/")[1], "--ignore-not-found", "-o", "jsonpath={.status.phase}"
    ).strip() in ("", "Terminating")


@pytest.mark.usefixtures("permissive")
def test_context_names_reach_the_api_intact(testbed_env: dict[str, str], out_root: Path) -> None:
    """A context named like real ones ('team+ci/prod') selects that context; exec works through it."""
    config = yaml.safe_load(Path(testbed_env["KUBECONFIG"]).read_text())
    odd = "team+ci/prod cluster"
    config["contexts"].append({**config["contexts"][0], "name": odd})
    path = out_root / "odd-context-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    run = run_suite(with_kubeconfig(testbed_env, path, "--context", odd), out_root / "odd-context", "-k", "lsm")
    assert run.check("lsm")["status"] == "pass", run.output[-2000:]


@pytest.mark.usefixtures("permissive")
def test_quota_namespace_works_and_psa_label_is_restored(testbed_env: dict[str, str], out_root: Path) -> None:
    """A borrowed namespace with a ResourceQuota that demands limits, and its own PSA label, which comes back."""
    namespace = "dindcheck-quota"
    with fresh_namespace(testbed_env, namespace):
        kubectl(testbed_env, "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline")
        quota = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "needs-limits", "namespace": namespace},
            "spec": {
                "hard": {"limits.cpu": "8", "limits.memory": "8Gi", "requests.cpu": "4", "requests.memory": "4Gi"}
            },
        }
        kubectl(testbed_env, "apply", "-f", "-", stdin=yaml.safe_dump(quota))
        image = testbed_env["TESTBED_IMAGE_TOOLS"]
        wait_until_enforced(testbed_env, pod_manifest("dc-quota-check", namespace, image), "failed quota: needs-limits")
        privileged = pod_manifest("dc-psa-check", namespace, image, securityContext={"privileged": True})
        wait_until_enforced(testbed_env, privileged, 'violates PodSecurity "baseline:latest"')
        run = run_suite(
            testbed_env,
            out_root / "quota-namespace",
            "-k",
            "privileged_admission or lsm",
            "--namespace",
            namespace,
            "--namespace-pod-security",
            "privileged",
        )
        assert run.check("privileged-admission")["status"] == "pass", run.output[-2000:]
        assert run.check("lsm")["status"] == "pass", run.output[-2000:]
        label = kubectl(
            testbed_env,
            "get",
            "namespace",
            namespace,
            "-o",
            r"jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}",
        )
        assert label.strip() == "baseline", "the borrowed namespace's own PSA label was not restored"
        assert "label is back to baseline" in run.output, run.output[-2000:]


@pytest.mark.usefixtures("permissive")
def test_borrowed_namespace_keeps_the_namespace_and_removes_our_objects(
    testbed_env: dict[str, str], out_root: Path
) -> None:
    namespace = "dindcheck-borrowed"
    with fresh_namespace(testbed_env, namespace):
        run = run_suite(testbed_env, out_root / "borrowed-namespace", "-k", "lsm", "--namespace", namespace)
        assert run.check("lsm")["status"] == "pass", run.output[-2000:]
        assert run.report["cluster"]["namespace"] == namespace
        assert kubectl(testbed_env, "get", "namespace", namespace, "-o", "name").strip() == f"namespace/{namespace}"
        assert kubectl(testbed_env, "get", "pods", "-n", namespace, "-o", "name").strip() == ""


@pytest.mark.usefixtures("permissive")
def test_keep_leaves_the_objects_and_says_where(testbed_env: dict[str, str], out_root: Path) -> None:
    run = run_suite(testbed_env, out_root / "keep", "-k", "lsm", "--keep")
    namespace = run.report["cluster"]["namespace"]
    try:
        assert f"--keep: objects left in namespace {namespace}" in run.output
        assert kubectl(testbed_env, "get", "namespace", namespace, "-o", "name").strip() == f"namespace/{namespace}"
        deadlines = kubectl(
            testbed_env, "get", "pods", "-n", namespace, "-o", "jsonpath={.items[*].spec.activeDeadlineSeconds}"
        )
        assert deadlines.split(), "--keep did not keep the probe pods"
        assert all(int(value) > 0 for value in deadlines.split()), "probe pods carry no activeDeadlineSeconds"
    finally:
        kubectl(testbed_env, "delete", "namespace", namespace, "--wait=false")
    assert wait_until_clean(testbed_env, 30) == []


def test_namespace_pod_security_label_is_opt_in_and_reported(
    profile: Profile, testbed_env: dict[str, str], out_root: Path
) -> None:
    if profile.psa_default != "baseline":
        pytest.skip("shown where the cluster's default level rejects privileged pods")
    run = run_suite(
        testbed_env, out_root / "namespace-psa", "-k", "privileged_admission", "--namespace-pod-security", "privileged"
    )
    assert run.check("privileged-admission")["status"] == "pass", run.output[-2000:]
    assert run.report["cluster"]["namespace_labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert any("--namespace-pod-security" in note for note in run.report["cluster"]["notes"])
    assert wait_until_clean(testbed_env, 30) == []


@pytest.mark.usefixtures("permissive")
def test_an_old_job_cli_refused_by_docker_29_is_named(
    testbed_env: dict[str, str], profile: Profile, out_root: Path
) -> None:
    """A runner image with Docker 20.10's CLI (API 1.41) against Docker 29 with its 1.44 minimum: the named cause."""
    if profile.dind == "legacy":
        pytest.skip("the DinD image is Docker 20.10 itself")
    run = run_suite(
        testbed_env,
        out_root / "fault-old-cli",
        "--image-job",
        testbed_env["TESTBED_IMAGE_DIND_LEGACY"],
        "--dind-env",
        "DOCKER_MIN_API_VERSION=1.44",
        "-k",
        "docker_run or socket_sharing",
    )
    assert run.exit_code == 1, run.output[-2000:]
    docker_run = run.check("docker-run")
    assert docker_run["status"] == "fail"
    assert docker_run["evidence"]["daemon"] == "api_refused"
    assert docker_run["evidence"]["client_version"].startswith("20.10."), docker_run["evidence"]
    # the daemon's own words, quoted
    assert "Minimum supported API version is 1.44" in docker_run["evidence"]["daemon_error"]
    assert "Minimum supported API version is 1.44" in docker_run["summary"]
    assert "API version" in docker_run["summary"]
    assert "DOCKER_MIN_API_VERSION" in docker_run["remediation"]
    sharing = run.check("socket-sharing")
    assert sharing["status"] == "fail", sharing["summary"]
    assert "API version" in sharing["summary"]
    assert not run.mode("dind")["usable"]
    assert wait_until_clean(testbed_env, 30) == []


@pytest.mark.usefixtures("permissive")
def test_tls_certs_that_never_come_are_named_and_the_socket_layouts_still_pass(
    testbed_env: dict[str, str], out_root: Path
) -> None:
    """GitLab's form with DOCKER_TLS_CERTDIR emptied (--dind-env: the last value wins): no certs ever come.

    dockerd runs without TLS, the job waits out the certs and the CLI's own words name the cause; the socket layouts
    are unaffected.
    """
    run = run_suite(
        testbed_env, out_root / "fault-tls-certs", "-k", "socket_sharing", "--dind-env", "DOCKER_TLS_CERTDIR="
    )
    sharing = run.check("socket-sharing")
    assert sharing["status"] == "pass", sharing["summary"]
    tls = sharing["evidence"]["tls"]
    assert tls["ok"] is False
    assert tls["certs"] == "missing"
    assert "/certs/client/ca.pem: no such file or directory" in tls["reason"]
    assert "the client certificates never appeared in /certs/client" in sharing["summary"]
    assert tls["reason"] in sharing["summary"]
    assert "DOCKER_TLS_CERTDIR=/certs" in sharing["remediation"]
    assert wait_until_clean(testbed_env, 30) == []


@pytest.mark.usefixtures("permissive")
def test_a_root_builder_under_restricted_is_refused_and_named(testbed_env: dict[str, str], out_root: Path) -> None:
    """A builder image whose user is root, in a namespace enforcing Pod Security restricted: the kubelet refuses it.

    The tested spec sets runAsNonRoot and no uid (the builder's own CNB user runs), so the tools image (root) is
    admitted and then refused by the kubelet; the probe names the cause in the kubelet's words.
    """
    run = run_suite(
        testbed_env,
        out_root / "root-builder",
        "-k",
        "buildpacks",
        "--namespace-pod-security",
        "restricted",
        "--image-builder",
        testbed_env["TESTBED_IMAGE_TOOLS"],
    )
    check = run.check("buildpacks")
    assert check["status"] == "fail", check
    assert "the builder image's user is root" in check["summary"]
    assert "image will run as root" in check["evidence"]["pod"]["reason"], check["evidence"]["pod"]
    assert run.report["recommendation"]["from_source"] == "none"
    assert wait_until_clean(testbed_env, 30) == []


READ_ONLY_REGISTRY = "dindcheck-readonly-registry"


@pytest.mark.usefixtures("permissive")
def test_a_registry_refusing_the_export_is_named_not_blamed_on_the_lifecycle(
    testbed_env: dict[str, str], out_root: Path
) -> None:
    """--registry that answers but refuses writes (Distribution's read-only mode): inconclusive, in its words."""
    namespace = READ_ONLY_REGISTRY
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "registry", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "registry",
                    "image": testbed_env["TESTBED_IMAGE_REGISTRY"],
                    "env": [{"name": "REGISTRY_STORAGE_MAINTENANCE_READONLY", "value": '{"enabled": true}'}],
                    "readinessProbe": {"httpGet": {"path": "/v2/", "port": 5000}, "periodSeconds": 1},
                }
            ]
        },
    }
    kubectl(testbed_env, "create", "namespace", namespace)
    try:
        kubectl(testbed_env, "apply", "-f", "-", stdin=yaml.safe_dump(pod))
        kubectl(testbed_env, "-n", namespace, "wait", "--for=condition=Ready", "pod/registry", "--timeout=60s")
        address = kubectl(testbed_env, "-n", namespace, "get", "pod", "registry", "-o", "jsonpath={.status.podIP}")
        run = run_suite(
            testbed_env,
            out_root / "read-only-registry",
            "-k",
            "buildpacks",
            "--registry",
            f"{address}:5000",
            "--registry-insecure",
        )
        check = run.check("buildpacks")
        assert check["status"] == "inconclusive", check
        assert "the registry refused the export" in check["summary"]
        assert "not the lifecycle" in check["summary"]
        assert address in check["summary"]
        assert check["remediation"]
        assert run.report["recommendation"]["from_source"] == "none"
    finally:
        kubectl(testbed_env, "delete", "namespace", namespace, "--wait=false")


def _registry(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})  # noqa: S310
    return urllib.request.urlopen(request, timeout=30)  # noqa: S310 - the testbed registry, plain http


def dind_with_daemon_json(env: dict[str, str], config: dict[str, object], name: str) -> str:
    """The testbed DinD image plus one layer holding /etc/docker/daemon.json, pushed beside it (tag '<name>-<hash>').

    As users build their own DinD image with a daemon.json: dockerd reads it at start, the entrypoint is unchanged.
    """
    host, _, rest = env["TESTBED_IMAGE_DIND"].partition("/")
    repo, _, tag = rest.rpartition(":")
    base = f"http://{host}/v2/{repo}"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    with _registry("GET", f"{base}/manifests/{tag}", headers=accept) as answer:
        manifest = json.load(answer)
    with _registry("GET", f"{base}/blobs/{manifest['config']['digest']}") as answer:
        image_config = json.load(answer)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("etc", "etc/docker"):
            entry = tarfile.TarInfo(directory)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(entry)
        data = json.dumps(config).encode()
        entry = tarfile.TarInfo("etc/docker/daemon.json")
        entry.size, entry.mode = len(data), 0o644
        tar.addfile(entry, io.BytesIO(data))
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    image_config["rootfs"]["diff_ids"].append(f"sha256:{hashlib.sha256(tar_bytes.getvalue()).hexdigest()}")
    image_config.setdefault("history", []).append({"created_by": f"COPY daemon.json /etc/docker/ # {config}"})
    config_bytes = json.dumps(image_config).encode()
    for blob in (layer, config_bytes):
        digest = f"sha256:{hashlib.sha256(blob).hexdigest()}"
        with _registry("POST", f"{base}/blobs/uploads/") as answer:
            location = urllib.parse.urljoin(f"{base}/", answer.headers["Location"])
        separator = "&" if "?" in location else "?"
        octets = {"Content-Type": "application/octet-stream"}  # urllib's default form type is refused (400)
        _registry("PUT", f"{location}{separator}digest={digest}", blob, octets).close()
    manifest["config"] = {**manifest["config"], "digest": f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"}
    manifest["config"]["size"] = len(config_bytes)
    manifest["layers"].append(
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": f"sha256:{hashlib.sha256(layer).hexdigest()}",
            "size": len(layer),
        }
    )
    new_tag = f"{name}-{hashlib.sha256(config_bytes).hexdigest()[:12]}"
    body = json.dumps(manifest).encode()
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    _registry("PUT", f"{base}/manifests/{new_tag}", body, headers).close()
    return f"{host}/{repo}:{new_tag}"


@pytest.mark.usefixtures("permissive")
def test_nested_containers_without_nat_fail_docker_run_with_the_cause(
    testbed_env: dict[str, str], profile: Profile, out_root: Path
) -> None:
    """A DinD image whose daemon.json turns iptables off: dockerd starts and nested containers run, with no network.

    "iptables": false is the usual workaround for an iptables backend that does not fit the node; nothing then
    masquerades nested containers behind the pod's IP, so no answer ever comes back to them, while the pod itself
    still reaches the registry.
    """
    if profile.dind == "legacy":
        pytest.skip("shown with the Docker 29 DinD image")
    image = dind_with_daemon_json(testbed_env, {"iptables": False}, "no-nat")
    selection = "docker_run or privileged_admission or socket_sharing"
    run = run_suite(testbed_env, out_root / "fault-no-nat", "-k", selection, "--image-dind", image)
    check = run.check("docker-run")
    evidence = check["evidence"]
    assert check["status"] == "fail", check["summary"]
    assert evidence["run_bridge"] == "ok", "nested containers still start on the bridge"
    assert evidence["nat_masquerade"] == "absent", evidence
    transfer = evidence["transfer"]
    assert transfer["state"] == "stalled", transfer
    assert transfer["bytes"] == 0
    assert "syn_sent" in transfer["tcp"], transfer
    assert evidence["transfer_pod"]["state"] == "complete", evidence["transfer_pod"]
    assert evidence["transfer_pod"]["bytes"] == PAYLOAD_BYTES
    registry = testbed_env["TESTBED_REGISTRY"]
    assert check["summary"].startswith(
        "nested containers run on the bridge and with --network none, but have no network: a nested container on "
        f"the default bridge got nothing from {registry}: its connection got no answer in 10s (SYN sent, nothing "
        "came back), while the pod itself fetched 8.0 MiB in "
    ), check["summary"]
    assert "dockerd set up no NAT for its bridge (no MASQUERADE rule in the pod)" in check["summary"]
    assert "--iptables=false" in check["remediation"]
    assert "DOCKER_IPTABLES_LEGACY=1" in check["remediation"]
    assert run.check("socket-sharing")["status"] == "pass", "dockerd itself works"
    assert not run.mode("dind")["usable"]
    assert run.mode("dind")["blocked_by"] == ["docker-run"]
    assert run.exit_code == 1, run.output[-2000:]
    assert wait_until_clean(testbed_env, 30) == []


@pytest.mark.usefixtures("permissive")
def test_a_dockerd_that_dies_at_start_fails_docker_run_in_its_own_words(
    testbed_env: dict[str, str], profile: Profile, out_root: Path
) -> None:
    """DOCKER_MIN_API_VERSION below what Docker 29 supports: dockerd refuses to start and its container exits.

    The dead container's state and log are read before any exec into it, so the check fails with dockerd's own words
    instead of proving nothing.
    """
    if profile.dind == "legacy":
        pytest.skip("Docker 20.10 does not read DOCKER_MIN_API_VERSION")
    run = run_suite(
        testbed_env,
        out_root / "fault-dockerd-dies",
        "-k",
        "docker_run or privileged_admission",
        "--dind-env",
        "DOCKER_MIN_API_VERSION=1.12",
    )
    check = run.check("docker-run")
    assert check["status"] == "fail", check["summary"]
    ended = check["evidence"]["dockerd_exit"]
    assert ended["exit_code"] == 1, ended
    assert "invalid DOCKER_MIN_API_VERSION: minimum supported API version is 1.24: 1.12" in ended["log"]
    assert check["summary"].startswith("dockerd did not start: its container exited 1 (Error); dockerd's last words: ")
    assert "invalid DOCKER_MIN_API_VERSION: minimum supported API version is 1.24: 1.12" in check["summary"]
    assert "DOCKER_MIN_API_VERSION" in check["remediation"]
    assert not run.mode("dind")["usable"]
    assert "docker-run" in run.mode("dind")["blocked_by"]
    assert wait_until_clean(testbed_env, 30) == []


def test_a_limit_range_below_the_requests_is_inconclusive_in_the_apis_words(
    profile: Profile, testbed_env: dict[str, str], out_root: Path
) -> None:
    """A LimitRange whose max (so its default limit) is below --pod-requests: the API answers 422 for every pod.

    That is no policy about privileged pods: privileged-admission and the checks whose pods it stops are
    inconclusive with the API server's own words (so --fail-on-inconclusive counts them), never failed or skipped
    as if a policy had denied them; and nothing is left behind.
    """
    if replace(profile, nodes=1).name != "permissive":
        pytest.skip("fault cases run on the permissive profile (one node or two)")
    namespace = "dindcheck-limit-range"
    limit_range = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "small-containers", "namespace": namespace},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "500m"}}]},
    }
    too_big = {"requests": {"cpu": "1", "memory": "64Mi"}}  # what the run asks below, with no limits
    with fresh_namespace(testbed_env, namespace), applied(testbed_env, yaml.safe_dump(limit_range)):
        over = pod_manifest("dc-limit-check", namespace, testbed_env["TESTBED_IMAGE_TOOLS"], resources=too_big)
        wait_until_enforced(testbed_env, over, "must be less than or equal to cpu limit of 500m")
        run = run_suite(
            testbed_env,
            out_root / "fault-limit-range",
            "-k",
            "privileged_admission or lsm or docker_run",
            "--namespace",
            namespace,
            "--pod-requests",
            "cpu=1,memory=64Mi",
            "--pod-limits",
            "",
            "--fail-on-inconclusive",
        )
        admission = run.check("privileged-admission")
        assert admission["status"] == "inconclusive", admission
        real = admission["evidence"]["real_pod"]
        assert (real["code"], real["decided"], real["source"]) == (422, None, "invalid-spec"), real
        assert "must be less than or equal to cpu limit of 500m" in real["message"]
        assert real["message"] in admission["summary"], "the summary lost the API server's words"
        assert "no policy answered" in admission["summary"]
        assert "denied" not in admission["summary"]
        assert admission["evidence"]["specs"]["dind"]["admitted"] is None
        for dependent in ("lsm", "docker-run"):
            check = run.check(dependent)
            assert check["status"] == "inconclusive", check
            assert "must be less than or equal to cpu limit of 500m" in check["summary"]
        assert not run.mode("dind")["usable"]
        assert not any("admission rejected" in text for mode in run.report["modes"] for text in mode["warnings"])
        assert run.exit_code == 1, run.output[-2000:]
        assert "--fail-on-inconclusive: " in run.output
        assert "privileged-admission" in run.output.split("--fail-on-inconclusive: ", 1)[1].split("\n", 1)[0]
        assert kubectl(testbed_env, "get", "pods", "-n", namespace, "-o", "name").strip() == ""
        assert wait_until_clean(testbed_env, 30) == []
