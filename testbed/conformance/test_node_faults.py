"""The node's own faults mid-probe: an evicted probe pod, a container killed across a containerd restart.

Neither is a fact about the capability: the check is inconclusive, naming what the node did, never pass and never
fail; the run ends and leaves nothing. Each case starts a docker-run check, waits until its DinD pod runs (the probe
is then working in it), injects the fault, and reads the report.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from probes import cluster
from testbed.conformance.harness import (
    REPO,
    SuiteRun,
    load_run,
    suite_command,
    wait_until,
    wait_until_clean,
)

PROBE_LABEL = "dindcheck.io/probe"
FAULTS = REPO / "testbed" / "faults"


def running_probe_pod(core: client.CoreV1Api, probe: str) -> Any | None:
    """The probe's pod once every container of it has started, else None."""
    for pod in core.list_pod_for_all_namespaces(label_selector=f"{PROBE_LABEL}={probe}").items:
        statuses = pod.status.container_statuses or []
        if pod.status.phase == "Running" and statuses and all(s.started for s in statuses):
            return pod
    return None


def docker_run_disturbed(env: dict[str, str], out: Path, inject: Callable[[Any], None]) -> SuiteRun:
    """Run the docker-run check; once its pod runs, inject the fault into it; the finished run."""
    core = cluster.connect(env["KUBECONFIG"], None).core
    command = suite_command(env, out, "-k", "docker_run")
    started = time.monotonic()
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        found: list[Any] = []

        def pod_runs() -> bool:
            assert proc.poll() is None, "the run ended before its DinD pod ran"
            pod = running_probe_pod(core, "docker-run")
            found[:] = [pod] if pod else []
            return bool(found)

        wait_until(pod_runs, "the docker-run pod runs", 120)
        inject(found[0])
        output, _ = proc.communicate(timeout=300)
    return load_run(out, proc.returncode, output, time.monotonic() - started)


def assert_inconclusive_naming(run: SuiteRun, env: dict[str, str], *words: str) -> None:
    """docker-run inconclusive, naming the fault in one of the ways words give; DinD not usable; nothing left."""
    assert run.report, run.output[-3000:]
    check = run.check("docker-run")
    assert check["status"] == "inconclusive", check["summary"]
    assert check["summary"].startswith("the node disturbed the probe, nothing concluded: "), check["summary"]
    assert any(said in check["summary"] for said in words), check["summary"]
    assert run.mode("dind")["usable"] is False
    assert wait_until_clean(env, 60) == []


@pytest.mark.usefixtures("permissive")
def test_an_evicted_probe_pod_is_inconclusive_with_the_eviction(testbed_env: dict[str, str], out_root: Path) -> None:
    core = cluster.connect(testbed_env["KUBECONFIG"], None).core

    def evict(pod: Any) -> None:
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=pod.metadata.namespace))
        core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)

    # The probe may outrun the eviction (its whole work takes about 3 s on a warm node, and the kubelet kills the
    # evicted pod's containers when it gets to it): a pass is then an undisturbed probe, honestly so, and proves
    # nothing about an eviction mid-probe, so the eviction is tried again, at most three times.
    for attempt in range(3):
        run = docker_run_disturbed(testbed_env, out_root / f"evicted-{attempt}", evict)
        if not run.report or run.check("docker-run")["status"] != "pass":
            break
        assert wait_until_clean(testbed_env, 60) == []
    # read while terminating (its DisruptionTarget condition), or gone by the time the probe looked (its event)
    assert_inconclusive_naming(run, testbed_env, "EvictionByEvictionAPI", "was deleted while the probe used it")


@pytest.mark.usefixtures("permissive")
def test_a_container_killed_across_a_containerd_restart_is_inconclusive(
    testbed_env: dict[str, str], out_root: Path
) -> None:
    def kill_dockerd_and_restart(pod: Any) -> None:
        subprocess.run(
            [str(FAULTS / "containerd-restart"), "--kill", pod.metadata.namespace, pod.metadata.name, "dind"],
            check=True,
            timeout=120,
        )

    run = docker_run_disturbed(testbed_env, out_root / "containerd-restart", kill_dockerd_and_restart)
    # the kill seen in the container's status, or the exec that found the runtime down while it restarted
    assert_inconclusive_naming(run, testbed_env, "was killed by the node (exit 137", "container runtime of node")


def node_is_back(core: client.CoreV1Api) -> bool:
    """Every node Ready and without the taints the node controller puts on one that stopped reporting."""
    for node in core.list_node().items:
        ready = next((c for c in node.status.conditions or [] if c.type == "Ready"), None)
        if ready is None or ready.status != "True":
            return False
        if any(taint.key.startswith("node.kubernetes.io/") for taint in node.spec.taints or []):
            return False
    return True


def running_containers(namespace: str) -> list[str]:
    """The containers the default node's containerd still runs for a namespace's pods (ids)."""
    ctr = ["ctr", "--address", "/run/dindcheck-testbed/containerd.sock", "-n", "k8s.io"]
    label = f'labels."io.kubernetes.pod.namespace"=={namespace}'
    ids = set(ctr_output([*ctr, "containers", "ls", "-q", label]).split())
    tasks = ctr_output([*ctr, "tasks", "ls"]).splitlines()[1:]
    return [fields[0] for fields in map(str.split, tasks) if fields[0] in ids and fields[-1] == "RUNNING"]


def ctr_output(command: list[str]) -> str:
    """What a ctr command printed (it must succeed)."""
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout


@pytest.mark.usefixtures("permissive")
def test_a_stopped_kubelet_is_named_and_its_containers_go_when_it_returns(
    testbed_env: dict[str, str], out_root: Path
) -> None:
    """The kubelet stops for 60 s once the DinD pod runs: exec fails at once, the run ends without waiting for it."""
    core = cluster.connect(testbed_env["KUBECONFIG"], None).core
    knob: list[subprocess.Popen[bytes]] = []
    namespace: list[str] = []

    def stop_kubelet(pod: Any) -> None:
        namespace.append(pod.metadata.namespace)
        knob.append(subprocess.Popen([str(FAULTS / "kubelet-stop"), "60"]))

    try:
        run = docker_run_disturbed(testbed_env, out_root / "kubelet-stopped", stop_kubelet)
        assert knob[0].poll() is None, "the run waited for the kubelet to come back"
        check = run.check("docker-run")
        assert check["status"] == "inconclusive", check["summary"]
        assert "did not answer (stopped, restarting or unreachable)" in check["summary"], check["summary"]
        assert run.mode("dind")["usable"] is False
    finally:
        if knob:
            assert knob[0].wait(timeout=240) == 0
        wait_until(lambda: node_is_back(core), "the node is Ready and untainted again", 180)
    wait_until(lambda: running_containers(namespace[0]) == [], "the run's containers stopped", 180)
    assert wait_until_clean(testbed_env, 60) == []
