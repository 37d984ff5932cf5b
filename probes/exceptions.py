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

    def __init__(self, message: str, *, source: str, code: int, decided: bool | None = False) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.code = code
        # False when a policy refused (an answer about the spec); None when it was no policy (quota, 429, RBAC)
        self.decided = decided

    def evidence(self) -> dict[str, object]:
        """The refusal as report evidence: who refused, with what status, in the server's own words."""
        return {"source": self.source, "code": self.code, "message": self.message, "decided": self.decided}

    def describe(self) -> str:
        """'rejected by SOURCE: MESSAGE', for a one-line summary."""
        return f"rejected by {self.source}: {self.message}"


class PodNotRunningError(ProbeError):
    """A probe pod did not reach the state it needed before its deadline; carries the reason seen."""

    def __init__(
        self, message: str, *, reason: str, phase: str, event_reason: str = "", event_message: str = ""
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.phase = phase
        self.event_reason = event_reason
        self.event_message = event_message

    def evidence(self) -> dict[str, object]:
        """The pod's phase and the reason seen, as report evidence."""
        found: dict[str, object] = {"phase": self.phase, "reason": self.reason}
        if self.event_reason:
            found["event"] = {"reason": self.event_reason, "message": self.event_message}
        return found


class ExecChannelError(ProbeError):
    """The exec channel itself failed (upgrade refused, container gone, no exit status, deadline passed).

    Only a command's own exit code and output are facts about the cluster; this is a fact about the channel, so the
    check it happens in is inconclusive with the channel's own error.
    """


class CancelledError(ProbeError):
    """The run is being torn down (Ctrl-C, SIGTERM, session end)."""
