"""`--sweep` alone: what it removed and spared, exit 0, and nothing of pytest's interruption banner."""

from __future__ import annotations

import pytest

from tests.plugin.fixed_runner import conftest, probe_tests, with_sweep_finding

pytest_plugins = ("pytester",)

REMOVED = "dindcheck: sweep: removed dead run ab12c (its lease dc-ab12c in team-ci was not renewed for 75s): pod/x"


def sweep_only(pytester: pytest.Pytester, lines: tuple[str, ...], removed: tuple[str, ...]) -> pytest.RunResult:
    pytester.makeconftest(conftest(with_sweep_finding, lines, removed, ("fe3d1 (alive: renewed 4s ago)",)))
    pytester.makepyfile(test_probe=probe_tests("lsm"))
    return pytester.runpytest_subprocess("-p", "dindcheck.plugin", "--sweep")


@pytest.mark.parametrize(
    ("lines", "removed", "said"),
    [((REMOVED,), ("ab12c",), REMOVED), ((), (), "dindcheck: sweep: no dead run's objects found")],
    ids=["removed", "nothing-found"],
)
def test_sweep_only_says_what_it_did_and_exits_0_without_a_banner(
    pytester: pytest.Pytester, lines: tuple[str, ...], removed: tuple[str, ...], said: str
) -> None:
    """Before: pytest.exit's '!!!!! _pytest.outcomes.Exit: dindcheck: --sweep done, no probe ran !!!!!' closed it."""
    result = sweep_only(pytester, lines, removed)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.OK, output
    assert said in output
    assert "dindcheck: sweep: left alone: fe3d1 (alive: renewed 4s ago)" in output
    assert "dindcheck: --sweep done, no probe ran" in output
    assert "!!!" not in output
    assert "Exit" not in output
    assert "test_probe.py" not in output, "nothing was collected or run"
