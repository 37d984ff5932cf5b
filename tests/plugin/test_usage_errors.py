"""Bad input ends in one clear line and pytest's usage-error exit code, within seconds, never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dindcheck.options import parse_quantities
from probes.exceptions import UsageError
from tests.plugin.fixed_runner import probe_tests

pytest_plugins = ("pytester",)

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: "t"}}
contexts:
- name: ctx
  context: {{cluster: c, user: u}}
current-context: ctx
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_probe=probe_tests("lsm"))
    return pytester.runpytest_subprocess("-p", "dindcheck.plugin", *args)


def assert_one_clear_line(result: pytest.RunResult, fragment: str) -> None:
    __tracebackhide__ = True
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    output = result.stdout.str() + result.stderr.str()
    assert fragment in output
    assert "Traceback" not in output


def test_unknown_mode(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--require-mode", "docker")
    assert_one_clear_line(result, "--require-mode 'docker' is not a mode")


def test_non_positive_timeout(pytester: pytest.Pytester) -> None:
    assert_one_clear_line(run(pytester, "--timeout", "0"), "--timeout must be a positive number")


def test_dind_env_that_is_no_assignment(pytester: pytest.Pytester) -> None:
    assert_one_clear_line(run(pytester, "--dind-env", "DOCKER_MIN_API_VERSION"), "expected KEY=VALUE")
    assert_one_clear_line(run(pytester, "--dind-env", "1BAD=x"), "expected KEY=VALUE")


@pytest.mark.parametrize("value", ["system_u:system_r:spc_t:s0", "spc t", ""])
def test_a_selinux_type_that_is_no_type_name(pytester: pytest.Pytester, value: str) -> None:
    """Only a type (spc_t) goes in seLinuxOptions.type: a whole label or a blank would be refused by the API server."""
    assert_one_clear_line(run(pytester, "--selinux-type", value), f"--selinux-type {value!r} is not an SELinux type")


def test_missing_kubeconfig(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--kubeconfig", str(pytester.path / "nope.yaml"))
    assert_one_clear_line(result, "kubeconfig not found")


def test_malformed_kubeconfig(pytester: pytest.Pytester) -> None:
    bad = pytester.path / "bad.yaml"
    bad.write_text("clusters: [unclosed\n")
    assert_one_clear_line(run(pytester, "--kubeconfig", str(bad)), "is not valid YAML")


def test_kubeconfig_without_contexts(pytester: pytest.Pytester) -> None:
    empty = pytester.path / "empty.yaml"
    empty.write_text("apiVersion: v1\nkind: Config\n")
    assert_one_clear_line(run(pytester, "--kubeconfig", str(empty)), "has no contexts")


def test_unknown_context(pytester: pytest.Pytester) -> None:
    config = pytester.path / "kc.yaml"
    config.write_text(KUBECONFIG.format(server="https://127.0.0.1:1"))
    result = run(pytester, "--kubeconfig", str(config), "--context", "elsewhere")
    assert_one_clear_line(result, "context 'elsewhere' not found")


def test_unreachable_api_server_is_fast(pytester: pytest.Pytester) -> None:
    config = pytester.path / "kc.yaml"
    config.write_text(KUBECONFIG.format(server="https://127.0.0.1:1"))
    started = time.monotonic()
    result = run(pytester, "--kubeconfig", str(config), "--kubectl", "/bin/true")
    assert_one_clear_line(result, "is unreachable")
    assert time.monotonic() - started < 30


def test_no_kubectl_is_needed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exec goes through the API server: without kubectl on PATH the run gets as far as the API server."""
    config = pytester.path / "kc.yaml"
    config.write_text(KUBECONFIG.format(server="https://127.0.0.1:1"))
    python_dir = Path(__import__("sys").executable).parent
    monkeypatch.setenv("PATH", str(python_dir))
    result = run(pytester, "--kubeconfig", str(config))
    assert_one_clear_line(result, "is unreachable")
    assert "kubectl not found" not in result.stdout.str() + result.stderr.str()


def test_unknown_probe_in_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_other="""
import pytest
@pytest.mark.probe("no-such-probe")
def test_x(probe_verdict):
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "dindcheck.plugin", "test_other.py")
    assert_one_clear_line(result, "unknown probe 'no-such-probe'")


def test_collect_only_touches_no_cluster(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--collect-only", "--kubeconfig", str(pytester.path / "absent.yaml"))
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_lsm*"])


def test_runs_without_probe_tests_need_no_cluster(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess(
        "-p", "dindcheck.plugin", "test_plain.py", "--kubeconfig", str(pytester.path / "absent.yaml")
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(("option", "value"), [("--pod-requests", "bogus"), ("--pod-limits", "cpu=1,memory=")])
def test_bad_pod_resources_are_one_line(pytester: pytest.Pytester, option: str, value: str) -> None:
    result = run(pytester, option, value)
    assert_one_clear_line(result, f"{option} {value!r}: expected NAME=QUANTITY")
    said = [line for line in result.stdout.lines + result.stderr.lines if line.strip()]
    assert said == [f"ERROR: {option} {value!r}: expected NAME=QUANTITY[,NAME=QUANTITY] such as cpu=100m,memory=128Mi"]


def test_pod_resources_parse_and_may_be_empty() -> None:
    assert parse_quantities("--pod-requests", " cpu=100m , memory=128Mi ") == {"cpu": "100m", "memory": "128Mi"}
    assert parse_quantities("--pod-limits", "") == {}


def test_a_value_that_is_no_quantity_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="lots"):
        parse_quantities("--pod-requests", "cpu=lots")


def test_sweep_and_no_sweep_contradict_each_other(pytester: pytest.Pytester) -> None:
    assert_one_clear_line(run(pytester, "--sweep", "--no-sweep"), "--sweep and --no-sweep contradict each other")


def test_a_lease_duration_out_of_range_is_refused_before_anything_is_made(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINDCHECK_LEASE_STALE_S", "120")
    assert_one_clear_line(run(pytester), "DINDCHECK_LEASE_STALE_S=120 is out of range: 1 to 60 seconds")


def test_sweep_against_an_unreachable_api_server_is_one_line(pytester: pytest.Pytester) -> None:
    config = pytester.path / "kc.yaml"
    config.write_text(KUBECONFIG.format(server="https://127.0.0.1:1"))
    started = time.monotonic()
    assert_one_clear_line(run(pytester, "--kubeconfig", str(config), "--sweep"), "is unreachable")
    assert time.monotonic() - started < 30
