"""Adding a probe means a definition and a suite module, nothing else: this keeps the two in step."""

from __future__ import annotations

import ast
from pathlib import Path

from probes.definitions import catalog
from probes.model import CAPABILITIES

SUITES = Path(__file__).resolve().parents[2] / "suites"


def suite_probe_ids() -> dict[str, str]:
    """Probe id named by each suite module's `pytestmark = pytest.mark.probe(ID)`."""
    found: dict[str, str] = {}
    for path in sorted(SUITES.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "probe"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found[path.name] = str(node.args[0].value)
    return found


def test_every_definition_has_a_suite_module() -> None:
    named = set(suite_probe_ids().values())
    missing = [d.id for d in catalog() if d.id not in named]
    assert not missing, f"definitions without a suite module: {missing}"


def test_every_suite_names_a_known_probe() -> None:
    known = {d.id for d in catalog()}
    unknown = {name: pid for name, pid in suite_probe_ids().items() if pid not in known}
    assert not unknown, f"suite modules naming unknown probes: {unknown}"


def test_capabilities_of_the_contract_are_all_probed() -> None:
    assert sorted(d.capability for d in catalog()) == sorted(CAPABILITIES)


def test_definitions_are_complete() -> None:
    for definition in catalog():
        assert definition.title, definition.id
        assert len(definition.remediation) > 40, definition.id
        assert callable(definition.run)
