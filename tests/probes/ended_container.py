"""A stand-in for the part of a ProbeContext that reads a pod whose daemon container ended by itself."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from probes.engine import RunScope


class EndedContainer:
    """A pod whose container ended; its status says so only after some reads (a busy node's kubelet reports late).

    The runtime refuses an exec into the stopped container at once ("cannot exec in a stopped state"); waiting costs
    no time here: sleep returns at once.
    """

    scope = RunScope("ns", "run1")

    def __init__(self, container: str, reads_before_the_status_shows_it: int = 0) -> None:
        self.container = container
        self.reads_left_running = reads_before_the_status_shows_it

    def read_pod(self, _name: str) -> Any:
        """The pod, with the container terminated (exit 1) once the kubelet has reported it."""
        ended = None
        if self.reads_left_running > 0:
            self.reads_left_running -= 1
        else:
            ended = SimpleNamespace(exit_code=1, reason="Error", message="")
        status = SimpleNamespace(name=self.container, state=SimpleNamespace(terminated=ended))
        return SimpleNamespace(status=SimpleNamespace(init_container_statuses=None, container_statuses=[status]))

    def sleep(self, _seconds: float) -> None:
        """Time passes at once."""
