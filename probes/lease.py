"""Each run's Lease (coordination.k8s.io): the proof that the run is alive, so a sweep never takes a live run's objects.

A run killed outright (SIGKILL, a lost laptop, an evicted CI pod) runs no cleanup: its pods stop by themselves
(activeDeadlineSeconds) but its namespace, claims and secrets stay. Other runs cannot tell those from the objects of
a run still at work, except by a sign of life: the Lease `dc-<run id>`, made before any other object of the run in
the namespace where they live, renewed every third of its duration (at most every 10 s) by a background thread,
deleted last at cleanup. A Lease not renewed for its duration (60 s; DINDCHECK_LEASE_STALE_S for tests) belongs to a
dead run. Engine-level: nothing here knows what the run's objects are for.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from probes.api import NOT_PROCESSED, api_call
from probes.cluster import Connection
from probes.engine import MANAGED_BY, MANAGED_BY_LABEL, RUN_LABEL
from probes.exceptions import UsageError

LEASE_STALE_S = 60
"""A Lease not renewed for this long (its leaseDurationSeconds) belongs to a dead run."""
LEASE_RENEW_S = 10.0
"""The longest time between two renewals (a third of the duration when that is shorter)."""
STALE_ENV = "DINDCHECK_LEASE_STALE_S"
"""For tests only: a shorter duration (1 to 60 s), so a killed run is found dead sooner."""
KEPT_ANNOTATION = "dindcheck.io/kept"
"""Set on the Lease of a run with --keep: its objects were left on purpose and no sweep takes them."""

logger = logging.getLogger(__name__)


def lease_name(run_id: str) -> str:
    """The run's Lease, named like its other objects."""
    return f"dc-{run_id}"


def stale_after_s(environ: dict[str, str] | None = None) -> int:
    """The duration this run's Lease declares: 60 s, or DINDCHECK_LEASE_STALE_S (1 to 60) for tests."""
    text = (environ if environ is not None else dict(os.environ)).get(STALE_ENV, "").strip()
    if not text:
        return LEASE_STALE_S
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{STALE_ENV}={text!r} is not a whole number of seconds (1 to 60)") from None
    if not 1 <= value <= LEASE_STALE_S:
        raise UsageError(f"{STALE_ENV}={value} is out of range: 1 to {LEASE_STALE_S} seconds")
    return value


def renew_every_s(duration_s: int) -> float:
    """A third of the duration, at most 10 s: two renewals may be lost before the run looks dead."""
    return min(LEASE_RENEW_S, duration_s / 3)


def clamped_duration(declared: int | None) -> int:
    """A Lease's own duration, held to 1..60 s (a missing or foreign value is judged by the 60 s bound)."""
    if declared is None or declared <= 0:
        return LEASE_STALE_S
    return min(int(declared), LEASE_STALE_S)


def is_stale(renewed_at: dt.datetime, duration_s: int | None, now: dt.datetime) -> bool:
    """Whether a Lease last renewed at renewed_at is past its duration at now (a renewal in the future is live)."""
    return (now - renewed_at).total_seconds() > clamped_duration(duration_s)


def micro_time(moment: dt.datetime) -> str:
    """A Kubernetes MicroTime."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseSpec:
    """What the run's Lease says: where it lives, whose it is, how long it stays valid."""

    namespace: str
    run_id: str
    duration_s: int
    holder: str

    @property
    def name(self) -> str:
        """dc-<run id>."""
        return lease_name(self.run_id)

    def body(self, now: dt.datetime, *, kept: bool = False) -> dict[str, Any]:
        """The Lease object, renewed at now."""
        annotations = {KEPT_ANNOTATION: micro_time(now)} if kept else {}
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY, RUN_LABEL: self.run_id},
                "annotations": annotations,
            },
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.duration_s,
                "renewTime": micro_time(now),
            },
        }


def holder_identity(run_id: str) -> str:
    """Who holds the Lease: the run, and the host and process it runs in (for a person reading it)."""
    return f"dindcheck run {run_id} on {socket.gethostname()} pid {os.getpid()}"


class LeaseKeeper:
    """Creates the run's Lease and renews it from a background thread until the run ends."""

    def __init__(self, connection: Connection, spec: LeaseSpec) -> None:
        self._api = connection.coordination
        self.spec = spec
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error = ""

    def start(self) -> None:
        """Create the Lease (before any other object of the run in its namespace), then renew it in the background."""
        api_call(
            self._api.create_namespaced_lease,
            self.spec.namespace,
            self.spec.body(dt.datetime.now(dt.UTC)),
            retried=NOT_PROCESSED,
        )
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.spec.run_id}", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        every = renew_every_s(self.spec.duration_s)
        while not self._stop.wait(every):
            try:
                self.renew()
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                logger.debug("lease %s not renewed: %s", self.spec.name, exc)

    def renew(self, *, kept: bool = False) -> None:
        """Write a new renewTime; a Lease gone (a sweep took this run for dead) is made again."""
        body = self.spec.body(dt.datetime.now(dt.UTC), kept=kept)
        deadline = max(1.0, renew_every_s(self.spec.duration_s))
        try:
            api_call(self._api.replace_namespaced_lease, self.spec.name, self.spec.namespace, body, deadline_s=deadline)
        except ApiException as exc:
            if exc.status != 404:
                raise
            api_call(
                self._api.create_namespaced_lease, self.spec.namespace, body, retried=NOT_PROCESSED, deadline_s=deadline
            )

    def stop(self) -> None:
        """Stop renewing (the Lease stays until delete() or keep())."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def keep(self) -> None:
        """--keep: stop renewing and mark the Lease kept, so no sweep takes the objects left on purpose."""
        self.stop()
        self.renew(kept=True)

    def delete(self, *, deadline_s: float = 10.0) -> None:
        """Stop renewing and delete the Lease: the run's last object (a Lease already gone is fine)."""
        self.stop()
        try:
            api_call(self._api.delete_namespaced_lease, self.spec.name, self.spec.namespace, deadline_s=deadline_s)
        except ApiException as exc:
            if exc.status != 404:
                raise
