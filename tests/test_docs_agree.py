"""What the README tells users to apply is the file the conformance proves (deploy/rbac.yaml), word for word."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_readme_rbac_block_is_deploy_rbac_yaml() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## RBAC") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's RBAC section has no yaml block"
    assert block.group(1) == (REPO / "deploy" / "rbac.yaml").read_text(encoding="utf-8")


def test_rbac_grants_every_permission_the_preflight_asks_for() -> None:
    """The preflight's list (all options on) is covered by deploy/rbac.yaml, so the documented Role never 403s."""
    from probes.cluster import required_permissions  # noqa: PLC0415 - keeps the module importable alone
    from probes.sweep import sweep_permissions  # noqa: PLC0415

    documents = [doc for doc in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()) if doc]
    granted: set[tuple[str, str, str]] = set()
    for doc in documents:
        for rule in doc.get("rules", []) if doc["kind"] in ("Role", "ClusterRole") else []:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.update((group, resource, verb) for verb in rule["verbs"])
    needed = required_permissions(
        borrowed_namespace=True, label_namespace=False, copy_registry_secret=True, throwaway_registry=True, sweep=True
    )
    for perm in (*needed, *sweep_permissions()):
        resource = f"{perm.resource}/{perm.subresource}" if perm.subresource else perm.resource
        assert (perm.group, resource, perm.verb) in granted, f"deploy/rbac.yaml lacks {perm.describe()}"
