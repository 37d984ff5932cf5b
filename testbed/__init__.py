"""The project's own test cluster: build, start, profile, stop (shell scripts), plus its smoke and conformance tests."""
