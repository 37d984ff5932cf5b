"""A throttled run says so: the JSON report's `throttled` block, one line in the terminal and Markdown reports."""

from __future__ import annotations

import copy
from dataclasses import replace

import jsonschema
import pytest

import reports
from probes.model import RunResult, Throttling
from reports import json_report

THROTTLED = Throttling(responses=37, waited_s=41.04)
LINE = "API server throttling: 37 request(s) answered 429 Too Many Requests, 41.0s waited as Retry-After asked"


def test_a_throttled_run_has_the_block_and_it_validates(profile_run: RunResult) -> None:
    report = reports.build_report(replace(profile_run, throttled=THROTTLED)).json
    assert report["throttled"] == {"responses": 37, "waited_s": 41.0}
    assert json_report.validate(report) is True


def test_a_run_never_throttled_has_no_block(profile_run: RunResult) -> None:
    assert "throttled" not in reports.build_report(profile_run).json


def test_the_schema_refuses_a_block_that_counts_nothing(profile_run: RunResult) -> None:
    report = copy.deepcopy(reports.build_report(replace(profile_run, throttled=THROTTLED)).json)
    report["throttled"]["responses"] = 0
    with pytest.raises(jsonschema.ValidationError):
        json_report.validate(report)


def test_terminal_and_markdown_say_it_in_one_line(profile_run: RunResult) -> None:
    report = reports.build_report(replace(profile_run, throttled=THROTTLED))
    assert reports.render_terminal(report).count(LINE) == 1
    assert reports.render_markdown(report).splitlines().count(LINE + ".") == 1
    quiet = reports.build_report(profile_run)
    assert not any("throttling" in line for line in reports.render_terminal(quiet))
    assert "throttling" not in reports.render_markdown(quiet)
