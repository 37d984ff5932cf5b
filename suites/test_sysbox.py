"""The sysbox-runc RuntimeClass is present and a pod using it starts."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("sysbox")


def test_sysbox(probe_verdict: Verdict) -> None:
    """A pod with runtimeClassName sysbox-runc runs."""
    expect_pass(probe_verdict)
