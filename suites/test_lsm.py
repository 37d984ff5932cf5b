"""AppArmor/SELinux and user-namespace settings, read from an ordinary pod."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("lsm")


def test_lsm(probe_verdict: Verdict) -> None:
    """No observed LSM or userns setting blocks a mode."""
    expect_pass(probe_verdict)
