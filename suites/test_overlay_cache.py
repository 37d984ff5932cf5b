"""overlayfs works where the build cache lives: emptyDir and the cache StorageClass."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("overlay-cache")


def test_overlay_cache(probe_verdict: Verdict) -> None:
    """An overlay mount with a whiteout works on emptyDir and on a PVC of the cache class."""
    expect_pass(probe_verdict)
