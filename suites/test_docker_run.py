"""A nested docker run works inside the DinD sidecar, from an image made in the pod."""

from __future__ import annotations

import pytest

from dindcheck.plugin import expect_pass
from probes.model import Verdict

pytestmark = pytest.mark.probe("docker-run")


def test_docker_run(probe_verdict: Verdict) -> None:
    """An image imported in the pod runs on the nested dockerd's bridge network."""
    expect_pass(probe_verdict)
