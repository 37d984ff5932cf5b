"""What probes may know of the run's options, and what a probe definition is.

The engine never sees these: the plugin binds a definition to the settings (ProbeDefinition.task) and hands the
engine a Task, so images, registries and StorageClasses stay the probes' business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from probes.engine import Outcome, ProbeContext, Task


@dataclass(frozen=True)
class Images:
    """Every image a probe may use; all overridable for air-gapped clusters and mirrors (--image-*)."""

    dind: str = "docker.io/library/docker:29-dind"
    buildkit: str = "docker.io/moby/buildkit:rootless"
    tools: str = "docker.io/library/debian:bookworm-slim"
    registry: str = "docker.io/library/registry:2"
    kaniko: str = "cgr.dev/chainguard/kaniko:latest"
    """Chainguard's build of chainguard-dev/kaniko, the maintained fork (upstream Kaniko was archived in 2025)."""
    builder: str = "docker.io/paketobuildpacks/builder-jammy-base:latest"
    """A CNB builder (lifecycle + buildpacks): Paketo's base builder, whose order has a group of the Procfile
    buildpack alone, so the probe's Procfile app (the smallest source it builds) is detected."""
    job: str = ""
    """The job container's image, whose docker CLI talks to the sidecar (empty: the DinD image's own CLI)."""

    @property
    def job_or_dind(self) -> str:
        """The image the job container runs: a runner image's old CLI can be refused by a newer dockerd."""
        return self.job or self.dind

    def by_role(self) -> dict[str, str]:
        """Role -> image, as the report lists the images the run used."""
        roles = {
            "dind": self.dind,
            "buildkit": self.buildkit,
            "kaniko": self.kaniko,
            "builder": self.builder,
            "tools": self.tools,
            "registry": self.registry,
        }
        if self.job:
            roles["job"] = self.job
        return roles


DEFAULT_REQUESTS: Mapping[str, str] = MappingProxyType({"cpu": "50m", "memory": "64Mi"})
DEFAULT_LIMITS: Mapping[str, str] = MappingProxyType({"cpu": "1", "memory": "1Gi"})


@dataclass(frozen=True)
class Resources:
    """Requests and limits on every probe container: a namespace with a ResourceQuota or LimitRange still works.

    The defaults fit a small node; the snippets carry the same values, so what users paste is what ran.
    """

    requests: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_REQUESTS))
    limits: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LIMITS))

    def to_spec(self) -> dict[str, dict[str, str]]:
        """The container's `resources:` block."""
        spec: dict[str, dict[str, str]] = {}
        if self.requests:
            spec["requests"] = dict(self.requests)
        if self.limits:
            spec["limits"] = dict(self.limits)
        return spec


@dataclass(frozen=True)
class ProbeSettings:
    """The run's options that decide what the probes deploy and where they push."""

    images: Images = field(default_factory=Images)
    resources: Resources = field(default_factory=Resources)
    storage_class: str | None = None
    registry: str | None = None
    registry_secret: str | None = None
    """The push-credentials Secret the run's pods mount: a copy in the run's namespace (deleted with the run) when
    --registry-secret names another namespace."""
    registry_secret_source: str | None = None
    """--registry-secret as given ([NS/]NAME): the user's own Secret, which the config to paste names."""
    registry_insecure: bool = False
    job_uid: int = 1000
    """The job container's uid and gid: real runners are not root (ARC 1001, SkyPilot 1000); 0 probes as root."""
    dind_env: tuple[tuple[str, str], ...] = ()
    """Extra environment of the dockerd sidecar, as the user's runner sets it (DOCKER_IPTABLES_LEGACY, ...)."""


@dataclass(frozen=True)
class ProbeDefinition:
    """One capability probe: what it proves, how (run), and what to do when it does not pass."""

    id: str
    capability: str
    title: str
    remediation: str
    run: Callable[[ProbeContext, ProbeSettings], Outcome]

    def task(self, settings: ProbeSettings) -> Task:
        """The probe bound to the run's settings, as the engine runs it."""

        def work(context: ProbeContext) -> Outcome:
            return self.run(context, settings)

        return Task(self.id, self.capability, self.remediation, work)
