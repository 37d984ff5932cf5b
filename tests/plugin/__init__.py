"""Self-tests: plugin."""
