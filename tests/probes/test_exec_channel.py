"""Only a command's own exit code is an answer; anything else the exec channel says is an error of the channel."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from probes.engine import DEFAULT_TIMEOUT_S, ProbeContext, Progress, RunScope, Task, exit_code
from probes.exceptions import ExecChannelError

SUCCESS = json.dumps({"metadata": {}, "status": "Success"})
EXIT_3 = json.dumps(
    {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command [sh -c x], exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
)
CONTAINER_GONE = json.dumps(
    {
        "metadata": {},
        "status": "Failure",
        "message": 'container not found ("job")',
        "reason": "InternalError",
    }
)


def test_success_is_exit_code_zero() -> None:
    assert exit_code(SUCCESS) == 0


def test_non_zero_exit_code_is_the_commands_own() -> None:
    assert exit_code(EXIT_3) == 3


@pytest.mark.parametrize(
    ("status_text", "said"),
    [
        (CONTAINER_GONE, 'container not found ("job")'),
        ("", "closed without an exit status"),
        ("   \n", "closed without an exit status"),
        ("<html>bad gateway</html>", "unreadable status"),
        ("[1, 2]", "unreadable status"),
    ],
)
def test_anything_else_is_a_channel_error_with_its_own_words(status_text: str, said: str) -> None:
    with pytest.raises(ExecChannelError) as raised:
        exit_code(status_text)
    assert said in str(raised.value)


def test_a_non_zero_status_without_its_code_is_not_given_a_made_up_one() -> None:
    """NonZeroExitCode with no ExitCode cause says the command failed, not how: no code is better than a guess."""
    status = json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "message": "command terminated"})
    with pytest.raises(ExecChannelError, match="command terminated"):
        exit_code(status)


def test_only_the_exit_code_cause_counts() -> None:
    status = json.loads(EXIT_3)
    status["details"]["causes"].insert(0, {"reason": "Other", "message": "7"})
    assert exit_code(json.dumps(status)) == 3


class _FinishedChannel:
    """An exec channel whose command already ended with success."""

    def is_open(self) -> bool:
        return False

    def read_channel(self, channel: int) -> str:
        return SUCCESS if channel == 3 else ""

    def close(self) -> None:
        return None


class _RecordingContext(ProbeContext):
    """A context whose exec channel records the command it was asked to run."""

    commands: list[list[str]]

    def _open_exec(self, pod_name: str, container: str, command: list[str]) -> Any:
        del pod_name, container  # one pod, one container: only the command matters
        self.commands.append(command)
        return _FinishedChannel()


def _limit_in_pod(timeout_s: float, asked_s: float) -> int:
    connection: Any = SimpleNamespace(core=None, api_client=None)
    task = Task("p", "p", "", lambda _ctx: None)  # type: ignore[arg-type,return-value]
    ctx = _RecordingContext(task, connection, RunScope("ns", "r", timeout_s=timeout_s), Progress(), threading.Event())
    ctx.commands = []
    ctx.exec("pod", "c", "true", timeout_s=asked_s)
    words = ctx.commands[0][2].split()
    return int(words[words.index("timeout") + 1])


def test_a_command_gets_the_time_it_asks_for_at_the_default_timeout() -> None:
    assert _limit_in_pod(DEFAULT_TIMEOUT_S, 30) == 30
    assert _limit_in_pod(60, 30) == 30  # a shorter --timeout never cuts a command's own limit


def test_a_slow_node_run_scales_every_command_limit_with_the_one_flag() -> None:
    """--timeout 600 (five times the default) says the nodes are slow: each command gets five times its limit.

    On an emulated node the lsm check's 30 s read did not end within 45 s: inconclusive for the testbed's slowness.
    """
    assert _limit_in_pod(600, 30) == 150
    assert RunScope("ns", "r", timeout_s=600).slowness == 5
