"""Adding a probe means a definition and a suite module, nothing else: this keeps the two in step."""

from __future__ import annotations

import ast
from pathlib import Path

from probes.definitions import catalog

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


def test_the_check_list_is_the_catalog() -> None:
    """No second list of check ids: the catalog is it (ids unique, one capability each)."""
    ids = [d.id for d in catalog()]
    assert len(ids) == len(set(ids))
    assert all(d.capability == d.id for d in catalog())


def test_definitions_are_complete() -> None:
    for definition in catalog():
        assert definition.title, definition.id
        assert len(definition.remediation) > 40, definition.id
        assert callable(definition.run)
