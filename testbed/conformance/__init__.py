"""Conformance of the suite against the testbed's profiles, faults and timing."""
