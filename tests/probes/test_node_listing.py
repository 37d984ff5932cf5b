"""Nodes are listed a page at a time: a cluster of thousands of nodes costs a few requests, never one per node."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from probes import cluster


class PagedNodes:
    """A core API whose list_node serves count nodes in pages of the limit asked, recording each request."""

    def __init__(self, count: int, *, expire_once_at: str | None = None) -> None:
        self.names = [f"node-{index:04d}" for index in range(count)]
        self.requests: list[dict[str, Any]] = []
        self.expire_once_at = expire_once_at

    def list_node(self, **kwargs: Any) -> SimpleNamespace:
        """A page of V1Node-like objects from the continue token (an offset here), as the API server pages."""
        self.requests.append(kwargs)
        start = int(kwargs.get("_continue") or 0)
        if kwargs.get("_continue") and kwargs["_continue"] == self.expire_once_at:
            self.expire_once_at = None
            raise ApiException(status=410, reason="Gone")
        end = start + kwargs["limit"]
        items = [
            SimpleNamespace(metadata=SimpleNamespace(name=name, labels={}), status=None, spec=SimpleNamespace())
            for name in self.names[start:end]
        ]
        token = str(end) if end < len(self.names) else None
        return SimpleNamespace(items=items, metadata=SimpleNamespace(_continue=token))


def connection(core: PagedNodes) -> Any:
    return SimpleNamespace(core=core)


def test_five_thousand_nodes_take_ten_requests() -> None:
    core = PagedNodes(5000)
    nodes = cluster.list_nodes(connection(core))
    assert [node.metadata.name for node in nodes] == core.names
    assert len(core.requests) == 10
    assert {request["limit"] for request in core.requests} == {cluster.NODE_PAGE_SIZE}


def test_an_expired_continue_token_restarts_the_list_once() -> None:
    core = PagedNodes(1200, expire_once_at="500")
    nodes = cluster.list_nodes(connection(core))
    assert len(nodes) == 1200
    assert [request.get("_continue") for request in core.requests] == [None, "500", None, "500", "1000"]


def test_a_node_that_never_reported_is_described_as_unknown_not_a_crash() -> None:
    """A registered Node whose kubelet never ran has no nodeInfo: the report says unknown."""
    core = PagedNodes(3)
    version = SimpleNamespace(git_version="v1.35.4")
    api = SimpleNamespace(core=core, api_client=None, server="https://x")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client, "VersionApi", lambda _api_client: SimpleNamespace(get_code=lambda **_: version))
        info = cluster.describe_cluster(api, "ns", {})  # type: ignore[arg-type]
    assert [node.kernel for node in info.nodes] == ["unknown"] * 3
    assert len(core.requests) == 1


def test_targeting_reuses_its_listing_for_the_report() -> None:
    core = PagedNodes(3)
    listing = cluster.list_nodes(connection(core))
    version = SimpleNamespace(git_version="v1.35.4")
    api = SimpleNamespace(core=core, api_client=None, server="https://x")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client, "VersionApi", lambda _api_client: SimpleNamespace(get_code=lambda **_: version))
        info = cluster.describe_cluster(api, "ns", {}, listing)  # type: ignore[arg-type]
    assert len(info.nodes) == 3
    assert len(core.requests) == 1  # the report's facts came from targeting's list, not a second one
