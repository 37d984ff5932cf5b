"""`python -m dindcheck`: the same as the `dindcheck` command."""

from __future__ import annotations

from dindcheck.cli import main

raise SystemExit(main())
