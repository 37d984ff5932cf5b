"""The testbed's hostPath provisioner: where a claim's volume goes, per node (testbed/lib/provisioner.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

PROVISIONER = Path(__file__).resolve().parents[2] / "testbed" / "lib" / "provisioner.py"


@pytest.fixture(scope="module")
def prov() -> ModuleType:
    spec = importlib.util.spec_from_file_location("testbed_provisioner", PROVISIONER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class FakeCore:
    """Records the PVs the provisioner creates."""

    def __init__(self) -> None:
        self.created: list[Any] = []

    def create_persistent_volume(self, pv: Any) -> None:
        """Keeps PV instead of sending it."""
        self.created.append(pv)


def storage_class(params: dict[str, str]) -> Any:
    return SimpleNamespace(
        provisioner="dindcheck.testbed/hostpath",
        metadata=SimpleNamespace(name="dindcheck-cache"),
        parameters=params,
        volume_binding_mode="WaitForFirstConsumer",
        reclaim_policy="Delete",
    )


def claim(node: str) -> Any:
    return SimpleNamespace(
        metadata=SimpleNamespace(
            namespace="ns",
            name="cache",
            uid="u1",
            annotations={"volume.kubernetes.io/selected-node": node},
        ),
        spec=SimpleNamespace(resources=None, access_modes=None, storage_class_name="dindcheck-cache", volume_mode=None),
    )


def test_remote_node_volume_is_made_by_its_kubelet(prov: ModuleType, tmp_path: Path) -> None:
    """The vm node's volume is not made on this host; its kubelet makes it (DirectoryOrCreate) in the guest."""
    storage = SimpleNamespace(
        list_storage_class=lambda: SimpleNamespace(
            items=[storage_class({"root": "/var/lib/dindcheck-testbed/cache/ext4", "remote.dindcheck-vm": "true"})]
        )
    )
    roots = prov.class_roots(storage)["dindcheck-cache"]
    assert roots.remote_nodes == frozenset({"dindcheck-vm"})
    roots = prov.ClassRoots(tmp_path / "root", remote_nodes=roots.remote_nodes, wait_for_consumer=True)
    core = FakeCore()
    prov.provision(core, claim("dindcheck-vm"), roots)
    (pv,) = core.created
    assert pv.spec.host_path.type == "DirectoryOrCreate"
    assert pv.spec.host_path.path == str(tmp_path / "root" / "ns-cache-u1")
    assert not (tmp_path / "root").exists()
    assert pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0].values == ["dindcheck-vm"]


def test_local_node_volume_is_made_here(prov: ModuleType, tmp_path: Path) -> None:
    """A node on this host gets its directory made here, world-writable, and a hostPath of type Directory."""
    roots = prov.ClassRoots(tmp_path / "root", remote_nodes=frozenset({"dindcheck-vm"}), wait_for_consumer=True)
    core = FakeCore()
    prov.provision(core, claim("dindcheck-node"), roots)
    (pv,) = core.created
    assert pv.spec.host_path.type == "Directory"
    made = tmp_path / "root" / "ns-cache-u1"
    assert made.is_dir()
    assert made.stat().st_mode & 0o777 == 0o777
