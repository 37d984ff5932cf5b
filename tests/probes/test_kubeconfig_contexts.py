"""What a fleet run reads of the kubeconfig before connecting: every context, and the namespace each one names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from probes import cluster
from probes.exceptions import UsageError

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://c.example:6443"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [
        {"name": "prod-eu", "context": {"cluster": "c", "user": "u"}},
        {"name": "team+ci/prod", "context": {"cluster": "c", "user": "u", "namespace": "ci-builds"}},
    ],
    "current-context": "team+ci/prod",
}


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return str(path)


def test_all_contexts_are_every_context_in_file_order(kubeconfig: str) -> None:
    assert cluster.context_names(kubeconfig) == ("prod-eu", "team+ci/prod")


def test_a_context_names_its_namespace_or_none() -> None:
    assert cluster._context_namespace(KUBECONFIG, "team+ci/prod") == "ci-builds"
    assert cluster._context_namespace(KUBECONFIG, "prod-eu") == ""
    assert cluster._context_namespace(KUBECONFIG, None) == "ci-builds", "no context given: the current one's"


def test_a_file_without_contexts_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "contexts": []}))
    with pytest.raises(UsageError, match="has no contexts"):
        cluster.context_names(str(path))
