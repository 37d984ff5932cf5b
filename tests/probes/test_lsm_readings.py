"""The LSM probe's reading of recorded node states (research/probe-facts.md sections 5 and 6).

Observed facts and inferred consequences must stay apart: the report says which is which.
"""

from __future__ import annotations

from probes.definitions.lsm import ABSENT, assess

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
    assert any("cannot mount overlay" in guess for guess in found.inferred)
    assert found.blocks == ()


def test_privileged_selinux_context_is_spc_t() -> None:
    found = assess(PRIVILEGED_SELINUX)
    assert any("spc_t" in fact for fact in found.observed)
    assert not any("cannot mount overlay" in guess for guess in found.inferred)


def test_old_debian_userns_clone_off_blocks() -> None:
    found = assess({**TESTBED, "unprivileged_userns_clone": "0"})
    assert "unprivileged_userns_clone=0" in found.blocks_by_mode()["buildkit-rootless"]
