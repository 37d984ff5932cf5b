"""The capability suite: one test module per probe, installed with the package as dindcheck.suites."""
