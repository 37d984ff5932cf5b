"""Cloud Native Buildpacks build from source and push in the Pod Security restricted shape; the push is read back."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("buildpacks")


def test_buildpacks(probe_verdict: Verdict) -> None:
    """The CNB lifecycle's creator builds an app from source as a non-root user with no capabilities, and pushes it."""
    expect_pass(probe_verdict)
