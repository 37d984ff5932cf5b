"""The LSM probe's reading of recorded node states (research/probe-facts.md sections 5 and 6).

Observed facts and inferred consequences must stay apart: the report says which is which.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from probes.definitions._selinux import selinux_type
from probes.definitions.lsm import ABSENT, READINGS, assess, verdict
from probes.engine import key_values
from probes.model import NodeSecurity, Status

# Recorded from the testbed (kernel with lockdown, capability, landlock, bpf: no AppArmor, no SELinux).
TESTBED = {
    "apparmor_enabled": ABSENT,
    "lsm_list": ABSENT,
    "attr_current": ABSENT,
    "attr_apparmor_current": ABSENT,
    "selinux_enforce": ABSENT,
    "max_user_namespaces": "96365",
    "unprivileged_userns_clone": ABSENT,
    "apparmor_restrict_unprivileged_userns": ABSENT,
    "Seccomp": "0",
    "NoNewPrivs": "0",
    "cgroup_fs": "tmpfs",
}
# Ubuntu 24.04 node, containerd's default AppArmor profile, userns restriction on.
UBUNTU_2404 = {
    "apparmor_enabled": "Y",
    "lsm_list": ABSENT,
    "attr_current": "cri-containerd.apparmor.d (enforce)",
    "attr_apparmor_current": "cri-containerd.apparmor.d (enforce)",
    "selinux_enforce": ABSENT,
    "max_user_namespaces": "63437",
    "unprivileged_userns_clone": "1",
    "apparmor_restrict_unprivileged_userns": "1",
    "Seccomp": "2",
    "cgroup_fs": "cgroup2fs",
}
# RHEL / OpenShift node with SELinux enforcing, an ordinary container.
RHEL_SELINUX = {
    "apparmor_enabled": ABSENT,
    "lsm_list": "lockdown,capability,yama,selinux,bpf",
    "attr_current": "system_u:system_r:container_t:s0:c123,c456",
    "attr_apparmor_current": ABSENT,
    "selinux_enforce": "1",
    "max_user_namespaces": "15000",
    "Seccomp": "2",
    "cgroup_fs": "cgroup2fs",
}
PRIVILEGED_SELINUX = {**RHEL_SELINUX, "attr_current": "system_u:system_r:spc_t:s0"}
# Recorded on the testbed's SELinux vm node, enforcing (Debian 6.12, reference policy with its container module,
# containerd's enable_selinux) from the lsm check's ordinary pod: no selinuxfs and no securityfs in the pod, so the
# pod's own label is the only sign of SELinux (the check said "LSM none active" there before), and container_t may
# not read /proc/sys/user/max_user_namespaces (avc: denied { read } ... tcontext=...sysctl_t).
VM_SELINUX = {
    "apparmor_enabled": "N",
    "lsm_list": ABSENT,
    "attr_current": "system_u:system_r:container_t:s0:c423,c681",
    "attr_apparmor_current": ABSENT,
    "selinux_enforce": ABSENT,
    "max_user_namespaces": ABSENT,
    "unprivileged_userns_clone": "1",
    "apparmor_restrict_unprivileged_userns": ABSENT,
    "CapBnd": "00000000a80425fb",
    "NoNewPrivs": "0",
    "Seccomp": "0",
    "userns_try": "ok",
    "kernel": "6.12.95+deb12-amd64",
    "cgroup_fs": "cgroup2fs",
}


def test_testbed_says_none_active_and_blocks_nothing() -> None:
    found = assess(TESTBED)
    assert found.active == ()
    assert any("none active" in fact for fact in found.observed)
    assert found.blocks == ()


def test_userns_disabled_blocks_rootless_buildkit() -> None:
    found = assess({**TESTBED, "max_user_namespaces": "0"})
    assert "user.max_user_namespaces=0" in found.blocks_by_mode()["buildkit-rootless"]
    assert "user.max_user_namespaces=0" in found.observed


def test_enospc_on_unshare_blocks_rootless_buildkit_as_observed() -> None:
    found = assess({**TESTBED, "userns_try": "unshare: unshare failed: No space left on device"})
    assert "ENOSPC" in found.blocks_by_mode()["buildkit-rootless"]
    assert any("No space left on device" in fact for fact in found.observed)


def test_eperm_on_unshare_is_the_profile_not_a_block() -> None:
    found = assess({**TESTBED, "userns_try": "unshare: unshare failed: Operation not permitted"})
    assert found.blocks == ()
    assert any("seccomp/LSM profile" in guess for guess in found.inferred)


def test_ubuntu_apparmor_restriction_is_observed_and_blocks() -> None:
    found = assess(UBUNTU_2404)
    assert found.active == ("apparmor",)
    assert "apparmor_restrict_unprivileged_userns=1" in found.blocks_by_mode()["buildkit-rootless"]
    assert any("cri-containerd.apparmor.d (enforce)" in fact for fact in found.observed)
    assert any("default profile" in guess for guess in found.inferred)


def test_restriction_sysctl_without_apparmor_does_not_block() -> None:
    found = assess({**TESTBED, "apparmor_restrict_unprivileged_userns": "1"})
    assert found.blocks == ()


def test_selinux_container_t_is_observed_and_overlay_limit_inferred() -> None:
    found = assess(RHEL_SELINUX)
    assert found.active == ("selinux",)
    assert "SELinux is enforcing" in found.observed
    assert any("container_t" in fact for fact in found.observed)
    assert any("user namespace" in guess and "spc_t" in guess for guess in found.inferred)
    assert found.blocks == ()


def test_selinux_is_seen_from_the_pods_own_label_when_nothing_else_is_readable() -> None:
    found = assess(VM_SELINUX)
    assert found.active == ("selinux",)
    assert "SELinux is on (its mode not read: no selinuxfs in the pod)" in found.observed
    assert "probe container runs as system_u:system_r:container_t:s0:c423,c681" in found.observed
    assert found.node == NodeSecurity(
        cgroup="v2", lsm=("selinux",), selinux_label="system_u:system_r:container_t:s0:c423,c681"
    )
    assert found.blocks == ()


def test_the_verdict_on_the_selinux_node_names_selinux_not_none() -> None:
    stdout = "\n".join(f"{key}={value}" for key, value in VM_SELINUX.items())
    outcome = verdict(stdout, 0, "")
    assert outcome.summary.startswith("LSM selinux;"), outcome.summary


@pytest.mark.parametrize(
    ("label", "selinux_type_read"),
    [
        ("system_u:system_r:container_t:s0:c423,c681", "container_t"),
        ("system_u:system_r:spc_t:s0", "spc_t"),
        ("unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023", "unconfined_t"),
        ("cri-containerd.apparmor.d (enforce)", ""),
        ("unconfined", ""),
        ("docker-default (enforce)", ""),
        (ABSENT, ""),
        ("", ""),
    ],
)
def test_an_selinux_label_is_told_from_an_apparmor_one(label: str, selinux_type_read: str) -> None:
    assert selinux_type(label) == selinux_type_read


def test_an_apparmor_profile_is_never_taken_for_selinux() -> None:
    assert assess(UBUNTU_2404).active == ("apparmor",)


def test_privileged_selinux_context_is_spc_t() -> None:
    found = assess(PRIVILEGED_SELINUX)
    assert any("spc_t" in fact for fact in found.observed)
    assert not any("container_t may not" in guess for guess in found.inferred)


def test_old_debian_userns_clone_off_blocks() -> None:
    found = assess({**TESTBED, "unprivileged_userns_clone": "0"})
    assert "unprivileged_userns_clone=0" in found.blocks_by_mode()["buildkit-rootless"]


# ----- the READINGS script itself, run with /bin/sh as in the pod (it only reads files) -----------------------------
READERS = re.findall(r"^r (\w+) (\S+)$", READINGS, re.MULTILINE)


def run_sh(script: str) -> str:
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def read_with_r(tmp_path: Path, files: dict[str, bytes | None]) -> dict[str, str]:
    """Run the script's own reader `r` over files in tmp_path (None: no such file; b'/': a directory)."""
    calls = []
    for key, content in files.items():
        path = tmp_path / key
        if content == b"/":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        calls.append(f"r {key} {shlex.quote(str(path))}")
    reader = READINGS.split(f"\nr {READERS[0][0]} ")[0]
    return key_values(run_sh(reader + "\n" + "\n".join(calls)))


def test_reader_marks_missing_and_unreadable_files_absent_not_empty(tmp_path: Path) -> None:
    """Before the [ -r ] guard a missing file read as '' and an empty reading looked like a setting."""
    readings = read_with_r(
        tmp_path,
        {
            "enabled": b"Y\n",
            "lsm": b"lockdown,capability,selinux,bpf",
            "selinux_context": b"system_u:system_r:container_t:s0:c1,c2\x00",
            "missing": None,
            "a_directory": b"/",
            "empty": b"",
        },
    )
    assert readings == {
        "enabled": "Y",
        "lsm": "lockdown,capability,selinux,bpf",
        "selinux_context": "system_u:system_r:container_t:s0:c1,c2",
        "missing": ABSENT,
        "a_directory": ABSENT,
        "empty": "",
    }


def test_the_whole_script_reads_every_setting_or_says_absent() -> None:
    assert len(READERS) == 8, "the script's `r KEY PATH` lines were not found"
    readings = key_values(run_sh(READINGS))
    for key, path in READERS:
        if not Path(path).exists():
            assert readings[key] == ABSENT, key
        else:
            assert key in readings, key
    assert readings["kernel"] == os.uname().release
    assert "userns_try" in readings
    assert verdict(run_sh(READINGS), 0, "").status is not Status.INCONCLUSIVE


def test_absent_readings_are_never_taken_for_a_setting() -> None:
    all_absent = {key: ABSENT for key, _ in READERS}
    found = assess(all_absent)
    assert found.active == ()
    assert found.blocks == ()
    assert not any(ABSENT in fact for fact in found.observed)


@pytest.mark.parametrize(
    ("attempt", "said", "inferred_eperm"),
    [
        (
            "unshare: unshare failed: Operation not permitted",
            "creating a user namespace in an ordinary pod failed: unshare: unshare failed: Operation not permitted",
            True,
        ),
        ("sh: 1: unshare: not found", "a user namespace was not tried (no unshare in the tools image", False),
        ("unshare: cannot open /proc/self/uid_map: Permission denied", "uid_map: Permission denied", False),
        (None, "a user namespace was not tried", False),
    ],
)
def test_the_pass_says_what_the_unshare_attempt_showed(attempt: str | None, said: str, inferred_eperm: bool) -> None:
    """Never 'user namespaces available' unless unshare -U succeeded; only EPERM is put down to the profile."""
    readings = dict(TESTBED) if attempt is None else {**TESTBED, "userns_try": attempt}
    outcome = verdict("\n".join(f"{key}={value}" for key, value in readings.items()), 0, "")
    assert outcome.status is Status.PASS
    assert said in outcome.summary
    assert "available" not in outcome.summary
    assert "created a user namespace" not in outcome.summary
    assert any("(EPERM)" in guess for guess in outcome.evidence["inferred"]) is inferred_eperm


def test_the_pass_says_a_user_namespace_was_created_only_when_it_was() -> None:
    outcome = verdict("\n".join(f"{key}={value}" for key, value in {**TESTBED, "userns_try": "ok"}.items()), 0, "")
    assert outcome.status is Status.PASS
    assert "an ordinary pod created a user namespace (unshare -U)" in outcome.summary


# ----- what the report's cluster block says of the node: cgroup version, active LSMs, the pod's own confinement -----


def test_a_cgroup2fs_node_is_cgroup_v2_with_containerds_apparmor_profile() -> None:
    node = assess(UBUNTU_2404).node
    assert node == NodeSecurity(cgroup="v2", lsm=("apparmor",), apparmor_profile="cri-containerd.apparmor.d (enforce)")


def test_a_tmpfs_node_is_cgroup_v1_and_none_active_is_an_empty_list() -> None:
    node = assess(TESTBED).node
    assert node == NodeSecurity(cgroup="v1", lsm=())


def test_an_selinux_node_has_its_mode_and_the_pods_label() -> None:
    node = assess(RHEL_SELINUX).node
    assert node.cgroup == "v2"
    assert node.lsm == ("selinux",)
    assert node.selinux_mode == "enforcing"
    assert node.selinux_label == "system_u:system_r:container_t:s0:c123,c456"
    assert node.apparmor_profile == ""
    permissive = assess({**RHEL_SELINUX, "selinux_enforce": "0"}).node
    assert permissive.selinux_mode == "permissive"


def test_selinux_in_the_lsm_list_without_its_enforce_file_has_no_mode_guessed() -> None:
    """Before, the observed fact read 'SELinux is <absent>'."""
    found = assess({**RHEL_SELINUX, "selinux_enforce": ABSENT})
    assert found.node.lsm == ("selinux",)
    assert found.node.selinux_mode == ""
    assert "SELinux is on (its mode not read: no selinuxfs in the pod)" in found.observed
    assert not any(ABSENT in fact for fact in found.observed)


@pytest.mark.parametrize("cgroup_fs", ["", "overlay", ABSENT])
def test_a_cgroup_filesystem_neither_v1_nor_v2_is_not_guessed(cgroup_fs: str) -> None:
    assert assess({**TESTBED, "cgroup_fs": cgroup_fs}).node.cgroup == ""


def test_the_stacked_apparmor_attr_wins_for_the_profile() -> None:
    readings = {**UBUNTU_2404, "attr_current": "unconfined", "attr_apparmor_current": "docker-default (enforce)"}
    assert assess(readings).node.apparmor_profile == "docker-default (enforce)"


def test_the_verdict_carries_the_node_facts_and_an_inconclusive_one_none() -> None:
    stdout = "\n".join(f"{key}={value}" for key, value in UBUNTU_2404.items())
    assert verdict(stdout, 0, "").facts.node_security == assess(UBUNTU_2404).node
    assert verdict("", 1, "exec failed").facts.node_security is None
