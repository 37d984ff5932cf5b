"""dindcheck: which ways of building containers in pods does this cluster support? (pytest plugin glue)."""

from __future__ import annotations

__version__ = "0.1.0"
