"""The installed command: `dindcheck`, `kubectl dindcheck` and `python -m dindcheck` run the packaged suite.

It is pytest underneath, so every option of `pytest suites` works as it does from a checkout (-k, -m, -x,
--junitxml, and dindcheck's own, --kubeconfig and --context included, which is how `kubectl dindcheck` honours
kubectl's). Only --version, --help and --pytest-help are answered here, without a cluster.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from dindcheck import __version__

PACKAGE = Path(__file__).resolve().parent
SUITE_INI = PACKAGE / "suite.ini"
"""The run's pytest settings (-c), so a project's pytest configuration around the install does not change the run."""
KUBECTL_PLUGIN = "kubectl-dindcheck"
PYTEST_HELP = "--pytest-help"


def suites_dir() -> Path:
    """Where the suite modules are: the installed dindcheck.suites, or a checkout's suites/ beside the package."""
    spec = importlib.util.find_spec("dindcheck.suites")
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).resolve().parent
    return PACKAGE.parent / "suites"


def pytest_args(argv: Sequence[str]) -> list[str]:
    """The pytest command line of a run: the packaged suite, its settings and plugin, then the user's arguments.

    The suite's parent is the rootdir, so test ids read suites/test_<id>.py (JUnit suites.test_<id>) as from a
    checkout. No cache provider: a run has nothing to remember between runs, and site-packages may be read-only.
    """
    suites = suites_dir()
    return [
        str(suites),
        "-c",
        str(SUITE_INI),
        "--rootdir",
        str(suites.parent),
        "-p",
        "dindcheck.plugin",
        "-p",
        "no:cacheprovider",
        *argv,
    ]


def program_name() -> str:
    """'kubectl dindcheck' when kubectl started us as its plugin, else 'dindcheck'."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "dindcheck"
    return "kubectl dindcheck" if name == KUBECTL_PLUGIN else "dindcheck"


class _HelpParser:
    """Enough of pytest.Parser for dindcheck.options.add_options to describe its options to argparse."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._parser = parser

    def getgroup(self, name: str, description: str = "") -> _HelpGroup:
        return _HelpGroup(self._parser.add_argument_group(description or name))


class _HelpGroup:
    def __init__(self, group: argparse._ArgumentGroup) -> None:
        self._group = group

    def addoption(self, *names: str, **kwargs: Any) -> None:
        self._group.add_argument(*names, **kwargs)


def help_text(prog: str) -> str:
    """The dindcheck options first (the same definitions pytest registers), then where pytest's own are."""
    from dindcheck.options import add_options  # noqa: PLC0415 - keeps --version free of the kubernetes import

    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} [dindcheck options] [pytest options]",
        description="Which ways of building containers in pods does this Kubernetes cluster support? Runs every "
        "capability check against the cluster of your kubeconfig and prints the compatibility report.",
        epilog=f"It is pytest underneath: pytest's own options pass through (-k EXPR, -m MARKER, -x, --junitxml PATH, "
        f"-v, ...). `{prog} {PYTEST_HELP}` lists them all. `{prog} --version` prints the version.",
        add_help=False,
    )
    add_options(cast("pytest.Parser", _HelpParser(parser)))
    return parser.format_help()


class _ProgramName:
    """Names the command in pytest's own help: pytest.main() calls itself 'pytest.main()', which no user typed."""

    def __init__(self, prog: str) -> None:
        self.prog = prog

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> None:
        """Before pytest's --help is printed: its parser (made when the command line was read) takes the name."""
        config._parser.optparser.prog = self.prog  # noqa: SLF001 - the parser pytest's --help formats


def version_text() -> str:
    """'dindcheck 0.1.0 (pytest 8.3.4, Python 3.11.7)'."""
    python = ".".join(map(str, sys.version_info[:3]))
    return f"dindcheck {__version__} (pytest {pytest.__version__}, Python {python})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite (exit code as `pytest suites`), or answer --version / --help without a cluster."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args or "-V" in args:
        sys.stdout.write(version_text() + "\n")
        return 0
    if "--help" in args or "-h" in args:
        sys.stdout.write(help_text(program_name()))
        return 0
    if PYTEST_HELP in args:
        return int(pytest.main([*pytest_args([]), "--help"], plugins=[_ProgramName(program_name())]))
    return int(pytest.main(pytest_args(args)))
