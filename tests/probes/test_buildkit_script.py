"""The rootless BuildKit build script, run in a real sh against a stand-in buildctl.

On the emulated vm node a build failed `error: NotFound: forwarding Ping: no such job ...`: BuildKit's gateway waits
a fixed 3 s for a build to register, and that node was slower at that moment. Such a build is retried once and the
pass says so; a second miss proves nothing; any other failure is not retried.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from probes.definitions import _registry, buildkit_rootless
from probes.engine import CommandResult, key_values
from probes.model import Status

MISSED_WINDOW = "error: NotFound: forwarding Ping: no such job oh2lwqeux8h6oov87u6gjxeq7"
REF = "localhost:5000/dindcheck/probe:run1"


def stand_in_buildctl(tmp_path: Path, failures: int, error: str) -> dict[str, str]:
    """A buildctl whose first FAILURES builds fail with ERROR; then it builds and writes the digest."""
    fake = tmp_path / "bin" / "buildctl"
    fake.parent.mkdir()
    fake.write_text(
        f"""#!/bin/sh
case "$1" in
  debug) echo "org.mobyproject.buildkit.worker.snapshotter:overlayfs" ;;
  build)
    n=$(cat "{tmp_path}/attempts" 2>/dev/null || echo 0); n=$((n+1)); echo "$n" > "{tmp_path}/attempts"
    if [ "$n" -le {failures} ]; then echo "{error}" >&2; exit 1; fi
    while [ $# -gt 0 ]; do [ "$1" = --metadata-file ] && meta=$2; shift; done
    echo '{{"containerimage.digest":"sha256:0123abcd"}}' > "$meta" ;;
esac
"""
    )
    fake.chmod(0o755)
    return {"PATH": f"{fake.parent}:/usr/bin:/bin", "TMPDIR": str(tmp_path)}


def run_script(tmp_path: Path, failures: int, error: str = MISSED_WINDOW) -> CommandResult:
    env = stand_in_buildctl(tmp_path, failures, error)
    variables = f"REF='{REF}'; BASE='localhost:5000/dindcheck/base:run1'; RUN_ID='run1'; INSECURE=''\n"
    script = variables + _registry.BUILD_CONTEXTS + buildkit_rootless.BUILD_AND_PUSH
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    return CommandResult(done.returncode, done.stdout, done.stderr, 0.1)


def attempts(tmp_path: Path) -> int:
    return int((tmp_path / "attempts").read_text())


def test_a_build_that_missed_the_registration_window_is_retried_once_and_the_pass_says_so(tmp_path: Path) -> None:
    result = run_script(tmp_path, failures=1)
    values = key_values(result.stdout)
    assert values["base"] == "ok", result.stdout
    assert MISSED_WINDOW in values["base_retried"]
    assert values["build_push"] == "ok"
    assert attempts(tmp_path) == 3
    outcome = buildkit_rootless.verdict(result, REF, {})
    assert outcome.status is Status.PASS, outcome.summary
    assert "base retried once: BuildKit had not registered the build within its 3 s window" in outcome.summary


def test_a_second_miss_proves_nothing(tmp_path: Path) -> None:
    result = run_script(tmp_path, failures=2)
    assert key_values(result.stdout)["base"] == "failed"
    assert attempts(tmp_path) == 2
    outcome = buildkit_rootless.verdict(result, REF, {})
    assert outcome.status is Status.INCONCLUSIVE
    assert "did not register the build within its 3 s window, twice" in outcome.summary


@pytest.mark.parametrize("error", ["error: failed to solve: process did not complete successfully: exit code: 1"])
def test_other_failures_are_not_retried(tmp_path: Path, error: str) -> None:
    result = run_script(tmp_path, failures=1, error=error)
    values = key_values(result.stdout)
    assert values["base"] == "failed"
    assert "base_retried" not in values
    assert attempts(tmp_path) == 1
    assert buildkit_rootless.verdict(result, REF, {}).status is Status.FAIL


def test_a_clean_build_says_nothing_of_retries(tmp_path: Path) -> None:
    result = run_script(tmp_path, failures=0)
    outcome = buildkit_rootless.verdict(result, REF, {})
    assert outcome.status is Status.PASS
    assert "retried" not in outcome.summary
