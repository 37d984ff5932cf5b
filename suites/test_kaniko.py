"""Kaniko builds and pushes as root without privileged or a user namespace; the manifest is read back."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("kaniko")


def test_kaniko(probe_verdict: Verdict) -> None:
    """The Kaniko executor builds FROM a pulled base with a RUN step, pushes, and the registry serves it."""
    expect_pass(probe_verdict)
