"""Runs at once against one cluster, and the sweep of a run killed outright (issue 20, items 6 and 7).

A killed run (SIGKILL: no cleanup) leaves its objects; its Lease stops being renewed. A `--sweep` started while a
third run is at work removes everything of the killed runs, in a namespace they created and in one they shared with
the live run, and the live run is untouched: it completes with a lone run's verdicts. Four runs at once (two in their
own namespaces, two borrowing one, one of those with --each-pool) reach a lone run's verdicts and leave nothing: no
run's cleanup or sweep deletes another's objects. Runs on the permissive profile.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from testbed.conformance.harness import (
    NAMESPACE_GONE_S,
    StartedSuite,
    SuiteRun,
    finish_suite,
    fresh_namespace,
    kubectl,
    run_objects,
    run_suite,
    start_suite,
    statuses,
    wait_until,
    wait_until_clean,
)

STALE_ENV = "DINDCHECK_LEASE_STALE_S"
KILLED_LEASE_S = 5
"""The killed runs' Lease duration (for tests only): they are dead 5 s after their last renewal."""
KILLED_SELECTION = ("-k", "overlay_cache or lsm")
"""What the killed runs probe: a pod and a cache claim on a volume, the objects a killed run leaves."""
RUN_LABEL = "dindcheck.io/run"


def leases(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Run id -> its Lease's namespace, renewTime and duration, for every dindcheck Lease in the cluster."""
    items = json.loads(kubectl(env, "get", "leases", "-A", "-l", RUN_LABEL, "-o", "json"))["items"]
    return {
        item["metadata"]["labels"][RUN_LABEL]: {
            "namespace": item["metadata"]["namespace"],
            "renewed": item["spec"].get("renewTime", ""),
            "duration": str(item["spec"].get("leaseDurationSeconds", "")),
        }
        for item in items
    }


def new_run(env: dict[str, str], known: set[str], namespace: str = "") -> str:
    """Wait until a run not in known holds a Lease (in namespace, or with '' in a namespace of its own); its run id."""
    found: list[str] = []

    def appeared() -> bool:
        found[:] = [
            run_id
            for run_id, held in leases(env).items()
            if run_id not in known and held["namespace"] == (namespace or f"dindcheck-{run_id}")
        ]
        return bool(found)

    wait_until(appeared, f"a new run's Lease in {namespace or 'its own namespace'}", timeout_s=90)
    return found[0]


def lapsed(env: dict[str, str], run_id: str) -> bool:
    """Whether the run's Lease is past its duration (this host's clock is the cluster's: one machine)."""
    held = leases(env).get(run_id)
    assert held is not None, f"the Lease of run {run_id} went before any sweep"
    renewed = dt.datetime.fromisoformat(held["renewed"])
    return (dt.datetime.now(dt.UTC) - renewed).total_seconds() > int(held["duration"]) + 1


def has(env: dict[str, str], run_id: str, *kinds: str) -> bool:
    """Whether an object of each kind (pod, persistentvolumeclaim, ...) of the run exists."""
    objects = run_objects(env, run_id)
    return all(any(name.startswith(f"{kind}/") for name in objects) for kind in kinds)


def gone(env: dict[str, str], run_id: str) -> bool:
    """Whether nothing of the run is left."""
    return run_objects(env, run_id) == []


@contextmanager
def stopped_at_exit(*runs: StartedSuite) -> Iterator[None]:
    """Whatever happens, no run of this test outlives it."""
    try:
        yield
    finally:
        for run in runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


def killed_mid_probe(env: dict[str, str], out: Path, known: set[str], *extra: str) -> tuple[str, StartedSuite]:
    """Start a run with a short Lease, SIGKILL it once its probe pod and cache claim exist; its run id.

    --no-sweep: a killed run's Lease lapses within seconds, and a sweep at the next run's start would take the
    objects the --sweep under test must find.
    """
    run = start_suite(env, out, *KILLED_SELECTION, "--no-sweep", *extra, environ={STALE_ENV: str(KILLED_LEASE_S)})
    with stopped_at_exit(run):
        run_id = new_run(env, known, "" if not extra else extra[-1])
        wait_until(partial(has, env, run_id, "pod", "persistentvolumeclaim"), f"run {run_id}'s pod and claim", 90)
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait()
    return run_id, run


def same_verdicts(run: SuiteRun, lone: SuiteRun) -> None:
    assert run.report, run.output[-3000:]
    assert statuses(run) == statuses(lone), run.output[-3000:]
    assert run.exit_code == lone.exit_code, run.output[-3000:]


@pytest.mark.usefixtures("permissive")
def test_a_killed_runs_objects_are_swept_and_a_live_run_is_untouched(
    testbed_env: dict[str, str], suite_run: SuiteRun, out_root: Path
) -> None:
    env = testbed_env
    out = out_root / "sweep"
    assert wait_until_clean(env, 60) == [], "objects of an earlier test are still there"
    with fresh_namespace(env, "dindcheck-sweep-shared") as shared:
        killed_shared, in_shared = killed_mid_probe(env, out / "killed-shared", set(), "--namespace", shared)
        killed_own, in_own = killed_mid_probe(env, out / "killed-own", {killed_shared})
        with stopped_at_exit(in_shared, in_own):
            for run_id in (killed_shared, killed_own):
                wait_until(partial(lapsed, env, run_id), f"run {run_id}'s Lease lapsed", 30)
            left_by_kill = {run_id: run_objects(env, run_id) for run_id in (killed_shared, killed_own)}
            assert all(any(o.startswith("pod/") for o in objs) for objs in left_by_kill.values()), left_by_kill
            # the live run does not sweep itself: the killed runs are dead already, and the --sweep must find them
            live = start_suite(env, out / "live", "--namespace", shared, "--no-sweep")
            with stopped_at_exit(live):
                live_id = new_run(env, {killed_shared, killed_own}, shared)
                wait_until(lambda: has(env, live_id, "pod"), f"the live run {live_id}'s probe pods", 90)
                sweeper = run_suite(env, out / "sweeper", "--sweep", timeout_s=120)
                assert live.proc.poll() is None, "the live run ended before the sweep: the case proved nothing"
                assert sweeper.exit_code == 0, sweeper.output[-3000:]
                assert "dindcheck: --sweep done, no probe ran" in sweeper.output, sweeper.output[-3000:]
                assert "!!!" not in sweeper.output, "pytest's interruption banner: --sweep is a whole run, not an abort"
                removed = [line for line in sweeper.output.splitlines() if "sweep: removed dead run" in line]
                assert any(killed_shared in line and "lease/" in line for line in removed), sweeper.output[-3000:]
                assert any(killed_own in line and f"namespace/dindcheck-{killed_own}" in line for line in removed), (
                    sweeper.output[-3000:]
                )
                assert not any(live_id in line for line in removed), removed
                assert f"{live_id} (alive" in sweeper.output, sweeper.output[-3000:]
                assert leases(env).get(live_id), "the live run's Lease was deleted by the sweep"
                for run_id in (killed_shared, killed_own):
                    wait_until(
                        partial(gone, env, run_id),
                        f"nothing of killed run {run_id} left (was {left_by_kill[run_id]})",
                        NAMESPACE_GONE_S,
                    )
                live_run = finish_suite(live)
        same_verdicts(live_run, suite_run)
        assert "cleanup incomplete" not in live_run.output, live_run.output[-3000:]
    assert wait_until_clean(env, NAMESPACE_GONE_S) == []


@pytest.mark.usefixtures("permissive")
def test_four_runs_at_once_reach_a_lone_runs_verdicts_and_leave_nothing(
    testbed_env: dict[str, str], suite_run: SuiteRun, out_root: Path
) -> None:
    env = testbed_env
    out = out_root / "concurrent"
    assert wait_until_clean(env, 60) == [], "objects of an earlier test are still there"
    with fresh_namespace(env, "dindcheck-concurrent-shared") as shared:
        runs = [
            start_suite(env, out / "own-1"),
            start_suite(env, out / "own-2"),
            start_suite(env, out / "shared-1", "--namespace", shared),
            start_suite(env, out / "shared-each-pool", "--namespace", shared, "--each-pool", "kubernetes.io/hostname"),
        ]
        with stopped_at_exit(*runs):
            finished = [finish_suite(run) for run in runs]
        for run in finished[:3]:
            same_verdicts(run, suite_run)
        each_pool = finished[3]
        assert each_pool.report, each_pool.output[-3000:]
        (pool,) = each_pool.report["pools"]
        assert {c["id"]: c["status"] for c in pool["checks"]} == statuses(suite_run), each_pool.output[-3000:]
        assert each_pool.exit_code == suite_run.exit_code, each_pool.output[-3000:]
        for run in finished:
            assert "sweep: removed" not in run.output, run.output[-3000:]
            assert "probe objects deleted" in run.output, run.output[-3000:]
            assert "cleanup incomplete" not in run.output, run.output[-3000:]
        assert kubectl(env, "get", "pods,pvc,secrets,leases", "-n", shared, "-o", "name").strip() == ""
    assert wait_until_clean(env, NAMESPACE_GONE_S) == []
