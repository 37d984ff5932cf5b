"""A big cluster: 5,000 Node objects in 300 pools (no kubelets, so NotReady, as scaled-down pools are).

Preflight and --each-pool grouping must read them in a few paginated lists (never a request per node), and the report
must stay readable when hundreds of pools could not be probed: one summary line, each pool kept in the JSON. The
figures (seconds, requests, report sizes) go to big-cluster.json in the CI outputs, as the benchmarks' do.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import pytest
from kubernetes import client
from kubernetes.client import rest

from probes import cluster, targets
from probes.model import Placement
from testbed.conformance.harness import Profile, SuiteRun, run_suite, wait_until

POOL_LABEL = "dindcheck.io/pool"
MARKER = "dindcheck.testbed/big-cluster"
NODES = 5000
POOLS = 300
CREATORS = 8
"""Parallel creators: the API server takes the 5,000 POSTs in about half a minute on the testbed."""


def _node(index: int) -> client.V1Node:
    return client.V1Node(
        metadata=client.V1ObjectMeta(
            name=f"big-{index:04d}", labels={POOL_LABEL: f"big-{index % POOLS:03d}", MARKER: "true"}
        )
    )


def _big_nodes_left(core: client.CoreV1Api) -> int:
    return len(core.list_node(label_selector=MARKER, limit=1000).items)


@pytest.fixture(scope="module")
def big_cluster(testbed_env: dict[str, str], out_root: Path) -> Iterator[dict[str, Any]]:
    """5,000 NotReady nodes in 300 pools beside the testbed's own; all deleted (and waited for) afterwards."""
    connection = cluster.connect(testbed_env["KUBECONFIG"], None)
    core = connection.core
    figures: dict[str, Any] = {"nodes": NODES, "pools": POOLS}
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(CREATORS) as pool:
            list(pool.map(lambda index: core.create_node(_node(index)), range(NODES)))
        figures["create_s"] = round(time.monotonic() - started, 1)
        yield figures
    finally:
        core.delete_collection_node(label_selector=MARKER)
        wait_until(lambda: _big_nodes_left(core) == 0, "the big cluster's nodes are gone", 300)
        (out_root / "big-cluster.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(f"big cluster: {json.dumps(figures)}")


@pytest.fixture(scope="module", autouse=True)
def permissive_only(profile: Profile) -> None:
    if profile.name != "permissive":
        pytest.skip("the big cluster is shown once, on the permissive profile")


class RequestLog:
    """Every request the kubernetes client sends from this process: (method, path without the query)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self._send = rest.RESTClientObject.request

    def __enter__(self) -> Self:
        log, send = self.requests, self._send

        def counted(rest_client: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            log.append((method, url.split("?", maxsplit=1)[0].split("://", 1)[-1].split("/", 1)[-1]))
            return send(rest_client, method, url, *args, **kwargs)

        rest.RESTClientObject.request = counted
        return self

    def __exit__(self, *_: object) -> None:
        rest.RESTClientObject.request = self._send


def test_preflight_and_pool_grouping_read_five_thousand_nodes_in_pages(
    testbed_env: dict[str, str], big_cluster: dict[str, Any]
) -> None:
    """What --each-pool does before any pod: list the nodes (paginated) and group them; no request per node."""
    connection = cluster.connect(testbed_env["KUBECONFIG"], None)
    started = time.monotonic()
    with RequestLog() as log:
        listing = cluster.node_listing(connection)
        plan = targets.pool_targets(listing.views, POOL_LABEL, Placement())
    big_cluster["preflight_and_grouping_s"] = round(time.monotonic() - started, 2)
    big_cluster["requests"] = len(log.requests)
    assert len(listing.views) > NODES
    assert len(plan.unprobed) == POOLS
    assert [target.pool for target in plan.targets] == ["default"]
    node_lists = [path for _, path in log.requests if path == "api/v1/nodes"]
    per_node = [path for _, path in log.requests if path.startswith("api/v1/nodes/")]
    assert per_node == []
    assert len(node_lists) == math.ceil(len(listing.views) / cluster.NODE_PAGE_SIZE)
    assert len(log.requests) == len(node_lists)


@pytest.fixture(scope="module")
def big_run(testbed_env: dict[str, str], out_root: Path, big_cluster: dict[str, Any]) -> SuiteRun:
    """One --each-pool run gated on dind, with one quick check (lsm), over the default pool and the 300 others."""
    run = run_suite(
        testbed_env, out_root / "big-cluster", "--each-pool", POOL_LABEL, "--require-mode", "dind", "-k", "lsm"
    )
    big_cluster["run_wall_s"] = round(run.wall_s, 1)
    big_cluster["terminal_lines"] = len(run.output.splitlines())
    big_cluster["json_bytes"] = (run.out_dir / "report.json").stat().st_size
    big_cluster["markdown_bytes"] = (run.out_dir / "report.md").stat().st_size
    return run


def test_three_hundred_unprobed_pools_take_one_line_and_fail_the_gate(big_run: SuiteRun) -> None:
    summary = f"{POOLS} pools NOT PROBED ({NODES} nodes): {POOLS} with no Ready, schedulable node"
    assert big_run.exit_code == 1, big_run.output[-3000:]
    assert f"dindcheck: --require-mode dind: {summary}" in big_run.output
    assert f"NOT usable on pool(s) default, {POOLS} unprobed pools" in big_run.output
    assert "big-150" not in big_run.output
    assert len(big_run.output.splitlines()) < 200
    markdown = (big_run.out_dir / "report.md").read_text()
    assert f"**{summary}" in markdown
    assert "big-150" not in markdown
    assert len(big_run.report["unprobed_pools"]) == POOLS  # the JSON keeps every pool, its nodes and why
    assert [pool["pool"] for pool in big_run.report["pools"]] == ["default"]
