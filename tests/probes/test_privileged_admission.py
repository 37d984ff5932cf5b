"""privileged-admission claims only what it saw: a policy's refusal, no answer, or a pod that really is privileged.

A running pod is not proof: a mutating webhook can strip `privileged` at admission, so the stored spec and the
container's own capabilities decide. A refusal that no policy gave (a 401, a 422 from a LimitRange's limits) is
inconclusive in the API server's words, and so are the checks whose pods it stops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client

from probes import admission
from probes.api import ApiHealth
from probes.definitions import privileged_admission
from probes.engine import CommandResult, Outcome, Task, refusal, run_probe
from probes.exceptions import ExecChannelError
from probes.model import Admission, Facts, Mode, RunResult, Status, Verdict
from probes.settings import Images, ProbeSettings, Resources
from reports import recommend

FULL_CAPS = "CapEff=000001ffffffffff\nCapBnd=000001ffffffffff\ncap_last_cap=40\n"
DEFAULT_CAPS = "CapEff=00000000a80425fb\nCapBnd=00000000a80425fb\ncap_last_cap=40\n"
LIMIT_RANGE_422 = (
    'Pod "dc-x" is invalid: spec.containers[0].resources.requests: Invalid value: "1": must be less than or equal to '
    "cpu limit of 500m"
)


def stored_pod(security_context: client.V1SecurityContext | None, annotations: dict[str, str] | None = None) -> Any:
    container = client.V1Container(name="tools", image="debian:bookworm-slim", security_context=security_context)
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="dc-x-real", annotations=annotations),
        spec=client.V1PodSpec(containers=[container]),
    )


PRIVILEGED = stored_pod(client.V1SecurityContext(privileged=True))


class FakeContext:
    """Answers every dry-run alike, 'runs' the real pod as the API server stored it, and answers one exec."""

    def __init__(
        self,
        *,
        dry_run: Admission | None = None,
        pod: Any = PRIVILEGED,
        refused: Admission | None = None,
        readings: str | Exception = FULL_CAPS + "mount=ok\n",
    ) -> None:
        self.answer = dry_run or Admission(admitted=True, code=201)
        self.stored = pod
        self.refused = refused
        self.readings = readings
        self.execs: list[str] = []
        self.nodes: set[str] = set()
        self.disturbances: list[str] = []
        self.health = ApiHealth()

    def say(self, message: str) -> None:
        """Nothing to show."""

    def unready_nodes(self) -> list[str]:
        """Every node is Ready here."""
        return []

    def pod_manifest(self, suffix: str, spec: Any, *, annotations: Any = None) -> dict[str, Any]:
        """A manifest named by its suffix."""
        return {"metadata": {"name": f"dc-x-{suffix}", "annotations": annotations}, "spec": spec}

    def dry_run(self, _manifest: dict[str, Any]) -> Admission:
        """The one answer this context was made with."""
        return self.answer

    @contextmanager
    def pod(self, _manifest: dict[str, Any]) -> Iterator[Any]:
        """The pod as stored, or the refusal of its create."""
        if self.refused is not None:
            raise refusal(self.refused)
        yield self.stored

    def exec(self, pod_name: str, container: str, _script: str, *, timeout_s: float = 60.0) -> CommandResult:
        """The recorded readings, or the channel's failure."""
        self.execs.append(f"{pod_name}/{container}/{timeout_s:.0f}")
        if isinstance(self.readings, Exception):
            raise self.readings
        return CommandResult(0, self.readings, "", 0.1)


SETTINGS = ProbeSettings(images=Images(), resources=Resources())


def probe(ctx: FakeContext) -> Outcome:
    return privileged_admission.run(ctx, SETTINGS)  # type: ignore[arg-type]


def test_a_privileged_pod_with_every_capability_that_may_mount_passes() -> None:
    ctx = FakeContext()
    outcome = probe(ctx)
    assert outcome.status is Status.PASS, outcome.summary
    assert "stored as privileged" in outcome.summary
    assert "every capability (CapEff 000001ffffffffff) and may mount" in outcome.summary
    assert ctx.execs == ["dc-x-real/tools/30"]
    assert outcome.evidence["real_pod"]["stored_privileged"] is True


def test_a_pod_whose_privilege_a_mutating_webhook_stripped_fails() -> None:
    """Admitted and Running, but stored without privileged: the old probe called that a pass."""
    annotations = {"gatekeeper.sh/mutations": "Assign//strip-privileged:1"}
    stripped = stored_pod(client.V1SecurityContext(privileged=False), annotations)
    ctx = FakeContext(pod=stripped)
    outcome = probe(ctx)
    assert outcome.status is Status.FAIL, outcome.summary
    assert "admitted and running, but the stored spec is not privileged" in outcome.summary
    assert "mutated at admission" in outcome.summary
    assert "gatekeeper.sh/mutations" in outcome.summary
    assert outcome.evidence["real_pod"]["stored_security_context"] == {"privileged": False}
    assert ctx.execs == []


def test_a_pod_stored_without_any_security_context_is_not_privileged() -> None:
    outcome = probe(FakeContext(pod=stored_pod(None)))
    assert outcome.status is Status.FAIL
    assert "stored spec is not privileged" in outcome.summary


def test_a_pod_stored_privileged_without_every_capability_fails_naming_them() -> None:
    outcome = probe(FakeContext(readings=DEFAULT_CAPS + "mount=refused\nmount_error=mount: permission denied\n"))
    assert outcome.status is Status.FAIL, outcome.summary
    assert "not privileged inside: CapEff 00000000a80425fb lacks" in outcome.summary
    assert "CAP_SYS_ADMIN" in outcome.summary
    assert "CAP_SYS_ADMIN" in outcome.evidence["inside"]["missing_capabilities"]
    assert "CAP_CHOWN" not in outcome.evidence["inside"]["missing_capabilities"]


def test_every_capability_but_a_refused_mount_fails_in_the_mounts_words() -> None:
    error = "mount: /tmp/tmp.x: permission denied."
    outcome = probe(FakeContext(readings=FULL_CAPS + f"mount=refused\nmount_error={error}\n"))
    assert outcome.status is Status.FAIL
    assert error in outcome.summary


def test_without_a_mount_command_the_pass_says_only_the_capabilities_were_seen() -> None:
    outcome = probe(FakeContext(readings=FULL_CAPS + "mount=absent\n"))
    assert outcome.status is Status.PASS
    assert "a mount was not tried" in outcome.summary
    assert "may mount" not in outcome.summary


def test_an_exec_channel_that_fails_proves_nothing_and_keeps_the_admission_answers() -> None:
    ctx = FakeContext(readings=ExecChannelError("exec into dc-x-real/tools failed: Handshake status 500"))
    outcome = probe(ctx)
    assert outcome.status is Status.INCONCLUSIVE
    assert "Handshake status 500" in outcome.summary
    assert outcome.facts.admission[Mode.DIND].admitted is True


def test_readings_that_could_not_be_taken_prove_nothing() -> None:
    outcome = probe(FakeContext(readings="sh: 1: grep: not found\n"))
    assert outcome.status is Status.INCONCLUSIVE
    assert "could not be read" in outcome.summary


def test_a_capability_newer_than_the_table_is_named_by_number() -> None:
    assert privileged_admission.capability_name(21) == "CAP_SYS_ADMIN"
    assert privileged_admission.capability_name(45) == "capability 45"


def status_body(code: int, message: str) -> str:
    return json.dumps({"kind": "Status", "code": code, "message": message})


def test_a_422_from_a_limit_range_is_inconclusive_in_the_servers_words_never_a_denial() -> None:
    """The dry-run and the real create both refused by validation (requests above the LimitRange's limit)."""
    answer = admission.rejection(422, status_body(422, LIMIT_RANGE_422))
    outcome = probe(FakeContext(dry_run=answer, refused=answer))
    assert outcome.status is Status.INCONCLUSIVE, outcome.summary
    assert LIMIT_RANGE_422 in outcome.summary
    assert "no policy answered (invalid-spec, HTTP 422)" in outcome.summary
    assert "rejected" not in outcome.summary
    assert outcome.facts.admission[Mode.DIND].admitted is None


def test_an_expired_token_is_inconclusive_never_a_denial() -> None:
    answer = admission.rejection(401, status_body(401, "Unauthorized"))
    outcome = probe(FakeContext(dry_run=answer, refused=answer))
    assert outcome.status is Status.INCONCLUSIVE
    assert "(authentication, HTTP 401): Unauthorized" in outcome.summary


def test_a_policys_refusal_still_fails() -> None:
    psa = 'pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged'
    answer = admission.rejection(403, status_body(403, psa))
    outcome = probe(FakeContext(dry_run=answer))
    assert outcome.status is Status.FAIL
    assert psa in outcome.summary


def test_a_dependent_check_whose_pod_got_a_422_is_inconclusive_not_skipped() -> None:
    """--fail-on-inconclusive sees it: a skip would hide it as if a policy had refused the mode."""

    def work(_ctx: Any) -> Outcome:
        raise refusal(admission.rejection(422, status_body(422, LIMIT_RANGE_422)))

    verdict = run_probe(Task("docker-run", "docker-run", "", work), FakeContext())  # type: ignore[arg-type]
    assert verdict.status is Status.INCONCLUSIVE
    assert LIMIT_RANGE_422 in verdict.summary


def test_the_recommendation_does_not_call_a_422_an_admission_rejection() -> None:
    answer = admission.rejection(422, status_body(422, LIMIT_RANGE_422))
    verdict = Verdict(
        id="privileged-admission",
        capability="privileged-admission",
        status=Status.INCONCLUSIVE,
        summary=f"privileged pod not created, and no policy answered (invalid-spec, HTTP 422): {LIMIT_RANGE_422}",
        facts=Facts(admission={Mode.DIND: answer, Mode.KANIKO: answer}),
    )
    run = RunResult(cluster=None, verdicts=(verdict,), generated_at="", total_s=0.0)  # type: ignore[arg-type]
    for assessment in recommend.assess(run):
        assert not any("admission rejected" in text for text in assessment.causes + assessment.warnings)


def test_a_runtime_that_predates_the_newest_capabilities_is_still_privileged_and_says_so() -> None:
    """An older runtime's privileged set stops at CAP_AUDIT_READ: not stripped, but the pass names what it lacks."""
    outcome = probe(FakeContext(readings="CapEff=0000003fffffffff\ncap_last_cap=40\nmount=ok\n"))
    assert outcome.status is Status.PASS, outcome.summary
    assert "every capability but CAP_PERFMON, CAP_BPF, CAP_CHECKPOINT_RESTORE" in outcome.summary


def test_a_runtime_that_holds_fewer_capabilities_itself_is_still_privileged_and_says_so() -> None:
    """Recorded on the testbed: its containerd lacks CAP_SYS_RESOURCE, so its privileged containers do too."""
    outcome = probe(FakeContext(readings="CapEff=000001fffeffffff\ncap_last_cap=40\nmount=ok\n"))
    assert outcome.status is Status.PASS, outcome.summary
    assert "every capability but CAP_SYS_RESOURCE (CapEff 000001fffeffffff) and may mount" in outcome.summary


def test_without_cap_net_admin_dockerd_has_no_bridge_so_it_is_not_privileged() -> None:
    outcome = probe(FakeContext(readings="CapEff=000001ffffffefff\ncap_last_cap=40\nmount=ok\n"))
    assert outcome.status is Status.FAIL
    assert "lacks CAP_NET_ADMIN" in outcome.summary
