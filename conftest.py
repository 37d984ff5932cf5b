"""Root conftest: loads the dindcheck plugin for `pytest suites` (and keeps it passive for `pytest tests`)."""

from __future__ import annotations

pytest_plugins = ("dindcheck.plugin",)
