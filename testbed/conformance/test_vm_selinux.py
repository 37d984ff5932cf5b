"""The vm node with SELinux enforcing (`testbed/up --node-vm --vm-kernel 6.12 --vm-lsm selinux`): every verdict there.

The guest runs Debian's reference policy with its container module; containerd's enable_selinux labels every
ordinary container container_t with its pod's own MCS categories and every privileged one spc_t. Expectations
written from first principles before the first enforcing run (docs/probe-facts.md, "The vm node with SELinux"):
- privileged pods (privileged-admission, overlay-cache, the DinD sidecars) run as spc_t, which the policy leaves
  largely unconfined: admitted, overlay mounts, dockerd starts.
- rootless BuildKit runs as container_t even with its Unconfined seccomp/AppArmor profiles (those are not SELinux):
  rootlesskit's mount in its user namespace needs CAP_SYS_ADMIN there, which container_t is denied (cap_userns):
  it fails, and the report must say SELinux, not seccomp or AppArmor.
- Kaniko runs as root in container_t and mounts nothing: expected to build. The enforcing run showed otherwise
  (avc: denied { getpgid } for comm="executor" ... container_t): the policy lacks a permission Kaniko's RUN step
  uses, so it fails, named as SELinux's refusal, not as Kaniko's snapshotter.
- the job container (container_t) talking to the privileged dockerd (spc_t) over the shared socket: not predicted;
  the enforcing run showed avc: denied { connectto } ... tclass=unix_stream_socket. docker-run (a socket layout)
  fails, named as SELinux's; socket-sharing passes on GitLab's form only (TLS over TCP has no unix socket) and names
  SELinux for the socket layouts.
- the CNB lifecycle (non-root, no capabilities) builds; the lsm check sees SELinux from its pod's own label.
The remedy the report gives (seLinuxOptions type spc_t) is proven as a user proves it: the whole suite again with
--selinux-type spc_t, where every check that met a container_t refusal passes and the config to paste carries the type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.conformance.harness import Profile, SuiteRun, run_suite
from testbed.conformance.test_profiles import NO_DOCKER_SOCKET, PASS, SYSBOX_ABSENT, assert_as_wanted, want
from testbed.conformance.test_vm_node import (
    ON_THE_VM_NODE,
    VM_NODE,
    VM_TIMEOUT,
    assert_nothing_left_on_the_vm_node,
)

CONTAINER_T = "system_u:system_r:container_t:s0:c"
SELINUX_EXPECTED: dict[str, Any] = {
    "privileged-admission": PASS,
    "overlay-cache": PASS,
    "docker-run": want("fail", says=("dockerd runs", f"confined by SELinux as {CONTAINER_T}")),
    "buildkit-rootless": want("fail", says=(f"SELinux confines the pod ({CONTAINER_T}",)),
    "socket-sharing": want("pass", says=(f"confined by SELinux as {CONTAINER_T}", "(GitLab's form) ready")),
    "lsm": want("pass", says=("LSM selinux",)),
    "sysbox": SYSBOX_ABSENT,
    "host-socket": NO_DOCKER_SOCKET,
    "kaniko": want("fail", says=("SELinux: the node's policy denies container_t getpgid",)),
    "buildpacks": PASS,
}

pytestmark = pytest.mark.usefixtures("selinux_node")


@pytest.fixture(scope="module")
def selinux_node(profile: Profile) -> None:
    if not (profile.node_vm and profile.vm_lsm == "selinux"):
        pytest.skip("no SELinux vm node on this profile (testbed/up --node-vm --vm-kernel 6.12 --vm-lsm selinux)")


@pytest.fixture(scope="module")
def selinux_run(testbed_env: dict[str, str], out_root: Path, profile: Profile) -> SuiteRun:
    """The whole suite placed on the SELinux vm pool."""
    return run_suite(testbed_env, out_root / profile.name / "vm-pool", *ON_THE_VM_NODE, *VM_TIMEOUT, timeout_s=1500)


@pytest.mark.parametrize("check_id", sorted(SELINUX_EXPECTED))
def test_check_status_on_the_selinux_node(selinux_run: SuiteRun, check_id: str) -> None:
    check = selinux_run.check(check_id)
    assert_as_wanted(check_id, check, SELINUX_EXPECTED[check_id])
    if check["status"] == "fail":
        assert "spc_t" in check["remediation"], f"{check_id}: {check['remediation']!r}"


def test_recommendation_on_the_selinux_node(selinux_run: SuiteRun) -> None:
    """No Dockerfile path proven there: every one met a container_t denial; source builds remain."""
    recommendation = selinux_run.report["recommendation"]
    assert (recommendation["full_docker"], recommendation["build_only"]) == ("none", "none"), recommendation
    assert recommendation["from_source"] == "buildpacks", recommendation


def test_every_probe_pod_ran_on_the_selinux_node(selinux_run: SuiteRun) -> None:
    assert selinux_run.report["cluster"]["probed_nodes"] == [VM_NODE], selinux_run.report["cluster"]["probed_nodes"]


def test_the_lsm_check_and_the_cluster_block_read_selinux_from_the_pods_label(selinux_run: SuiteRun) -> None:
    lsm = selinux_run.check("lsm")["evidence"]
    assert lsm["active"] == ["selinux"], lsm["observed"]
    assert lsm["readings"]["attr_current"].startswith(CONTAINER_T), lsm["readings"]
    assert "SELinux is on (its mode not read: no selinuxfs in the pod)" in lsm["observed"], lsm["observed"]
    node = next(node for node in selinux_run.report["cluster"]["nodes"] if node["name"] == VM_NODE)
    assert node["lsm"] == ["selinux"], node
    assert node["selinux_label"].startswith(CONTAINER_T), node
    assert node["selinux_mode"] is None, "not readable from a pod: never guessed"


def test_the_job_container_that_was_refused_ran_as_container_t(selinux_run: SuiteRun) -> None:
    evidence = selinux_run.check("docker-run")["evidence"]
    assert evidence["client_label"].startswith(CONTAINER_T), evidence
    assert "API listen on" in evidence["dockerd_log"], evidence["dockerd_log"]


# ----- the remedy the report gives, proven the way a user proves it: the whole suite again with --selinux-type spc_t
SPC_T = "system_u:system_r:spc_t:s0"
SPC_T_POD = {"seLinuxOptions": {"type": "spc_t"}}
SPC_T_EXPECTED: dict[str, Any] = {
    "privileged-admission": PASS,
    "overlay-cache": PASS,
    "docker-run": want("pass", says=("nested docker run works",)),
    "buildkit-rootless": PASS,
    "socket-sharing": PASS,
    "lsm": want("pass", says=("LSM selinux",)),
    "sysbox": SYSBOX_ABSENT,
    "host-socket": NO_DOCKER_SOCKET,
    "kaniko": PASS,
    "buildpacks": PASS,
}
"""Every refusal above was container_t's: spc_t is unconfined, so each mode works as on the AppArmor vm node."""


@pytest.fixture(scope="module")
def spc_t_run(testbed_env: dict[str, str], out_root: Path, profile: Profile) -> SuiteRun:
    """The whole suite on the SELinux vm pool again, every probe pod as spc_t (the report's remedy)."""
    out_dir = out_root / profile.name / "vm-pool-spc-t"
    return run_suite(testbed_env, out_dir, *ON_THE_VM_NODE, *VM_TIMEOUT, "--selinux-type", "spc_t", timeout_s=1500)


@pytest.mark.parametrize("check_id", sorted(SPC_T_EXPECTED))
def test_check_status_with_every_pod_as_spc_t(spc_t_run: SuiteRun, check_id: str) -> None:
    assert_as_wanted(check_id, spc_t_run.check(check_id), SPC_T_EXPECTED[check_id])


def test_as_spc_t_dind_and_rootless_buildkit_are_recommended_with_the_type_in_their_config(spc_t_run: SuiteRun) -> None:
    recommendation = spc_t_run.report["recommendation"]
    assert (recommendation["full_docker"], recommendation["build_only"]) == ("dind", "buildkit-rootless")
    for mode in ("dind", "buildkit-rootless"):
        pod = yaml.safe_load(recommendation["snippets"][mode])
        assert pod["spec"]["securityContext"] == SPC_T_POD, f"{mode}: {pod['spec'].get('securityContext')}"
    sky = yaml.safe_load(recommendation["snippets"]["skypilot"])["kubernetes"]
    assert sky["pod_config"] == {"spec": {"securityContext": SPC_T_POD}}, sky


def test_as_spc_t_the_answers_say_so_where_they_are_read(spc_t_run: SuiteRun) -> None:
    """The terminal line under the answers and the Markdown headline: the answers hold for pods of that type."""
    said = "SELinux type spc_t (--selinux-type): every probe pod ran as it, not as the runtime's container_t"
    assert f"as {said}" in spc_t_run.output, spc_t_run.output[-3000:]
    headline = (spc_t_run.out_dir / "report.md").read_text().split("Cluster `")[0]
    assert f"_As {said}" in headline, headline


def test_as_spc_t_the_nested_dockerd_labels_nothing_its_containers_inherit_spc_t(spc_t_run: SuiteRun) -> None:
    """The DinD image's dockerd runs without --selinux-enabled, so it asks runc for no label of its own.

    A nested container keeps the label of the pod it runs in (spc_t): SELinux confines it no more than the DinD pod.
    """
    evidence = spc_t_run.check("docker-run")["evidence"]
    assert evidence["client_label"].startswith(SPC_T), evidence
    assert evidence["nested_lsm_context"].startswith(SPC_T), evidence
    lsm = spc_t_run.check("lsm")["evidence"]
    assert lsm["readings"]["attr_current"].startswith(SPC_T), lsm["readings"]


def test_nothing_left_behind_after_the_spc_t_run(spc_t_run: SuiteRun, testbed_env: dict[str, str]) -> None:
    assert_nothing_left_on_the_vm_node(spc_t_run, testbed_env)


def test_nothing_left_behind_on_the_selinux_node(selinux_run: SuiteRun, testbed_env: dict[str, str]) -> None:
    assert_nothing_left_on_the_vm_node(selinux_run, testbed_env)
