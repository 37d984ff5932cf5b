"""Privileged DinD pods are admitted (dry-run of every mode's spec) and a real one runs."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("privileged-admission")


def test_privileged_admission(probe_verdict: Verdict) -> None:
    """A privileged pod is admitted by every admission layer and actually runs on a node."""
    expect_pass(probe_verdict)
