"""Self-tests: reports."""
