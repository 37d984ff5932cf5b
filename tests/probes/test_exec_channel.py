"""Only a command's own exit code is an answer; anything else the exec channel says is an error of the channel."""

from __future__ import annotations

import json

import pytest

from probes.engine import exit_code
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
