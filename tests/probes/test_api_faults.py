"""The API server away or throttling: calls wait within the bound, count the 429s, and lost evidence is never a pass."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import urllib3
from kubernetes.client.rest import ApiException

from dindcheck.plugin import RunState, _past_the_bound, _teardown
from probes import api
from probes.api import NOT_PROCESSED, ApiHealth, api_bound_s, api_call, retry_after_s
from probes.engine import Outcome, exec_open_failure, unless_evidence_lost
from probes.model import Status
from tests.probes.test_cleanup import OWN, FakeCore, Terminal


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        """The current time."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Let the time pass at once."""
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(api, "clock", fake)
    monkeypatch.setattr(api, "sleep", fake.sleep)
    monkeypatch.delenv(api.API_BOUND_ENV, raising=False)
    return fake


class Answers:
    """A fake API verb: raises the queued errors in turn (each at the clock's time), then answers 'ok'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, *_args: Any, **_kwargs: Any) -> str:
        """One call: the next queued error, else the answer."""
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def throttled(retry_after: str | None = "3") -> ApiException:
    """A 429 as API Priority and Fairness sends it."""
    exc = ApiException(status=429, reason="Too Many Requests")
    exc.headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return exc


def refused() -> urllib3.exceptions.MaxRetryError:
    """What the client raises while nothing listens on the API server's port."""
    reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: Connection refused")  # type: ignore[arg-type]
    return urllib3.exceptions.MaxRetryError(None, "/api/v1/pods", reason)  # type: ignore[arg-type]


def test_a_429_waits_as_retry_after_says_and_is_counted(clock: FakeClock) -> None:
    health = ApiHealth(clock)
    verb = Answers(throttled("3"), throttled("2"))
    assert api_call(verb, "ns", health=health) == "ok"
    assert clock.slept == [3.0, 2.0]
    throttling = health.throttling()
    assert throttling is not None
    assert (throttling.responses, throttling.waited_s) == (2, 5.0)
    assert health.outages() == (), "a throttling API server is there: no outage"


def test_a_429_without_retry_after_backs_off(clock: FakeClock) -> None:
    health = ApiHealth(clock)
    assert api_call(Answers(throttled(None), throttled(None)), health=health) == "ok"
    assert clock.slept == [0.5, 1.0]


def test_retry_after_is_read_in_seconds_and_ignored_when_unreadable() -> None:
    assert retry_after_s(throttled("1")) == 1.0
    assert retry_after_s(throttled("Wed, 21 Oct 2015 07:28:00 GMT")) is None
    assert retry_after_s(throttled(None)) is None


def test_an_api_away_for_20s_is_waited_out_within_the_default_bound(clock: FakeClock) -> None:
    health = ApiHealth(clock)
    away = [refused() for _ in range(6)] + [ApiException(status=503, reason="Service Unavailable")]
    verb = Answers(*away)
    started = clock.now
    assert api_call(verb, "ns", health=health) == "ok"
    assert 20 <= clock.now - started <= api_bound_s()
    (outage,) = health.outages()
    assert outage.reason == "connection refused"
    assert outage.end is not None, "the answer ended the outage"
    assert health.passed_bound == ""


def test_past_the_bound_the_last_error_is_raised_and_the_bound_recorded(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(api.API_BOUND_ENV, "10")
    health = ApiHealth(clock)
    verb = Answers(*(refused() for _ in range(50)))
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        api_call(verb, "ns", health=health)
    assert sum(clock.slept) <= 10
    assert health.passed_bound == "connection refused"
    assert health.outages()[0].end is None, "still away"


def test_an_explicit_short_deadline_is_not_the_runs_bound(clock: FakeClock) -> None:
    health = ApiHealth(clock)
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        api_call(Answers(*(refused() for _ in range(50))), deadline_s=2.0, health=health)
    assert health.passed_bound == "", "a best-effort read that gave up early says nothing of the bound"


def test_a_create_is_repeated_after_a_refused_connection_never_after_a_broken_one(clock: FakeClock) -> None:
    health = ApiHealth(clock)
    assert api_call(Answers(refused()), retried=NOT_PROCESSED, health=health) == "ok"
    broken = Answers(urllib3.exceptions.ProtocolError("Connection aborted."))
    with pytest.raises(urllib3.exceptions.ProtocolError):
        api_call(broken, retried=NOT_PROCESSED, health=health)
    assert broken.calls == 1
    assert health.away_now, "a broken connection is the API away all the same"


@pytest.mark.parametrize(("text", "bound"), [("5", 5.0), ("", 60.0), ("soon", 60.0), ("-1", 60.0)])
def test_the_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, text: str, bound: float) -> None:
    monkeypatch.setenv(api.API_BOUND_ENV, text)
    assert api_bound_s() == bound


@pytest.mark.parametrize(
    ("reason", "failure"),
    [
        ("[Errno 111] Connection refused", "connection refused"),
        ("Handshake status 429 Too Many Requests -+-+- {...}", "429"),
        ("Handshake status 503 Service Unavailable", "503 Service Unavailable (at the exec upgrade)"),
        ("Handshake status 404 Not Found", ""),
        ("Connection to remote host was lost.", ""),
    ],
)
def test_an_exec_is_opened_again_only_when_its_command_never_started(reason: str, failure: str) -> None:
    assert exec_open_failure(ApiException(status=0, reason=reason)) == failure


def test_the_ledger_says_when_the_api_was_away_and_for_how_long() -> None:
    clock = FakeClock()
    health = ApiHealth(clock)
    assert health.note() is None
    health.away("connection refused")
    clock.sleep(20)
    health.away("503 Service Unavailable")
    health.answered()
    (outage,) = health.outages()
    assert (outage.lasted_s(clock.now), outage.reason) == (20.0, "connection refused")
    assert health.outage_within(clock.now - 5, clock.now) == outage
    assert health.outage_within(clock.now + 1, clock.now + 2) is None
    assert health.note() == (
        "the API server was unavailable 1 time(s) during the run (longest 20s; first: connection refused): "
        "checks whose evidence it cut are inconclusive"
    )
    health.reset()
    assert health.outages() == ()


def probe_context(*channels_lost: str) -> Any:
    """What unless_evidence_lost reads of a probe's context."""
    return SimpleNamespace(channels_lost=list(channels_lost), health=api.HEALTH)


@pytest.fixture
def away_during_the_probe(monkeypatch: pytest.MonkeyPatch) -> ApiHealth:
    health = ApiHealth()
    monkeypatch.setattr(api, "HEALTH", health)
    health.away("connection refused")
    return health


@pytest.mark.parametrize("status", [Status.FAIL, Status.INCONCLUSIVE])
def test_a_verdict_reached_while_the_api_was_away_is_inconclusive_naming_it(
    away_during_the_probe: ApiHealth, status: Status
) -> None:
    seen = Outcome(status, "could not finish: pod gone", {"pod": "x"})
    outcome = unless_evidence_lost(seen, probe_context(), started=0.0)
    assert outcome.status is Status.INCONCLUSIVE
    assert "the API server was unavailable" in outcome.summary
    assert "connection refused" in outcome.summary
    assert "could not finish: pod gone" in outcome.summary
    assert outcome.evidence["api_unavailable"]["status_before"] == status.value
    assert outcome.evidence["pod"] == "x"


def test_a_pass_whose_exec_channel_the_outage_cut_is_not_a_pass(away_during_the_probe: ApiHealth) -> None:
    seen = Outcome(Status.PASS, "docker run works")
    outcome = unless_evidence_lost(seen, probe_context("exec into p/c: channel broke"), started=0.0)
    assert outcome.status is Status.INCONCLUSIVE
    assert outcome.evidence["api_unavailable"]["channels_lost"] == ["exec into p/c: channel broke"]


@pytest.mark.usefixtures("away_during_the_probe")
def test_a_whole_pass_and_a_policys_skip_stand() -> None:
    whole = Outcome(Status.PASS, "docker run works")
    assert unless_evidence_lost(whole, probe_context(), started=0.0) is whole
    skipped = Outcome(Status.SKIPPED, "not run: a pod it needs was rejected by PodSecurity")
    assert unless_evidence_lost(skipped, probe_context("x"), started=0.0) is skipped


def test_without_an_outage_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "HEALTH", ApiHealth())
    failed = Outcome(Status.FAIL, "nested docker run failed")
    assert unless_evidence_lost(failed, probe_context("x"), started=0.0) is failed


def test_cleanup_past_the_bound_deletes_nothing_and_says_what_to_delete(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(api.API_BOUND_ENV, "5")
    health = ApiHealth(clock)
    monkeypatch.setattr(api, "HEALTH", health)
    core = FakeCore()
    core.api_unavailable = [refused() for _ in range(50)]
    terminal = Terminal()
    _teardown(_teardown_state(core), terminal)
    assert core.pods == ["dc-run1-probe"], "nothing was deleted"
    (line,) = terminal.lines
    assert "the API server https://testbed:6443 did not answer within 5s (DINDCHECK_API_BOUND_S)" in line
    assert line.endswith(
        "(label dindcheck.io/run=run1): kubectl delete pods,persistentvolumeclaims,secrets -n dindcheck-run1 "
        "-l dindcheck.io/run=run1 --force --grace-period=0 --wait=false && kubectl delete namespace dindcheck-run1 "
        "--wait=false"
    )
    assert health.passed_bound == "connection refused"
    session: Any = SimpleNamespace(exitstatus=pytest.ExitCode.OK)
    _past_the_bound(session, terminal)
    assert session.exitstatus == pytest.ExitCode.USAGE_ERROR
    assert terminal.lines[-1] == (
        "dindcheck: the API server was unavailable for longer than 5s (DINDCHECK_API_BOUND_S; last: connection "
        "refused): exit 4"
    )


def test_cleanup_waits_for_an_api_that_comes_back_and_completes(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    health = ApiHealth(clock)
    monkeypatch.setattr(api, "HEALTH", health)
    core = FakeCore()
    core.api_unavailable = [refused() for _ in range(4)]
    core.volumes = {"pv-1": "Delete"}
    terminal = Terminal()
    _teardown(_teardown_state(core), terminal)
    assert core.pods == []
    assert any(line.startswith("dindcheck: probe objects deleted") for line in terminal.lines), terminal.lines
    session: Any = SimpleNamespace(exitstatus=pytest.ExitCode.OK)
    _past_the_bound(session, terminal)
    assert session.exitstatus == pytest.ExitCode.OK


def _teardown_state(core: FakeCore) -> RunState:
    return RunState(
        options=SimpleNamespace(keep=False),  # type: ignore[arg-type]
        connection=SimpleNamespace(core=core, server="https://testbed:6443"),  # type: ignore[arg-type]
        space=OWN,
    )


def test_the_registry_readback_through_the_pod_proxy_waits_out_a_refused_connection(clock: FakeClock) -> None:
    from probes.definitions._registry import via_pod_proxy  # noqa: PLC0415 - the one probe helper tested here

    proxy = Answers(refused(), ApiException(status=404, reason="Not Found"))
    ctx: Any = SimpleNamespace(
        core=SimpleNamespace(connect_get_namespaced_pod_proxy_with_path=proxy), scope=SimpleNamespace(namespace="ns")
    )
    readback = via_pod_proxy(ctx, "registry", 5000, "dindcheck/probe", "abc")
    assert proxy.calls == 2, "the refused connection was tried again"
    assert readback.not_found, "the registry's own answer (404) came through"
    assert clock.slept == [0.5]


class FleetClient:
    """An API client of one cluster of a fleet run (weak-referenceable, as the real ApiClient is)."""


class ApiOf:
    """An API object (as CoreV1Api is) whose verb answers as the given Answers do."""

    def __init__(self, api_client: FleetClient, answers: Answers) -> None:
        self.api_client = api_client
        self.answers = answers

    def read(self, *args: Any, **kwargs: Any) -> str:
        """The verb: whatever the queued answers say."""
        return self.answers(*args, **kwargs)


@pytest.mark.usefixtures("clock")
def test_each_cluster_of_a_fleet_keeps_its_own_ledger() -> None:
    """One cluster's outage must not make another cluster's verdicts inconclusive, nor its run exit 4."""
    down, up = FleetClient(), FleetClient()
    down_ledger, up_ledger = api.own_ledger(down), api.own_ledger(up)
    assert api.api_call(ApiOf(down, Answers(refused(), refused())).read) == "ok"
    assert api.api_call(ApiOf(up, Answers()).read) == "ok"
    assert len(down_ledger.outages()) == 1
    assert up_ledger.outages() == ()
    assert api.ledger_of(down) is down_ledger
    assert api.ledger_of(FleetClient()) is api.HEALTH, "a client without its own ledger records in the run's"
