"""Probe engine and probe definitions: deploy pods, do the real thing, turn evidence into verdicts."""
