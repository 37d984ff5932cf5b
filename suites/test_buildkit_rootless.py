"""Rootless BuildKit builds and pushes without privileged; the manifest is read back."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("buildkit-rootless")


def test_buildkit_rootless(probe_verdict: Verdict) -> None:
    """BuildKit's rootless reference pod builds, pushes, and the registry serves the pushed manifest."""
    expect_pass(probe_verdict)
