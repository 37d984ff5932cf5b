"""Parsing what probe scripts print and what BuildKit and registries answer."""

from __future__ import annotations

import pytest

from probes.definitions import _registry
from probes.definitions.buildkit_rootless import classify_failure
from probes.engine import key_values


def test_key_values_keeps_dotted_keys_and_ignores_noise() -> None:
    text = "emptydir.fs_type=ext2/ext3\nnoise line\nemptydir.overlay=ok\nerror=a=b\n=nokey\n"
    assert key_values(text) == {"emptydir.fs_type": "ext2/ext3", "emptydir.overlay": "ok", "error": "a=b"}


@pytest.mark.parametrize(
    ("log", "cause_fragment"),
    [
        (
            "[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: no space left on device",
            "user.max_user_namespaces=0",
        ),
        ("max_user_namespaces needs to be set to non-zero", "user.max_user_namespaces=0"),
        (
            "[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: operation not permitted",
            "Unconfined",
        ),
        ("newuidmap: Could not set caps", "allowPrivilegeEscalation"),
        ("failed to share mount point: /: permission denied", "AppArmor"),
        ("mount proc:/proc (via /proc/self/fd/6), flags: 0xe: operation not permitted", "no-process-sandbox"),
    ],
)
def test_buildkit_failures_get_a_cause(log: str, cause_fragment: str) -> None:
    assert cause_fragment in classify_failure(log)


def test_unknown_buildkit_failure_has_no_invented_cause() -> None:
    assert classify_failure("something unexpected happened") == ""


def test_split_reference() -> None:
    assert _registry.split_reference("10.88.0.1:5000/dindcheck/probe:abc12") == (
        "10.88.0.1:5000",
        "dindcheck/probe",
        "abc12",
    )


def test_bearer_challenge() -> None:
    header = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'
    assert _registry.bearer_challenge(header) == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull",
    }
    assert _registry.bearer_challenge('Basic realm="x"') == {}
