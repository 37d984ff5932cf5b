"""Self-tests: probes."""
