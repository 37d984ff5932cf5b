"""The vm node (`testbed/up --node-vm`): every verdict on a distro kernel with cgroup v2 and AppArmor enforcing.

The container nodes run on the host's kernel (cgroup v1, no LSM). The vm node runs Debian's own kernel in a QEMU guest
with systemd, cgroup v2 only, and containerd applying its default AppArmor profile (cri-containerd.apparmor.d) to
every unprivileged container. The expectations below were written from first principles before the first run there
(docs/probe-facts.md, "The vm node"), and the verdicts must differ from the container node's exactly where cgroup v2
or AppArmor make a difference:
- privileged pods (DinD, the overlay and socket-sharing checks) run unconfined: containerd's CRI gives a privileged
  container no AppArmor profile unless the pod names one; the inner dockerd (docker:dind's behaviour: container=docker,
  no apparmor_parser) applies none either, so nested containers run as the pod does. On cgroup v2 the DinD entrypoint
  moves its processes out of the root cgroup before dockerd enables controllers: a nested `docker run` works.
- rootless BuildKit with its Unconfined profiles (what the report's config sets) builds; without appArmorProfile
  Unconfined, containerd's default profile denies the mount rootlesskit makes first (`failed to share mount point`),
  which the container node, with no LSM, lets through.
- Kaniko and the buildpacks lifecycle run under the default profile: neither mounts anything, so both build.
- the lsm check reports what it sees: AppArmor enabled, its pod confined by cri-containerd.apparmor.d (enforce), and
  /sys/fs/cgroup a cgroup2fs; on the container node: no LSM and cgroup v1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from probes import specs
from probes.definitions import buildkit_rootless, catalog
from probes.settings import Images, Resources
from testbed.conformance.harness import (
    Profile,
    SuiteRun,
    fresh_namespace,
    kubectl,
    kubectl_answer,
    run_suite,
    wait_until,
    wait_until_clean,
)
from testbed.conformance.test_profiles import EXPECTED, Want, assert_as_wanted, want

VM_NODE = "dindcheck-vm"
ON_THE_VM_NODE = ("--node-selector", "dindcheck.io/pool=vm", "--toleration", "dedicated=vm:NoSchedule")
VM_TIMEOUT = ("--timeout", "600")  # one flag for a slow node: everything in the guest runs 5-20x slower
CONFINED = "cri-containerd.apparmor.d (enforce)"

pytestmark = pytest.mark.usefixtures("vm_node")  # first: a profile without the vm node skips before any run


def vm_expected(profile: Profile) -> dict[str, Any]:
    """The container node's expectations of the same knobs, with the lsm check's AppArmor reading added."""
    base = EXPECTED["userns-off" if profile.userns == "off" else "permissive"]
    lsm: Want = base["lsm"]
    return {**base, "lsm": want(*lsm.statuses, says=(*lsm.says, "LSM apparmor"))}


@pytest.fixture(scope="module")
def vm_node(profile: Profile) -> None:
    if not profile.node_vm:
        pytest.skip("no vm node on this profile (testbed/up --node-vm)")
    if profile.vm_lsm != "apparmor":
        pytest.skip(f"the vm node runs {profile.vm_lsm}, not AppArmor (test_vm_{profile.vm_lsm}.py)")


@pytest.fixture(scope="module")
def vm_run(testbed_env: dict[str, str], out_root: Path, profile: Profile) -> SuiteRun:
    """The whole suite placed on the vm pool, as a user targets a CI node pool."""
    return run_suite(testbed_env, out_root / profile.name / "vm-pool", *ON_THE_VM_NODE, *VM_TIMEOUT, timeout_s=1500)


@pytest.mark.parametrize("check_id", [definition.id for definition in catalog()])
def test_check_status_on_the_vm_node(vm_run: SuiteRun, profile: Profile, check_id: str) -> None:
    wanted: Want = vm_expected(profile)[check_id]
    assert_as_wanted(check_id, vm_run.check(check_id), wanted)


def test_recommendation_on_the_vm_node(vm_run: SuiteRun, profile: Profile) -> None:
    recommendation = vm_run.report["recommendation"]
    wanted = vm_expected(profile)["modes"]
    assert (recommendation["full_docker"], recommendation["build_only"]) == wanted, recommendation["reasons"]
    assert recommendation["from_source"] == vm_expected(profile)["from_source"]


def test_every_probe_pod_ran_on_the_vm_node(vm_run: SuiteRun) -> None:
    assert vm_run.report["cluster"]["probed_nodes"] == [VM_NODE], vm_run.report["cluster"]["probed_nodes"]


def test_the_lsm_check_sees_apparmor_and_cgroup_v2_there_and_neither_on_the_container_node(
    vm_run: SuiteRun, suite_run: SuiteRun
) -> None:
    on_vm = vm_run.check("lsm")["evidence"]
    assert on_vm["active"] == ["apparmor"], on_vm["observed"]
    assert on_vm["readings"]["cgroup_fs"] == "cgroup2fs", on_vm["readings"]
    assert f"probe container confined by AppArmor profile {CONFINED}" in on_vm["observed"], on_vm["observed"]
    on_host = suite_run.check("lsm")["evidence"]
    assert on_host["active"] == [], on_host["observed"]
    assert on_host["readings"]["cgroup_fs"] == "tmpfs", on_host["readings"]


def test_nested_docker_runs_on_cgroup_v2_without_a_profile_of_its_own(vm_run: SuiteRun, suite_run: SuiteRun) -> None:
    """The inner dockerd runs on cgroup v2 there (v1 here) and, as docker:dind's, applies no AppArmor profile.

    It lists apparmor among its security options (it reads the kernel's profiles file) yet, under the dind
    entrypoint's container=docker and without apparmor_parser, loads no docker-default: nested containers run as the
    privileged pod does, unconfined.
    """
    on_vm = vm_run.check("docker-run")["evidence"]
    assert on_vm["cgroup_version"] == "2", on_vm
    assert "name=apparmor" in on_vm["security_options"], on_vm["security_options"]
    assert on_vm["nested_lsm_context"] == "unconfined", on_vm["nested_lsm_context"]
    on_host = suite_run.check("docker-run")["evidence"]
    assert on_host["cgroup_version"] == "1", on_host
    assert "apparmor" not in on_host["security_options"], on_host["security_options"]
    assert on_host["nested_lsm_context"] == "", "no LSM on the container node: nothing to read"


def test_the_vm_nodes_cgroup_and_lsm_are_in_the_cluster_block(vm_run: SuiteRun) -> None:
    node = next(node for node in vm_run.report["cluster"]["nodes"] if node["name"] == VM_NODE)
    assert node["kernel"].startswith("6."), node
    if "cgroup" not in node:
        pytest.skip("this report has no per-node cgroup/LSM facts")
    assert node["cgroup"] == "v2", node
    assert node["lsm"] == ["apparmor"], node


def _buildkitd_pod(env: dict[str, str], namespace: str, on_vm: bool) -> dict[str, Any]:
    """The buildkitd container alone in the report's spec without its appArmorProfile, on the vm or default node.

    Left out, not RuntimeDefault: that is what a spec written without AppArmor in mind says, and a kubelet on a node
    without AppArmor refuses a pod that asks for a profile (its phase Failed, reason AppArmor).
    """
    spec = specs.buildkit_pod_spec(Images(buildkit=env["TESTBED_IMAGE_BUILDKIT"]), Resources())
    del spec["containers"][0]["securityContext"]["appArmorProfile"]
    spec["restartPolicy"] = "Never"
    if on_vm:
        spec["nodeSelector"] = {"dindcheck.io/pool": "vm"}
        spec["tolerations"] = [{"key": "dedicated", "value": "vm", "effect": "NoSchedule"}]
    name = f"buildkitd-no-apparmor-field-{'vm' if on_vm else 'node'}"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@pytest.fixture(scope="module")
def apparmor_namespace(testbed_env: dict[str, str]) -> Iterator[str]:
    with fresh_namespace(testbed_env, "dindcheck-vm-apparmor") as namespace:
        yield namespace


def log_when_started_or_ended(env: dict[str, str], pod: dict[str, Any]) -> str:
    """The buildkitd container's log once it serves (running server on ...) or its container ended."""
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    log = ""

    def decided() -> bool:
        nonlocal log
        status = yaml.safe_load(kubectl(env, "get", "pod", name, "-n", namespace, "-o", "yaml")).get("status", {})
        statuses = status.get("containerStatuses") or [{}]
        ended = "terminated" in statuses[0].get("state", {}) or status.get("phase") == "Failed"
        log = kubectl_answer(env, "logs", name, "-n", namespace).stdout
        return ended or "running server on" in log

    wait_until(decided, f"buildkitd of {name} to serve or end", timeout_s=600)
    return log


def test_apparmor_breaks_rootless_buildkit_only_where_it_confines_and_the_cause_is_named(
    testbed_env: dict[str, str], apparmor_namespace: str, profile: Profile
) -> None:
    """Without appArmorProfile Unconfined, rootless BuildKit fails on the AppArmor node only, in AppArmor's words.

    The vm node's default profile stops rootlesskit's first mount; the container node, with no LSM, lets the same
    spec serve. The remediation the report gives (appArmorProfile Unconfined) is what the vm pool's run used.
    """
    if profile.userns == "off":
        pytest.skip("user namespaces are off: rootlesskit fails creating one, before AppArmor's turn (its first mount)")
    pods = [_buildkitd_pod(testbed_env, apparmor_namespace, on_vm) for on_vm in (True, False)]
    kubectl(testbed_env, "apply", "-f", "-", stdin=yaml.safe_dump_all(pods))
    confined, free = (log_when_started_or_ended(testbed_env, pod) for pod in pods)
    assert "running server on" not in confined, confined[-2000:]
    assert "failed to share mount point" in confined, confined[-2000:]
    assert buildkit_rootless.classify_failure(confined) == (
        "AppArmor confines the container (needs appArmorProfile Unconfined)"
    )
    assert "running server on" in free, free[-2000:]


def assert_nothing_left_on_the_vm_node(run: SuiteRun, env: dict[str, str]) -> None:
    """The run ended with a verdict, and neither its objects nor a probe pod on the vm node outlived it."""
    assert run.exit_code in (0, 1), run.output[-3000:]
    assert wait_until_clean(env, 60) == []
    leftover = kubectl(
        env, "get", "pods", "-A", "--field-selector", f"spec.nodeName={VM_NODE}", "-l", "dindcheck.io/run"
    )
    assert not leftover.strip(), leftover


def test_nothing_left_behind_on_the_vm_node(vm_run: SuiteRun, testbed_env: dict[str, str]) -> None:
    assert_nothing_left_on_the_vm_node(vm_run, testbed_env)
