"""Self-tests: the testbed's own helpers."""
