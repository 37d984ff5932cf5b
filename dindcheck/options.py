"""Command-line options of `pytest suites`: one group, each option with its help text and validation.

CONTRACT (docs/contracts.md): names may grow, never shrink.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from kubernetes.utils import parse_quantity

from probes.engine import DEFAULT_TIMEOUT_S
from probes.exceptions import UsageError
from probes.lease import LEASE_STALE_S, stale_after_s
from probes.model import Mode, Placement
from probes.settings import DEFAULT_LIMITS, DEFAULT_REQUESTS, Images, Resources
from probes.targets import parse_node_selector, parse_toleration
from probes.workspace import PSA_LEVELS

USABLE_MODES = tuple(m.value for m in Mode if m is not Mode.NONE)


def add_options(parser: pytest.Parser) -> None:
    """Register the dindcheck option group."""
    group = parser.getgroup("dindcheck", "dindcheck: container-build capability probes")
    group.addoption("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
    group.addoption(
        "--context",
        action="append",
        help="kubeconfig context (default: the file's current context); repeat it to probe several clusters at once, "
        "each with its own namespace, preflight and cleanup, and one report with a cluster level",
    )
    group.addoption(
        "--all-contexts",
        action="store_true",
        help="probe every context of the kubeconfig at once (a fleet run, as with --context repeated)",
    )
    group.addoption(
        "--namespace",
        help="namespace for probe objects (default: a fresh dindcheck-<run id> namespace, deleted at the end)",
    )
    group.addoption(
        "--namespace-pod-security",
        choices=PSA_LEVELS,
        help="label the run's namespace pod-security.kubernetes.io/enforce=LEVEL; without it the cluster's own "
        "Pod Security policy is what gets measured (the report says when the label was set)",
    )
    group.addoption("--keep", action="store_true", help="keep probe objects after the run (for debugging)")
    group.addoption(
        "--storage-class",
        help="StorageClass of the build cache volume to test overlayfs on (default: the cluster's default class)",
    )
    group.addoption(
        "--registry",
        help="registry HOST[:PORT][/PATH] to push the rootless BuildKit test image to "
        "(default: a throwaway registry pod started by the run)",
    )
    group.addoption(
        "--registry-secret",
        help="[NAMESPACE/]NAME of a kubernetes.io/dockerconfigjson Secret with push credentials for --registry",
    )
    group.addoption("--registry-insecure", action="store_true", help="--registry speaks plain HTTP")
    defaults = Images()
    group.addoption("--image-dind", default=defaults.dind, help=f"DinD image (default: {defaults.dind})")
    group.addoption(
        "--image-buildkit", default=defaults.buildkit, help=f"rootless BuildKit image (default: {defaults.buildkit})"
    )
    group.addoption(
        "--image-tools", default=defaults.tools, help=f"tools image with /bin/sh (default: {defaults.tools})"
    )
    group.addoption(
        "--image-kaniko", default=defaults.kaniko, help=f"Kaniko executor image (default: {defaults.kaniko})"
    )
    group.addoption(
        "--image-builder",
        default=defaults.builder,
        help=f"Cloud Native Buildpacks builder image (lifecycle + buildpacks) for the buildpacks check "
        f"(default: {defaults.builder})",
    )
    group.addoption(
        "--image-registry", default=defaults.registry, help=f"throwaway registry image (default: {defaults.registry})"
    )
    group.addoption(
        "--image-job",
        default="",
        help="image of the job container that uses dockerd, i.e. your runner's image with its docker CLI "
        "(default: the DinD image's own CLI); an old CLI can be refused by a newer dockerd",
    )
    group.addoption(
        "--dind-env",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="environment of the dockerd sidecar as your runners set it, e.g. DOCKER_IPTABLES_LEGACY=1 or "
        "DOCKER_MIN_API_VERSION=1.41 (repeatable; the config to paste carries it)",
    )
    group.addoption("--image-pull-secret", help="name of an image pull Secret for every probe pod (in the namespace)")
    group.addoption(
        "--selinux-type",
        metavar="TYPE",
        help="SELinux type every probe pod runs as (pod securityContext.seLinuxOptions.type), e.g. spc_t where the "
        "nodes' policy refuses container_t what a mode needs; the config to paste carries it (default: the "
        "runtime's, container_t on SELinux nodes)",
    )
    group.addoption(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds each probe pod may take to start before its check is inconclusive (default: 120); above "
        "the default it also scales every command's time limit in probe pods (600: five times), for slow nodes",
    )
    group.addoption("--report-json", metavar="PATH", help="write the JSON report (schema dindcheck/report/v1)")
    group.addoption("--report-md", metavar="PATH", help="write the Markdown report (PR comment, CI step summary)")
    group.addoption(
        "--require-mode",
        metavar="MODE",
        help=f"preflight gate: exit 0 only if MODE is usable, 1 otherwise ({', '.join(USABLE_MODES)})",
    )
    group.addoption(
        "--fail-on-inconclusive",
        action="store_true",
        help="exit 1 when any selected check is inconclusive (proved nothing: an image, a registry, the API...)",
    )
    group.addoption(
        "--pod-requests",
        metavar="cpu=Q,memory=Q",
        default=_quantities(DEFAULT_REQUESTS),
        help=f"resource requests of every probe container (default: {_quantities(DEFAULT_REQUESTS)}; '' for none)",
    )
    group.addoption(
        "--pod-limits",
        metavar="cpu=Q,memory=Q",
        default=_quantities(DEFAULT_LIMITS),
        help=f"resource limits of every probe container (default: {_quantities(DEFAULT_LIMITS)}; '' for none)",
    )
    group.addoption(
        "--baseline",
        metavar="PATH",
        help="an earlier --report-json of the same cluster: the reports open with what changed since then",
    )
    group.addoption(
        "--pinned-baseline",
        metavar="PATH",
        help="a known-good --report-json of the same cluster, kept until replaced on purpose: what it proved and this "
        "run does not is a regression every run (not only the night it was lost)",
    )
    group.addoption(
        "--fail-on-regression",
        action="store_true",
        help="with --baseline and/or --pinned-baseline: exit 1 when a mode usable on a pool there is no longer usable "
        "on it, or a pool probed there was not probed",
    )
    group.addoption(
        "--report-prom",
        metavar="PATH",
        help="write Prometheus text format (gauges per check status and mode) for a textfile collector",
    )
    group.addoption(
        "--job-uid",
        type=int,
        default=1000,
        help="uid (and gid) of the job container that uses dockerd, as your runners run it: ARC 1001, SkyPilot "
        "1000; dockerd gets --group=GID so it can use the socket (default: 1000; 0 = root)",
    )
    group.addoption(
        "--node-selector",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="probe only nodes with this label, e.g. your CI pool's (repeatable; every probe pod and the volumes "
        "they bind land there; no Ready node matching is a usage error)",
    )
    group.addoption(
        "--toleration",
        metavar="KEY[=VALUE]:EFFECT|all",
        action="append",
        default=[],
        help="let probe pods onto nodes with this taint, e.g. dedicated=ci:NoSchedule, or 'all' for every taint "
        "(repeatable)",
    )
    group.addoption("--node", metavar="NAME", help="probe on this one node")
    group.addoption(
        "--each-pool",
        metavar="LABEL",
        help="run every check once per node pool, all pools at once: one node per distinct value of LABEL among "
        "Ready nodes (e.g. cloud.google.com/gke-nodepool, eks.amazonaws.com/nodegroup, agentpool); tainted "
        "pools need --toleration (all)",
    )
    add_config_options(group)
    group.addoption(
        "--sweep",
        action="store_true",
        help="only sweep: delete the objects of dead runs (killed runs whose Lease is no longer renewed), say what "
        "was removed, and exit without probing (every run sweeps at its start anyway, unless --no-sweep)",
    )
    group.addoption(
        "--no-sweep",
        action="store_true",
        help="do not delete dead runs' objects at the start of this run (the run still holds its own Lease)",
    )
    group.addoption(
        "--kubectl",
        metavar="PATH",
        help="no longer used: commands run in probe pods through the API server's exec channel (kept so existing "
        "command lines work)",
    )


def add_config_options(group: pytest.OptionGroup) -> None:
    """The config to paste outside the reports: --show-config (YAML on stdout) and --config-dir (files)."""
    group.addoption(
        "--show-config",
        metavar="MODE|recommended",
        help="print just the YAML of the pod spec MODE ran (or those of the recommended modes) to stdout, for "
        "`kubectl apply -f -` or a values file; the terminal report goes to stderr",
    )
    group.addoption(
        "--config-dir",
        metavar="DIR",
        help="write the config to paste as files: one pod spec per usable mode (MODE.yaml), skypilot.yaml and the "
        "runner snippets; files of earlier runs this run did not prove are removed",
    )


def read_show_config(value: str | None) -> str | None:
    """--show-config: 'recommended' or a usable mode id; UsageError names what is allowed."""
    if value is None:
        return None
    allowed = ("recommended", *USABLE_MODES)
    if value not in allowed:
        raise UsageError(f"--show-config {value!r}: choose one of: {', '.join(allowed)}")
    return value


def _quantities(values: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in values.items())


def _job_uid(value: object) -> int:
    uid = int(str(value))
    if not 0 <= uid <= 2**31 - 1:
        raise UsageError(f"--job-uid {uid} is not a uid (0 to 2147483647)")
    return uid


SELINUX_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
"""A type name (spc_t), not a whole label (user:role:type:level): what seLinuxOptions.type takes."""


def _selinux_type(value: str | None) -> str:
    if value is None:
        return ""
    if not SELINUX_TYPE.match(value):
        raise UsageError(f"--selinux-type {value!r} is not an SELinux type: give the type alone, e.g. spc_t")
    return value


def parse_env(option: str, values: list[str]) -> tuple[tuple[str, str], ...]:
    """['KEY=VALUE', ...] -> (('KEY', 'VALUE'), ...); UsageError names a value that is no KEY=VALUE."""
    parsed: list[tuple[str, str]] = []
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key or not (key[0].isalpha() or key[0] == "_") or not key.replace("_", "").isalnum():
            raise UsageError(f"{option} {text!r}: expected KEY=VALUE with KEY a variable name (e.g. FOO_BAR=1)")
        parsed.append((key, value))
    return tuple(parsed)


def parse_quantities(option: str, text: str) -> dict[str, str]:
    """'cpu=100m,memory=128Mi' -> {'cpu': '100m', 'memory': '128Mi'}; UsageError names the bad part."""
    parsed: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"{option} {text!r}: expected NAME=QUANTITY[,NAME=QUANTITY] such as cpu=100m,memory=128Mi")
        try:
            parse_quantity(value.strip())
        except ValueError:
            raise UsageError(
                f"{option}: {value.strip()!r} is not a Kubernetes quantity (e.g. 100m, 1, 128Mi)"
            ) from None
        parsed[key.strip()] = value.strip()
    return parsed


@dataclass(frozen=True)
class Options:
    """The validated options, as values."""

    kubeconfig: str | None
    context: str | None
    """The one context of a single-cluster run (None: the kubeconfig's current one)."""
    namespace: str | None
    namespace_pod_security: str | None
    keep: bool
    storage_class: str | None
    registry: str | None
    registry_secret: str | None
    registry_insecure: bool
    images: Images
    image_pull_secret: str | None
    timeout_s: float
    report_json: str | None
    report_md: str | None
    require_mode: Mode | None
    kubectl: str | None
    fail_on_inconclusive: bool = False
    job_uid: int = 1000
    baseline: str | None = None
    fail_on_regression: bool = False
    pinned_baseline: str | None = None
    report_prom: str | None = None
    resources: Resources = field(default_factory=Resources)
    dind_env: tuple[tuple[str, str], ...] = ()
    selinux_type: str = ""
    placement: Placement = field(default_factory=Placement)
    """--node-selector, --toleration, --node (with --each-pool: which nodes the pools are drawn from, and the
    tolerations every pool's pods get)."""
    each_pool: str | None = None
    show_config: str | None = None
    """--show-config: 'recommended' or a mode id whose pod spec goes to stdout (the terminal report to stderr)."""
    config_dir: str | None = None
    sweep_only: bool = False
    """--sweep: delete dead runs' objects and exit, probing nothing."""
    sweep: bool = True
    """Sweep at the start of the run (False with --no-sweep)."""
    lease_s: int = LEASE_STALE_S
    """The run's Lease duration (DINDCHECK_LEASE_STALE_S, for tests only), checked before anything is created."""
    contexts: tuple[str, ...] = ()
    """A fleet run's contexts, in the order given (--context repeated); empty for a single-cluster run."""
    all_contexts: bool = False
    """--all-contexts: a fleet run of every context of the kubeconfig (read when the run starts)."""

    @property
    def fleet(self) -> bool:
        """Several clusters in one run: the report gains a cluster level and test ids carry cluster=CONTEXT."""
        return self.all_contexts or len(self.contexts) > 1


def read_options(config: pytest.Config) -> Options:
    """Validate and freeze the options; UsageError names the bad value and what is allowed."""
    get = config.getoption
    require = get("require_mode")
    mode: Mode | None = None
    if require is not None:
        if require not in USABLE_MODES:
            raise UsageError(f"--require-mode {require!r} is not a mode; choose one of: {', '.join(USABLE_MODES)}")
        mode = Mode(require)
    timeout = float(get("timeout"))
    if timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, not {timeout:g}")
    if get("fail_on_regression") and not (get("baseline") or get("pinned_baseline")):
        raise UsageError(
            "--fail-on-regression needs --baseline PATH or --pinned-baseline PATH (the report to compare with)"
        )
    each_pool = get("each_pool")
    if each_pool is not None and not each_pool.strip():
        raise UsageError("--each-pool needs a node label, e.g. --each-pool cloud.google.com/gke-nodepool")
    if each_pool and get("node"):
        raise UsageError("--each-pool and --node contradict each other: --each-pool picks one node per pool itself")
    if get("sweep") and get("no_sweep"):
        raise UsageError("--sweep and --no-sweep contradict each other: --sweep only sweeps, --no-sweep never does")
    contexts = tuple(dict.fromkeys(get("context") or ()))
    if get("all_contexts") and contexts:
        raise UsageError("--all-contexts and --context contradict each other: --all-contexts takes every context")
    secret = get("registry_secret")
    if secret and "/" not in secret and not get("namespace"):
        raise UsageError("--registry-secret NAME needs --namespace (or write it as NAMESPACE/NAME to copy it)")
    return Options(
        kubeconfig=get("kubeconfig"),
        context=contexts[0] if len(contexts) == 1 else None,
        contexts=contexts if len(contexts) > 1 else (),
        all_contexts=bool(get("all_contexts")),
        namespace=get("namespace"),
        namespace_pod_security=get("namespace_pod_security"),
        keep=bool(get("keep")),
        storage_class=get("storage_class"),
        registry=get("registry"),
        registry_secret=secret,
        registry_insecure=bool(get("registry_insecure")),
        images=Images(
            dind=get("image_dind"),
            buildkit=get("image_buildkit"),
            tools=get("image_tools"),
            registry=get("image_registry"),
            kaniko=get("image_kaniko"),
            builder=get("image_builder"),
            job=get("image_job") or "",
        ),
        image_pull_secret=get("image_pull_secret"),
        timeout_s=timeout,
        report_json=get("report_json"),
        report_md=get("report_md"),
        require_mode=mode,
        kubectl=get("kubectl"),
        fail_on_inconclusive=bool(get("fail_on_inconclusive")),
        job_uid=_job_uid(get("job_uid")),
        baseline=get("baseline"),
        fail_on_regression=bool(get("fail_on_regression")),
        pinned_baseline=get("pinned_baseline"),
        report_prom=get("report_prom"),
        resources=Resources(
            requests=parse_quantities("--pod-requests", get("pod_requests") or ""),
            limits=parse_quantities("--pod-limits", get("pod_limits") or ""),
        ),
        dind_env=parse_env("--dind-env", get("dind_env") or []),
        selinux_type=_selinux_type(get("selinux_type")),
        placement=Placement(
            node_selector=parse_node_selector(get("node_selector") or []),
            tolerations=tuple(parse_toleration(text) for text in get("toleration") or []),
            node=get("node") or "",
        ),
        each_pool=each_pool.strip() if each_pool else None,
        show_config=read_show_config(get("show_config")),
        config_dir=get("config_dir"),
        sweep_only=bool(get("sweep")),
        sweep=not get("no_sweep"),
        lease_s=stale_after_s(),
    )
