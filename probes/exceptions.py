"""Every error dindcheck raises on purpose. One module, so callers know what they can catch."""

from __future__ import annotations


class DindcheckError(Exception):
    """Base of every error dindcheck raises on purpose."""


class UsageError(DindcheckError):
    """Bad input from the user (kubeconfig, context, option value): one clear line, pytest's usage exit code."""


class ClusterUnreachableError(UsageError):
    """The API server did not answer: a usage problem (wrong kubeconfig or network), not a cluster verdict."""


class ProbeError(DindcheckError):
    """A probe could not finish; its check becomes inconclusive with this cause."""


class AdmissionRejectedError(ProbeError):
    """The API server refused to create an object; carries the server's own message and who refused it."""

    def __init__(self, message: str, *, source: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.code = code

    def evidence(self) -> dict[str, object]:
        """The refusal as report evidence: who refused, with what status, in the server's own words."""
        return {"source": self.source, "code": self.code, "message": self.message}

    def describe(self) -> str:
        """'rejected by SOURCE: MESSAGE', for a one-line summary."""
        return f"rejected by {self.source}: {self.message}"


class PodNotRunningError(ProbeError):
    """A probe pod did not reach the state it needed before its deadline; carries the reason seen."""

    def __init__(self, message: str, *, reason: str, phase: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.phase = phase

    def evidence(self) -> dict[str, object]:
        """The pod's phase and the reason seen, as report evidence."""
        return {"phase": self.phase, "reason": self.reason}


class CommandError(ProbeError):
    """A command inside a probe container could not be run at all (as opposed to running and failing)."""


class CancelledError(ProbeError):
    """The run is being torn down (Ctrl-C, SIGTERM, session end)."""
