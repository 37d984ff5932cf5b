"""A dockerd sidecar serves a job container through a socket on a shared emptyDir."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("socket-sharing")


def test_socket_sharing(probe_verdict: Verdict) -> None:
    """The job container reaches dockerd over the shared socket (classic or native sidecar)."""
    expect_pass(probe_verdict)
