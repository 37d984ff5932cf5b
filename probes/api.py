"""Calling the API server through its bad moments: throttling (429), restarts (refused connections, 503), and a bound.

An API server that restarts (an upgrade) or throttles (API Priority and Fairness) is not a fact about docker-in-pod
builds: every call rides it out, honouring Retry-After, for at most DINDCHECK_API_BOUND_S. What it met is kept in one
ledger for the run (HEALTH): the report says the run was throttled, a check whose evidence the API's absence cut is
inconclusive naming it, and a run that met an API away for longer than the bound exits non-zero.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes.client.rest import ApiException

from probes.model import Throttling

API_TIMEOUT_S = 15.0
API_BOUND_ENV = "DINDCHECK_API_BOUND_S"
API_BOUND_DEFAULT_S = 60.0
"""How long a call waits for an API server that is away (refused connections, 503) or throttling, by default."""
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
"""Answers of a server that is restarting or overloaded (or of a proxy in front of it): the API is away."""
RETRIED_STATUSES = frozenset({429, 500}) | UNAVAILABLE_STATUSES
NOT_PROCESSED = frozenset({429})
"""A create is retried only when the server said it did nothing: after a 5xx it may exist, and a retry would 409.
A connection the server never accepted (refused) did nothing either: that too is retried for a create."""
MAX_BACKOFF_S = 5.0

T = TypeVar("T")


def api_bound_s() -> float:
    """DINDCHECK_API_BOUND_S (seconds, > 0), else the default: how long the run waits for an API that is away."""
    text = os.environ.get(API_BOUND_ENV, "").strip()
    try:
        value = float(text) if text else API_BOUND_DEFAULT_S
    except ValueError:
        return API_BOUND_DEFAULT_S
    return value if value > 0 else API_BOUND_DEFAULT_S


@dataclass(frozen=True)
class Outage:
    """A time the API server was away: from the first failed call to the next answer (or still away: end None)."""

    start: float
    """time.monotonic() of the first call that found it away."""
    end: float | None
    reason: str
    """The first failure in the client's words (connection refused, 503 ...)."""

    def lasted_s(self, now: float) -> float:
        """How long it lasted (until now, while it lasts)."""
        return (self.end if self.end is not None else now) - self.start

    def overlaps(self, start: float, end: float) -> bool:
        """Whether it fell (partly) within [start, end]."""
        return self.start <= end and (self.end is None or self.end >= start)


class ApiHealth:
    """What the API server did to this run's calls, shared by every thread: throttling, outages, a bound passed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._throttled = 0
        self._waited_s = 0.0
        self._outages: list[Outage] = []
        self._bound_passed = ""

    def reset(self) -> None:
        """Forget everything (a new run)."""
        with self._lock:
            self._throttled, self._waited_s, self._outages, self._bound_passed = 0, 0.0, [], ""

    def throttled(self, wait_s: float) -> None:
        """One 429, and the wait it asked for."""
        with self._lock:
            self._throttled += 1
            self._waited_s += wait_s

    def away(self, reason: str) -> None:
        """A call found the API away: an outage starts now unless one is open."""
        with self._lock:
            if not self._outages or self._outages[-1].end is not None:
                self._outages.append(Outage(self._clock(), None, reason))

    def answered(self) -> None:
        """The API answered (whatever it said): an open outage ends."""
        with self._lock:
            if self._outages and self._outages[-1].end is None:
                last = self._outages[-1]
                self._outages[-1] = Outage(last.start, self._clock(), last.reason)

    def bound_passed(self, what: str) -> None:
        """A wait for the API passed DINDCHECK_API_BOUND_S: the run ends non-zero (what: the call that gave up)."""
        with self._lock:
            self._bound_passed = self._bound_passed or what

    @property
    def passed_bound(self) -> str:
        """What gave up waiting for the API ('' when nothing did)."""
        with self._lock:
            return self._bound_passed

    @property
    def away_now(self) -> bool:
        """Whether the last call found the API away (no answer since)."""
        with self._lock:
            return bool(self._outages) and self._outages[-1].end is None

    def throttling(self) -> Throttling | None:
        """The run's throttling, None when it was never throttled."""
        with self._lock:
            return Throttling(self._throttled, self._waited_s) if self._throttled else None

    def outages(self) -> tuple[Outage, ...]:
        """Every outage so far, oldest first."""
        with self._lock:
            return tuple(self._outages)

    def outage_within(self, start: float, end: float) -> Outage | None:
        """The first outage that fell within [start, end] (a probe's lifetime), None when the API stayed."""
        return next((outage for outage in self.outages() if outage.overlaps(start, end)), None)

    def note(self) -> str | None:
        """A cluster note for the report: when the API server was away during the run, and how long."""
        outages = self.outages()
        if not outages:
            return None
        now = self._clock()
        longest = max(outage.lasted_s(now) for outage in outages)
        return (
            f"the API server was unavailable {len(outages)} time(s) during the run (longest {longest:.0f}s; first: "
            f"{outages[0].reason}): checks whose evidence it cut are inconclusive"
        )

    def unavailable_summary(self, outage: Outage) -> str:
        """Why a check concluded nothing: the API server was away while it ran."""
        lasted = outage.lasted_s(self._clock())
        still = " and is still away" if outage.end is None else ""
        return f"the API server was unavailable for {lasted:.0f}s while it ran ({outage.reason}){still}"


HEALTH = ApiHealth()
"""The ledger of every API client not given its own: a run of one cluster keeps everything here."""
_LEDGERS: weakref.WeakKeyDictionary[Any, ApiHealth] = weakref.WeakKeyDictionary()


def own_ledger(api_client: Any) -> ApiHealth:
    """Give one API client (one cluster of a fleet run) a ledger of its own: one cluster's outage is not another's."""
    try:
        ledger = _LEDGERS.get(api_client)
        if ledger is None:
            ledger = _LEDGERS[api_client] = ApiHealth()
    except TypeError:  # not weak-referenceable: not an API client (a test's stand-in)
        return HEALTH
    return ledger


def ledger_of(api_client: Any) -> ApiHealth:
    """The ledger a client's calls are recorded in: its own (own_ledger), else the run's HEALTH."""
    try:
        return _LEDGERS.get(api_client, HEALTH)
    except TypeError:  # not weak-referenceable: not an API client (a test's stand-in)
        return HEALTH


def _ledger_of_call(call: Callable[..., Any]) -> ApiHealth:
    """The ledger of the client behind a bound API method (CoreV1Api.read_pod, ApiClient.call_api)."""
    owner = getattr(call, "__self__", None)
    return ledger_of(getattr(owner, "api_client", owner))


"""The run's ledger (a run is one process: the plugin resets it when a run starts)."""


def retry_after_s(exc: ApiException) -> float | None:
    """The seconds a 429 (or 503) asked the client to wait (Retry-After in seconds), None when it did not say."""
    headers: Mapping[str, str] | None = exc.headers
    text = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after") or ""
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def never_sent(exc: BaseException) -> bool:
    """Whether the request never reached the server (no connection was made): repeating it cannot do anything twice."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    return isinstance(
        exc, urllib3.exceptions.NewConnectionError | ConnectionRefusedError | urllib3.exceptions.ConnectTimeoutError
    )


def failure_text(exc: BaseException) -> str:
    """A failed call in a few words: connection refused, 503 Service Unavailable ..."""
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = " ".join(str(exc).split())
    if "refused" in text.lower():
        return "connection refused"
    return text[-160:] or type(exc).__name__


sleep: Callable[[float], None] = time.sleep
clock: Callable[[], float] = time.monotonic
"""How api_call waits and reads the time (a test replaces both with a fake clock)."""


def api_call(
    call: Callable[..., T],
    *args: Any,
    deadline_s: float | None = None,
    retried: frozenset[int] = RETRIED_STATUSES,
    timeout_s: float = API_TIMEOUT_S,
    health: ApiHealth | None = None,
    **kwargs: Any,
) -> T:
    """Call the API, riding out throttling (429, after its Retry-After), an API away and server errors, with backoff.

    deadline_s: how long to keep trying (default DINDCHECK_API_BOUND_S). A refusal that will not change (403, 404,
    409, 422) is raised at once; the caller decides what it means. Creates pass retried=NOT_PROCESSED: only a call
    the server did not process (429, a refused connection) is safe to repeat. Passing the default bound while the
    API is away is recorded: the run ends non-zero.
    """
    ledger = health or _ledger_of_call(call)
    bound = deadline_s is None
    deadline = clock() + (api_bound_s() if deadline_s is None else deadline_s)
    delay = 0.5
    while True:
        try:
            result = call(*args, _request_timeout=timeout_s, **kwargs)
        except ApiException as exc:
            status = int(exc.status or 0)
            if status not in retried:
                ledger.answered()
                raise
            asked = retry_after_s(exc) if status in (429, 503) else None
            pause = asked if asked is not None else delay  # honoured as asked: the bound alone limits it
            if status in UNAVAILABLE_STATUSES:
                ledger.away(failure_text(exc))
            else:
                ledger.answered()
            if clock() + pause > deadline:
                if bound and status in UNAVAILABLE_STATUSES | {429}:
                    ledger.bound_passed(failure_text(exc))
                raise
            if status == 429:
                ledger.throttled(pause)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            ledger.away(failure_text(exc))
            if retried == NOT_PROCESSED and not never_sent(exc):
                raise
            pause = delay
            if clock() + pause > deadline:
                if bound:
                    ledger.bound_passed(failure_text(exc))
                raise
        else:
            ledger.answered()
            return result
        sleep(pause)
        delay = min(delay * 2, MAX_BACKOFF_S)


def wait_until_answering(probe: Callable[[], Any], wait_s: float, health: ApiHealth | None = None) -> bool:
    """Wait (at most wait_s) until the API answers probe(); whether it did. A bound passed is recorded."""
    health = health or _ledger_of_call(probe)
    try:
        api_call(probe, deadline_s=wait_s, timeout_s=5.0, health=health)
    except ApiException as exc:
        if exc.status not in UNAVAILABLE_STATUSES | {429}:
            return True  # an answer, even a refusal, is an API that is back
        health.bound_passed(failure_text(exc))
        return False
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        health.bound_passed(failure_text(exc))
        return False
    return True
