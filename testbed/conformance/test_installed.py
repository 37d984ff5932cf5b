"""Installed, it runs: the wheel in a fresh venv outside the checkout gives the verdicts `pytest suites` gives.

The wheel is built from a copy of the package's sources (no stale build/ of the checkout can slip in), installed with
its dependencies from a wheelhouse into a venv in a temporary directory, and run from there with no PYTHONPATH, as
`kubectl dindcheck` (kubectl finds the plugin on PATH, the run gets kubectl's --kubeconfig and --context). Its
--show-config recommended output goes to the testbed's API server as `kubectl apply --dry-run=server -f -`.
Permissive profile only: the packaging does not change with the knobs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import yaml

from testbed.conformance.harness import REPO, SuiteRun, kubectl_answer, statuses

PACKAGE_SOURCES = ("pyproject.toml", "README.md", "probes", "reports", "dindcheck", "suites")
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 600


def outside_the_checkout() -> dict[str, str]:
    """The environment without PYTHONPATH (the conformance run names the checkout there) and without an active venv.

    With the checkout on PYTHONPATH, pip would take its dindcheck.egg-info (left by an in-tree build) for an install
    and skip the wheel.
    """
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}


@dataclass(frozen=True)
class Installed:
    """A fresh venv with the built wheel installed, and a working directory outside the checkout."""

    venv: Path
    workdir: Path

    def env(self, testbed_env: dict[str, str]) -> dict[str, str]:
        """The user's environment: the venv and the testbed's kubectl on PATH, nothing of the checkout."""
        env = outside_the_checkout()
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), testbed_env["TESTBED_BIN"], env.get("PATH", "")])
        return env


def _run(command: list[str], cwd: Path, timeout_s: float = INSTALL_TIMEOUT_S) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=outside_the_checkout(), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, f"{shlex.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel (and a wheelhouse of its dependencies) and install it offline into a fresh venv."""
    root = tmp_path_factory.mktemp("installed")
    source, wheels, venv, workdir = root / "source", root / "wheels", root / "venv", root / "work"
    workdir.mkdir()
    for name in PACKAGE_SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    # the host's pip reaches the package index (or its cache) for the build backend and the dependencies
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(source)], root)
    (wheel,) = wheels.glob("dindcheck-*.whl")
    _run([sys.executable, "-m", "venv", str(venv)], root)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels)]
    _run([*pip, str(wheel)], root)
    assert (venv / "bin" / "kubectl-dindcheck").is_file(), "the wheel installed no kubectl-dindcheck"
    return Installed(venv, workdir)


@dataclass(frozen=True)
class InstalledRun:
    """`kubectl dindcheck ... --show-config recommended` run from outside the checkout."""

    exit_code: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    out_dir: Path


@pytest.fixture(scope="session")
def installed_run(
    installed: Installed, testbed_env: dict[str, str], out_root: Path, suite_run: SuiteRun
) -> InstalledRun:
    """The full suite through the installed kubectl plugin, after (not beside) the checkout's run."""
    assert suite_run.report, "the checkout's `pytest suites` run wrote no report to compare with"
    out_dir = out_root / "installed"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = shlex.split(testbed_env["TESTBED_PYTEST_ARGS"])
    at = args.index("--kubeconfig")
    kubeconfig = args[at + 1]
    del args[at : at + 2]
    context = yaml.safe_load(Path(kubeconfig).read_text())["current-context"]
    command = [
        "kubectl",
        "dindcheck",
        "--kubeconfig",
        kubeconfig,
        "--context",
        context,
        *args,
        "--report-json",
        str(out_dir / "report.json"),
        "--junitxml",
        str(out_dir / "junit.xml"),
        "--show-config",
        "recommended",
    ]
    done = subprocess.run(
        command,
        cwd=installed.workdir,
        env=installed.env(testbed_env),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    (out_dir / "stdout.yaml").write_text(done.stdout)
    (out_dir / "stderr.txt").write_text(done.stderr)
    report_path = out_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return InstalledRun(done.returncode, done.stdout, done.stderr, report, out_dir)


def _test_ids(junit: Path) -> set[tuple[str, str]]:
    root = ET.parse(junit).getroot()  # noqa: S314 (the run's own file)
    return {(case.get("classname", ""), case.get("name", "")) for case in root.iter("testcase")}


@pytest.mark.usefixtures("permissive")
def test_the_installed_command_runs_without_a_cluster_from_outside_the_checkout(
    installed: Installed, testbed_env: dict[str, str]
) -> None:
    env = installed.env(testbed_env)
    where = subprocess.run(
        ["python", "-c", "import dindcheck.suites; print(dindcheck.suites.__file__)"],
        cwd=installed.workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed.venv), f"dindcheck.suites imported from {where}, not the venv"
    version = subprocess.run(
        ["dindcheck", "--version"], cwd=installed.workdir, env=env, capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("dindcheck ")
    usage = subprocess.run(
        ["kubectl", "dindcheck", "--help"], cwd=installed.workdir, env=env, capture_output=True, text=True, check=True
    )
    assert usage.stdout.startswith("usage: kubectl dindcheck [dindcheck options]")
    assert "--show-config" in usage.stdout


@pytest.mark.usefixtures("permissive")
def test_the_installed_run_gives_the_verdicts_of_pytest_suites(
    installed_run: InstalledRun, suite_run: SuiteRun
) -> None:
    assert installed_run.report, f"no JSON report; stderr:\n{installed_run.stderr[-3000:]}"
    installed_statuses = {check["id"]: check["status"] for check in installed_run.report.get("checks", [])}
    assert installed_statuses == statuses(suite_run)
    assert installed_run.exit_code == suite_run.exit_code
    assert _test_ids(installed_run.out_dir / "junit.xml") == _test_ids(suite_run.out_dir / "junit.xml")
    assert "dindcheck compatibility report" in installed_run.stderr
    assert "config to paste: printed on stdout (--show-config recommended)" in installed_run.stderr


@pytest.mark.usefixtures("permissive")
def test_show_config_recommended_is_the_reports_pods_and_the_api_server_accepts_them(
    installed_run: InstalledRun, testbed_env: dict[str, str]
) -> None:
    recommendation = installed_run.report["recommendation"]
    modes = [recommendation[key] for key in ("full_docker", "build_only", "from_source")]
    recommended = [mode for mode in dict.fromkeys(modes) if mode != "none"]
    assert recommended, "the permissive profile recommends modes: nothing to show is a regression"
    assert installed_run.stdout == "---\n".join(recommendation["snippets"][mode] for mode in recommended)
    documents = list(yaml.safe_load_all(installed_run.stdout))
    assert [doc["kind"] for doc in documents] == ["Pod"] * len(recommended)
    applied = kubectl_answer(testbed_env, "apply", "--dry-run=server", "-f", "-", stdin=installed_run.stdout)
    assert applied.returncode == 0, applied.stderr
    for mode in recommended:
        assert f"pod/{mode}-build created (server dry run)" in applied.stdout
