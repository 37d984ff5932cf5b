"""--show-config and --config-dir through the plugin's real session: stdout carries only the YAML of what ran.

The cluster part is replaced by the permissive testbed profile's verdicts (tests/reports/conftest.py), tested specs
included, so the config is the one those specs give.
"""

from __future__ import annotations

import sys

import pytest
import yaml

import reports
from reports import paste
from tests.plugin.fixed_runner import CHECKOUT_ROOT, make_probe_modules
from tests.reports.conftest import permissive

pytest_plugins = ("pytester",)

PERMISSIVE_CLUSTER = f"""import sys

sys.path.append({str(CHECKOUT_ROOT)!r})

from tests.plugin import fixed_runner
from tests.reports.conftest import permissive

fixed_runner._start_with(
    lambda state: {{v.id: v for v in permissive().verdicts if v.id in state.selected}}, load_baselines=False
)
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Every permissive verdict's test, as `pytest suites` runs them, with args."""
    pytester.makeconftest(PERMISSIVE_CLUSTER)
    make_probe_modules(pytester, *(v.id for v in permissive().verdicts))
    return pytester.runpytest_subprocess("-p", "dindcheck.plugin", *args)


def expected(which: str) -> str:
    return paste.show(reports.build_report(permissive()), which).yaml


def test_show_config_recommended_prints_only_the_yaml_on_stdout(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--show-config", "recommended")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # exit codes as ever: host-socket and sysbox fail here
    assert "\n".join(result.outlines) + "\n" == expected("recommended")
    assert [doc["kind"] for doc in yaml.safe_load_all(result.stdout.str())] == ["Pod", "Pod"]
    result.stderr.fnmatch_lines(
        [
            "*dindcheck compatibility report*",
            "config to paste: printed on stdout (--show-config recommended)",
            "proved nothing: *",
        ]
    )


def test_show_config_of_a_mode_that_is_not_usable_prints_nothing_and_says_why(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--show-config", "sysbox")
    assert result.stdout.str() == ""
    result.stderr.fnmatch_lines(["dindcheck: --show-config sysbox: sysbox is not usable (blocked by sysbox)*"])


def test_show_config_takes_a_mode_or_recommended(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--show-config", "docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--show-config 'docker': choose one of: recommended, *"])


def test_config_dir_writes_the_files_and_the_terminal_says_where(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--config-dir", "config")
    written = sorted(path.name for path in (pytester.path / "config").iterdir())
    assert written == ["buildkit-rootless.yaml", "dind.yaml", "skypilot.yaml"]
    assert (pytester.path / "config" / "dind.yaml").read_text() == expected("dind")
    result.stdout.fnmatch_lines(
        [
            "dindcheck: config to paste written to config: skypilot.yaml, dind.yaml, buildkit-rootless.yaml",
            "*",
            "config to paste: written to config (skypilot.yaml, dind.yaml, buildkit-rootless.yaml)",
        ],
        consecutive=False,
    )


def test_the_installed_command_pipes_the_same_yaml(pytester: pytest.Pytester) -> None:
    """`dindcheck --show-config recommended | kubectl apply -f -`: the command's stdout is the YAML alone too."""
    pytester.makepyfile(permissive_cluster=PERMISSIVE_CLUSTER)
    selected = " or ".join(v.id.replace("-", "_") for v in permissive().verdicts)
    result = pytester.run(
        sys.executable, "-m", "dindcheck", "-p", "permissive_cluster", "-k", selected, "--show-config", "recommended"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stderr.str()
    assert "\n".join(result.outlines) + "\n" == expected("recommended")
    result.stderr.fnmatch_lines([f"*{len(permissive().verdicts)} selected*"])
