"""Probe definitions: one module per capability, each exposing PROBE (a ProbeDefinition).

Adding a probe = adding a module here and its suite module in suites/; nothing else is edited.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from probes.settings import ProbeDefinition


@functools.cache
def catalog() -> tuple[ProbeDefinition, ...]:
    """Every probe definition shipped, in a stable order."""
    found: list[ProbeDefinition] = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        probe = getattr(module, "PROBE", None)
        if isinstance(probe, ProbeDefinition):
            found.append(probe)
    return tuple(found)
