"""A verdict maps to exactly one pytest outcome: never a pass that was not proven."""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)

OUTCOMES = """
import pytest
from dindcheck.plugin import expect_pass
from probes.model import Status, Verdict

def verdict(status, **evidence):
    return Verdict("docker-run", "docker-run", status, "summary text", evidence, "remediation text", 1.5)

def test_pass():
    expect_pass(verdict(Status.PASS))

def test_fail():
    expect_pass(verdict(Status.FAIL))

def test_inconclusive():
    expect_pass(verdict(Status.INCONCLUSIVE))

def test_skipped():
    expect_pass(verdict(Status.SKIPPED))

def test_internal_error():
    expect_pass(verdict(Status.INCONCLUSIVE, internal_error="Traceback: boom"))
"""


def test_each_status_has_its_outcome(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_outcomes=OUTCOMES)
    result = pytester.runpytest_subprocess("-p", "dindcheck.plugin", "-rfs")
    result.assert_outcomes(passed=1, failed=2, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*docker-run failed: summary text*",
            "*remediation: remediation text*",
            "*SKIPPED*docker-run inconclusive: summary text*",
            "*SKIPPED*docker-run skipped: summary text*",
        ]
    )
    assert "boom" in result.stdout.str()
