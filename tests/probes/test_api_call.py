"""API calls ride out what the server will get over (429, 5xx, dropped connections) and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
import urllib3
from kubernetes.client.rest import ApiException

from probes.api import NOT_PROCESSED, api_call


class Answers:
    """A fake API verb: raises the queued errors in turn, then answers 'ok'; counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, *_args: Any, **kwargs: Any) -> str:
        """One call: the next queued error, else the answer."""
        self.calls += 1
        assert "_request_timeout" in kwargs, "every call has a deadline of its own"
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_throttling_and_server_errors_are_ridden_out_with_backoff() -> None:
    verb = Answers(ApiException(status=429, reason="Too Many Requests"), ApiException(status=503, reason="Unavailable"))
    assert api_call(verb, "ns") == "ok"
    assert verb.calls == 3


def test_a_dropped_connection_is_retried_for_a_read() -> None:
    verb = Answers(urllib3.exceptions.ProtocolError("Connection aborted."))
    assert api_call(verb, "ns") == "ok"
    assert verb.calls == 2


@pytest.mark.parametrize("status", [403, 404, 409, 422])
def test_a_refusal_that_will_not_change_is_raised_at_once(status: int) -> None:
    verb = Answers(ApiException(status=status, reason="no"))
    with pytest.raises(ApiException) as raised:
        api_call(verb, "ns")
    assert raised.value.status == status
    assert verb.calls == 1


def test_a_create_is_repeated_only_when_the_server_did_not_process_it() -> None:
    throttled = Answers(ApiException(status=429, reason="Too Many Requests"))
    assert api_call(throttled, "ns", retried=NOT_PROCESSED) == "ok"
    assert throttled.calls == 2
    for error in (ApiException(status=500, reason="Internal"), urllib3.exceptions.ProtocolError("aborted")):
        maybe_done = Answers(error)
        with pytest.raises(type(error)):
            api_call(maybe_done, "ns", retried=NOT_PROCESSED)
        assert maybe_done.calls == 1, f"a create that may have happened was repeated after {error!r}"


def test_the_deadline_ends_the_retries_with_the_last_error() -> None:
    verb = Answers(*(ApiException(status=503, reason="Unavailable") for _ in range(10)))
    with pytest.raises(ApiException) as raised:
        api_call(verb, "ns", deadline_s=1.0)
    assert raised.value.status == 503
    assert verb.calls == 2, "0.5 s backoff, then the next 1 s would pass the deadline"
