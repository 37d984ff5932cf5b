"""A profile gate skips before the costly fixtures of the tests it gates (a wheel build, a whole suite run).

pytest sets every session fixture of a test up before its function-scoped ones, whatever their order: a
function-scoped gate let each profile build the wheel and run the installed suite only to skip (about 30 s a
profile in CI). The setup plan shows the order without a cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COSTLY = ("installed", "installed_run")
"""Session fixtures of permissive-only tests that cost a wheel build or a suite run."""


def setup_plan() -> list[str]:
    """The conformance suite's fixture setup order (`--setup-plan` runs nothing)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "testbed/conformance", "--setup-plan", "-p", "no:cacheprovider", "-q"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "SETUP" in done.stdout, done.stdout + done.stderr
    return [line.strip() for line in done.stdout.splitlines()]


def test_the_permissive_gate_is_set_up_before_the_costly_fixtures_it_gates() -> None:
    plan = setup_plan()
    setups = [line.split()[2] for line in plan if line.startswith("SETUP    S ")]
    assert "permissive" in setups, "the permissive gate is not session-scoped: session fixtures go first"
    for costly in COSTLY:
        assert setups.index("permissive") < setups.index(costly), f"{costly} is set up before the gate"
