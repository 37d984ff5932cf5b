"""The node's docker.sock through hostPath (works = root on the node: discouraged)."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("host-socket")


def test_host_socket(probe_verdict: Verdict) -> None:
    """The node's Docker daemon answers through a hostPath socket."""
    expect_pass(probe_verdict)
