"""The run's Lease: how long it lasts, when it is stale, and how it is made, renewed, kept and deleted.

A stale verdict on a live run's Lease would let another run's sweep delete its objects mid-probe; a Lease never
stale would leave a killed run's objects for ever. Both edges are pinned here, without a cluster.
"""

from __future__ import annotations

import datetime as dt
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from dindcheck.plugin import RunState, _teardown
from probes import lease
from probes.cluster import required_permissions
from probes.exceptions import UsageError
from probes.workspace import Workspace

NOW = dt.datetime(2026, 12, 5, 8, 0, 0, tzinfo=dt.UTC)


def test_the_default_duration_is_sixty_seconds_renewed_every_ten() -> None:
    assert lease.stale_after_s({}) == 60
    assert lease.renew_every_s(60) == 10.0


def test_a_short_test_duration_is_renewed_three_times_within_it() -> None:
    assert lease.stale_after_s({lease.STALE_ENV: "6"}) == 6
    assert lease.renew_every_s(6) == 2.0


@pytest.mark.parametrize("value", ["0", "61", "-5", "ten", "1.5"])
def test_a_test_duration_out_of_range_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match=lease.STALE_ENV):
        lease.stale_after_s({lease.STALE_ENV: value})


def test_a_lease_is_live_until_its_duration_has_passed() -> None:
    assert not lease.is_stale(NOW - dt.timedelta(seconds=60), 60, NOW)
    assert lease.is_stale(NOW - dt.timedelta(seconds=61), 60, NOW)


def test_a_lease_is_judged_by_its_own_duration_not_the_sweepers() -> None:
    """A run renewing every 10 s (60 s lease) is not dead to a sweeper started with a 5 s test bound."""
    assert not lease.is_stale(NOW - dt.timedelta(seconds=20), 60, NOW)
    assert lease.is_stale(NOW - dt.timedelta(seconds=20), 10, NOW)


@pytest.mark.parametrize("declared", [None, 0, -1, 3600])
def test_a_missing_or_foreign_duration_is_held_to_sixty_seconds(declared: int | None) -> None:
    assert lease.clamped_duration(declared) == 60
    assert lease.is_stale(NOW - dt.timedelta(seconds=61), declared, NOW)


def test_a_renewal_in_the_future_is_live() -> None:
    """A holder whose clock runs ahead is alive, never stale."""
    assert not lease.is_stale(NOW + dt.timedelta(seconds=30), 60, NOW)


def test_the_lease_carries_the_runs_labels_and_declares_its_duration() -> None:
    spec = lease.LeaseSpec("team-ci", "ab12c", 60, "dindcheck run ab12c on host pid 1")
    body = spec.body(NOW)
    assert body["metadata"]["name"] == "dc-ab12c"
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "dindcheck", "dindcheck.io/run": "ab12c"}
    assert body["spec"]["leaseDurationSeconds"] == 60
    assert body["spec"]["renewTime"] == "2026-12-05T08:00:00.000000Z"
    assert lease.KEPT_ANNOTATION not in body["metadata"]["annotations"]
    assert lease.KEPT_ANNOTATION in spec.body(NOW, kept=True)["metadata"]["annotations"]


def test_every_run_must_hold_a_lease_and_a_sweeping_one_list_them() -> None:
    """Without Lease permissions a run cannot protect its objects: the preflight asks for them (exit 4 if denied)."""
    plain = {
        p.describe()
        for p in required_permissions(
            borrowed_namespace=True, label_namespace=False, copy_registry_secret=False, throwaway_registry=False
        )
    }
    sweeping = {
        p.describe()
        for p in required_permissions(
            borrowed_namespace=True,
            label_namespace=False,
            copy_registry_secret=False,
            throwaway_registry=False,
            sweep=True,
        )
    }
    for verb in ("create", "get", "update", "delete"):
        assert f"{verb} leases.coordination.k8s.io" in plain
    assert "list leases.coordination.k8s.io" not in plain
    assert sweeping - plain == {"list leases.coordination.k8s.io"}


class FakeLeases:
    """The coordination API's Lease calls, on one namespace's Leases."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.renewed = threading.Event()
        self.replaces = 0

    def create_namespaced_lease(self, _ns: str, body: dict[str, Any], **_kwargs: Any) -> None:
        """The fake's create namespaced lease."""
        if body["metadata"]["name"] in self.leases:
            raise ApiException(status=409, reason="AlreadyExists")
        self.leases[body["metadata"]["name"]] = body

    def replace_namespaced_lease(self, name: str, _ns: str, body: dict[str, Any], **_kwargs: Any) -> None:
        """The fake's replace namespaced lease."""
        if name not in self.leases:
            raise ApiException(status=404, reason="Not Found")
        self.leases[name] = body
        self.replaces += 1
        self.renewed.set()

    def delete_namespaced_lease(self, name: str, _ns: str, **_kwargs: Any) -> None:
        """The fake's delete namespaced lease."""
        if self.leases.pop(name, None) is None:
            raise ApiException(status=404, reason="Not Found")


def _keeper(duration_s: int = 60) -> tuple[lease.LeaseKeeper, FakeLeases]:
    api = FakeLeases()
    connection: Any = SimpleNamespace(coordination=api)
    return lease.LeaseKeeper(connection, lease.LeaseSpec("team-ci", "ab12c", duration_s, "holder")), api


def test_the_keeper_renews_in_the_background_until_stopped() -> None:
    keeper, api = _keeper(duration_s=3)  # renewed every second
    keeper.start()
    try:
        assert "dc-ab12c" in api.leases
        assert api.renewed.wait(timeout=10), "no renewal within 10 s of a 3 s lease"
    finally:
        keeper.delete()
    assert api.leases == {}


def test_a_lease_a_sweep_took_is_made_again_on_renewal() -> None:
    keeper, api = _keeper()
    keeper.start()
    keeper.stop()
    api.leases.clear()
    keeper.renew()
    assert "dc-ab12c" in api.leases


def test_a_lease_already_gone_at_cleanup_is_fine() -> None:
    keeper, api = _keeper()
    keeper.delete()
    assert api.leases == {}


def test_keep_marks_the_lease_kept_instead_of_deleting_it() -> None:
    keeper, api = _keeper()
    keeper.start()
    keeper.keep()
    assert lease.KEPT_ANNOTATION in api.leases["dc-ab12c"]["metadata"]["annotations"]


class Terminal:
    """What the run tells the terminal."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        """The fake's write line."""
        self.lines.append(line)


class EmptyCore:
    """A cluster where the run's objects are already gone: cleanup finds nothing left."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("list_"):
            return lambda *_args, **_kwargs: SimpleNamespace(items=[])
        return lambda *_args, **_kwargs: None


def _state(keeper: lease.LeaseKeeper, api: FakeLeases, *, keep: bool) -> RunState:
    return RunState(
        options=SimpleNamespace(keep=keep),  # type: ignore[arg-type]
        connection=SimpleNamespace(core=EmptyCore(), coordination=api),  # type: ignore[arg-type]
        space=Workspace("team-ci", "ab12c", created=False),
        lease=keeper,
    )


def test_cleanup_deletes_the_lease_last() -> None:
    keeper, api = _keeper()
    keeper.start()
    _teardown(_state(keeper, api, keep=False), Terminal())
    assert api.leases == {}


def test_keep_leaves_the_lease_kept_so_no_sweep_takes_the_objects() -> None:
    keeper, api = _keeper()
    keeper.start()
    terminal = Terminal()
    _teardown(_state(keeper, api, keep=True), terminal)
    assert lease.KEPT_ANNOTATION in api.leases["dc-ab12c"]["metadata"]["annotations"]
