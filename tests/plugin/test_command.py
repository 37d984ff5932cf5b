"""The installed command (`dindcheck`, `kubectl dindcheck`, `python -m dindcheck`) runs the suite as `pytest suites`.

The runs go through `python -m dindcheck` in a subprocess with the cluster part replaced by fixed verdicts
(tests/plugin/fixed_runner.py, loaded as a `-p` plugin: the command's pytest sees no conftest of ours).
"""

from __future__ import annotations

import configparser
import sys
import tomllib
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from dindcheck import __version__, cli
from probes.definitions import catalog
from tests.plugin.fixed_runner import conftest, with_statuses

pytest_plugins = ("pytester",)

REPO = Path(__file__).resolve().parents[2]


def command(pytester: pytest.Pytester, statuses: dict[str, str], *args: str) -> pytest.RunResult:
    """`python -m dindcheck ARGS` in pytester's directory, every probe finished with its status in statuses."""
    pytester.makepyfile(fixed_cluster=conftest(with_statuses, statuses))
    return pytester.run(sys.executable, "-m", "dindcheck", "-p", "fixed_cluster", *args)


def test_version_needs_no_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"dindcheck {__version__} (pytest ")


def test_help_lists_dindcheck_options_first_then_points_to_pytests(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dindcheck [dindcheck options] [pytest options]")
    assert out.index("--kubeconfig") < out.index("--require-mode") < out.index("dindcheck --pytest-help")
    assert "-k EXPR" in out


def test_pytest_help_names_the_command_not_pytest_main(pytester: pytest.Pytester) -> None:
    """Before: 'usage: pytest.main() [options] ...', a name no user typed."""
    result = pytester.run(sys.executable, "-m", "dindcheck", "--pytest-help")
    assert result.ret == 0
    out = result.stdout.str()
    assert out.startswith("usage: dindcheck [options] [file_or_dir]"), out[:200]
    assert "pytest.main()" not in out
    assert "--kubeconfig" in out, "dindcheck's own options are listed among pytest's"


def test_as_a_kubectl_plugin_it_names_itself_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/kubectl-dindcheck", "-h"])
    assert cli.main() == 0
    assert capsys.readouterr().out.startswith("usage: kubectl dindcheck [dindcheck options]")


def test_the_packaged_settings_are_the_checkouts() -> None:
    """An installed run and `pytest suites` from a checkout read the same pytest settings (xunit1 JUnit above all)."""
    checkout = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    packaged = configparser.ConfigParser()
    packaged.read(cli.SUITE_INI)
    ini = packaged["pytest"]
    assert ini["minversion"] == checkout["minversion"]
    assert ini["addopts"].split() == checkout["addopts"]
    assert ini["junit_family"] == checkout["junit_family"]
    assert [line for line in ini["markers"].splitlines() if line] == checkout["markers"]


def test_the_wheel_packages_every_package_of_the_checkout() -> None:
    """The packages are listed by hand (the suite is mapped into dindcheck.suites): a new one must be listed too."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("probes", "reports", "dindcheck")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk | {"dindcheck.suites"}
    assert setuptools["package-dir"] == {"dindcheck.suites": "suites"}
    assert (REPO / "suites" / "__init__.py").is_file()


def test_the_command_runs_the_whole_suite_with_the_exit_code_of_pytest_suites(pytester: pytest.Pytester) -> None:
    statuses = {definition.id: "pass" for definition in catalog()} | {"host-socket": "fail"}
    result = command(pytester, statuses)
    result.assert_outcomes(passed=len(statuses) - 1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*dindcheck compatibility report*", "proved nothing: 0 of 10 checks*"])
    assert "suites/test_host_socket.py::test_host_socket" in result.stdout.str()


def test_pytest_options_pass_through(pytester: pytest.Pytester) -> None:
    """-k selects, --junitxml writes xunit1 properties (the packaged settings), as from a checkout."""
    result = command(pytester, {"lsm": "pass", "docker-run": "fail"}, "-k", "lsm", "--junitxml", "junit.xml")
    result.assert_outcomes(passed=1, deselected=len(catalog()) - 1)
    assert result.ret == pytest.ExitCode.OK
    junit = ET.parse(pytester.path / "junit.xml")  # noqa: S314 (the run's own file)
    case = junit.getroot().find(".//testcase")
    assert case is not None
    assert case.get("classname") == "suites.test_lsm"
    assert ("dindcheck.status", "pass") in [(p.get("name"), p.get("value")) for p in case.iter("property")]


def test_kubeconfig_and_context_are_dindchecks_own_options(pytester: pytest.Pytester) -> None:
    """`kubectl dindcheck --kubeconfig PATH --context NAME`: kubectl's flags reach the run as they are."""
    result = pytester.run(sys.executable, "-m", "dindcheck", "--kubeconfig", "missing.yaml", "--context", "prod")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "kubeconfig not found: missing.yaml" in result.stderr.str()
