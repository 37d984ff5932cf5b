"""Self-tests, mirroring the source tree: probes, reports, the pytest plugin."""
