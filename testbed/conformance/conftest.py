"""Fixtures for conformance runs against the testbed: its env, its active profile, one suite run per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testbed.conformance.harness import REPO, STATE, Profile, SuiteRun, read_shell_env, run_suite


@pytest.fixture(scope="session")
def testbed_env() -> dict[str, str]:
    env_file = STATE / "env"
    if not env_file.is_file():
        pytest.skip("no testbed: run testbed/up first")
    return read_shell_env(env_file)


@pytest.fixture(scope="session")
def profile() -> Profile:
    values = read_shell_env(STATE / "profile")
    return Profile(
        psa_default=values["PSA_DEFAULT"],
        deny_privileged=values["DENY_PRIVILEGED"] == "true",
        userns=values["USERNS"],
        cache_fs=values["CACHE_FS"],
        sysbox_class=values["SYSBOX_CLASS"] == "true",
        dind=values.get("DIND", "29"),
        pod_mtu=int(values["POD_MTU"]) if values.get("POD_MTU") else None,
        nodes=int(values.get("NODES") or 1),
        node_vm=values.get("NODE_VM") == "true",
        vm_kernel=values.get("VM_KERNEL") or "6.1",
        vm_lsm=values.get("VM_LSM") or "apparmor",
    )


@pytest.fixture(scope="session")
def permissive(profile: Profile) -> None:
    """Fault and cleanup cases run once, on the permissive profile.

    Session-scoped so it skips before the session fixtures of the tests it gates (a wheel build, a suite run):
    pytest sets those up before any function-scoped fixture.
    """
    if profile.name != "permissive":
        pytest.skip("fault and cleanup cases run on the permissive profile")


@pytest.fixture(scope="session")
def out_root() -> Path:
    root = Path(os.environ.get("DINDCHECK_CI_OUT", REPO / "ci-out"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def suite_run(testbed_env: dict[str, str], profile: Profile, out_root: Path) -> SuiteRun:
    """The full suite against the active profile, once per session."""
    return run_suite(testbed_env, out_root / profile.name)
