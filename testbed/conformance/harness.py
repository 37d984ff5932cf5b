"""Running the suite against the testbed as a user does, and reading what it leaves behind.

The suite is run as a user runs it (a `pytest suites` subprocess with TESTBED_PYTEST_ARGS); tests assert on the
JSON report it writes (schema dindcheck/report/v1), never on terminal text.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / "testbed" / ".state"
MANAGED_BY = "app.kubernetes.io/managed-by=dindcheck"
RUN_OBJECT_PREFIX = "dc-"
"""Every object a run makes is named dc-<run id>-... (ProbeContext.name)."""
DEPLOY_USER = "system:serviceaccount:dindcheck:dindcheck"
"""The ServiceAccount of deploy/rbac.yaml."""
ENFORCED_WITHIN_S = 60.0
"""How long an admission policy, webhook, quota, namespace label or RBAC rule may take to reach the API server."""
NAMESPACE_GONE_S = 120.0
"""How long a deleted namespace may take to go (its pods stop first)."""


def read_shell_env(path: Path) -> dict[str, str]:
    """KEY='VALUE' lines as written by testbed/up."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = shlex.split(value)[0] if value else ""
    return values


@dataclass(frozen=True)
class Profile:
    """The testbed's active knobs, and the name the expectations table uses for them."""

    psa_default: str
    deny_privileged: bool
    userns: str
    cache_fs: str
    sysbox_class: bool
    dind: str = "29"
    """The DinD image's Docker: 29 (built from Go modules, as docker:dind today) or legacy (Debian's 20.10)."""
    pod_mtu: int | None = None
    """The pods' veth MTU (--pod-mtu); None: the CNI default, 1500, as the node's."""
    nodes: int = 1
    """2 (--nodes 2): a second node dindcheck-ci, pool label ci, tainted dedicated=ci:NoSchedule, containerd 2."""
    node_vm: bool = False
    """--node-vm: a node dindcheck-vm in a QEMU guest (Debian's kernel, cgroup v2, AppArmor), pool vm, tainted."""
    vm_kernel: str = "6.1"
    """--vm-kernel: the vm node's kernel, bookworm's 6.1 or bookworm-backports' 6.12."""
    vm_lsm: str = "apparmor"
    """--vm-lsm: the vm node's LSM, AppArmor (containerd's default pod profile) or SELinux enforcing."""

    @property
    def name(self) -> str:
        """permissive, deny-privileged, psa-baseline, userns-off, cache-fuse, ... (joined when combined)."""
        parts = []
        if self.psa_default != "privileged":
            parts.append(f"psa-{self.psa_default}")
        if self.deny_privileged:
            parts.append("deny-privileged")
        if self.userns == "off":
            parts.append("userns-off")
        if self.cache_fs != "ext4":
            parts.append(f"cache-{self.cache_fs}")
        if self.sysbox_class:
            parts.append("sysbox-class")
        if self.dind == "legacy":
            parts.append("dind-legacy")
        if self.pod_mtu is not None:
            parts.append(f"pod-mtu-{self.pod_mtu}")
        if self.nodes == 2:
            parts.append("two-nodes")
        if self.node_vm:
            parts.append("node-vm")
            if self.vm_kernel != "6.1":
                parts.append(f"vm-{self.vm_kernel}")
            if self.vm_lsm != "apparmor":
                parts.append(f"vm-{self.vm_lsm}")
        return "+".join(parts) or "permissive"


@dataclass(frozen=True)
class SuiteRun:
    """One `pytest suites` run: its exit code, its JSON report, its wall time and its output."""

    exit_code: int
    report: dict[str, Any]
    wall_s: float
    output: str
    out_dir: Path
    host_cpu_s: float = 0.0
    """CPU seconds the whole host spent while the run lasted (every node, the control plane and dindcheck)."""

    @property
    def host_busy(self) -> float:
        """The share of the host's cores that were busy during the run (1.0: every core, all the time)."""
        return round(self.host_cpu_s / ((os.cpu_count() or 1) * self.wall_s), 2)

    def check(self, check_id: str) -> dict[str, Any]:
        """The report's entry for one check (KeyError when it did not run)."""
        return next(c for c in self.report["checks"] if c["id"] == check_id)

    def mode(self, mode_id: str) -> dict[str, Any]:
        """The report's entry for one mode."""
        return next(m for m in self.report["modes"] if m["id"] == mode_id)


def suite_command(env: dict[str, str], out_dir: Path, *extra: str) -> list[str]:
    """The command a user types, pointed at the testbed, writing every report format into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "suites"),
        "-p",
        "no:cacheprovider",
        "-rA",
        *shlex.split(env["TESTBED_PYTEST_ARGS"]),
        "--report-json",
        str(out_dir / "report.json"),
        "--report-md",
        str(out_dir / "report.md"),
        "--junitxml",
        str(out_dir / "junit.xml"),
        *extra,
    ]


def run_suite(env: dict[str, str], out_dir: Path, *extra: str, timeout_s: float = 600) -> SuiteRun:
    """Run the suite to completion and load its JSON report ({} when none was written)."""
    report_path = out_dir / "report.json"
    report_path.unlink(missing_ok=True)
    started, cpu_before = time.monotonic(), host_busy_cpu_s()
    done = subprocess.run(
        suite_command(env, out_dir, *extra), cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    wall, cpu = time.monotonic() - started, host_busy_cpu_s() - cpu_before
    return load_run(out_dir, done.returncode, done.stdout + done.stderr, wall, cpu)


def load_run(out_dir: Path, exit_code: int, output: str, wall_s: float, host_cpu_s: float = 0.0) -> SuiteRun:
    """A finished run (also one started in the background): its output saved beside its JSON report ({} if none)."""
    (out_dir / "output.txt").write_text(output)
    report_path = out_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return SuiteRun(exit_code, report, wall_s, output, out_dir, round(host_cpu_s, 2))


@dataclass(frozen=True)
class StartedSuite:
    """A `pytest suites` run under way in the background (its output goes to out_dir/output.txt)."""

    proc: subprocess.Popen[str]
    out_dir: Path
    started: float


def start_suite(env: dict[str, str], out_dir: Path, *extra: str, environ: dict[str, str] | None = None) -> StartedSuite:
    """Start the suite as run_suite does, without waiting; environ adds variables (DINDCHECK_LEASE_STALE_S)."""
    (out_dir / "report.json").unlink(missing_ok=True)
    command = suite_command(env, out_dir, *extra)
    output = (out_dir / "output.txt").open("w")
    proc = subprocess.Popen(
        command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(environ or {})}
    )
    output.close()
    return StartedSuite(proc, out_dir, time.monotonic())


def finish_suite(started: StartedSuite, timeout_s: float = 600) -> SuiteRun:
    """Wait for a started suite run and load what it wrote."""
    exit_code = started.proc.wait(timeout=timeout_s)
    wall = time.monotonic() - started.started
    report_path = started.out_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return SuiteRun(exit_code, report, wall, (started.out_dir / "output.txt").read_text(), started.out_dir)


def run_objects(env: dict[str, str], run_id: str) -> list[str]:
    """Every object of one run (by its run id), its namespace included while it exists."""
    selector = f"dindcheck.io/run={run_id}"
    namespaced = kubectl(env, "get", "pods,pvc,secrets,leases", "-A", "-l", selector, "-o", "name")
    namespaces = kubectl(env, "get", "namespaces", "-l", selector, "-o", "name")
    return [line for line in (namespaced + namespaces).splitlines() if line.strip()]


def host_busy_cpu_s() -> float:
    """Busy CPU seconds of the host since boot (/proc/stat, all CPUs, idle and iowait left out).

    The testbed's nodes share the host's cores, so this is what a run costs the whole cluster: it tells a run that
    waited on the cluster from one that waited on the CPU.
    """
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """Run kubectl against the testbed as its admin; raises on failure."""
    done = kubectl_answer(env, *args, stdin=stdin)
    done.check_returncode()
    return done.stdout


def kubectl_answer(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the testbed as its admin and return how it ended (a refusal is an answer here)."""
    return subprocess.run(
        [str(Path(env["TESTBED_BIN"]) / "kubectl"), "--kubeconfig", env["KUBECONFIG"], *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=stdin,
    )


def with_kubeconfig(env: dict[str, str], kubeconfig: Path, *extra: str) -> dict[str, str]:
    """The testbed env with the suite pointed at another kubeconfig (and extra suite options)."""
    args = shlex.split(env["TESTBED_PYTEST_ARGS"])
    args[args.index("--kubeconfig") + 1] = str(kubeconfig)
    return {**env, "TESTBED_PYTEST_ARGS": shlex.join([*args, *extra])}


def statuses(run: SuiteRun) -> dict[str, str]:
    """Check id -> status, for comparing two runs' verdicts."""
    return {check["id"]: check["status"] for check in run.report.get("checks", [])}


def labelled_objects(env: dict[str, str]) -> list[str]:
    """Every object in the cluster that carries dindcheck's managed-by label, and every volume of a run's claim.

    A PV carries no label of ours (its provisioner makes it), so it is found by the claim it was bound to: a claim
    named like the runs' objects (dc-<run id>-...). A volume that outlived its claim is a leftover like any other.
    """
    namespaced = kubectl(
        env, "get", "pods,pvc,secrets,configmaps,services,leases", "-A", "-l", MANAGED_BY, "-o", "name"
    )
    namespaces = kubectl(env, "get", "namespaces", "-l", MANAGED_BY, "-o", "name")
    volumes = [
        f"persistentvolume/{volume['metadata']['name']} (claim {claim['namespace']}/{claim['name']})"
        for volume in json.loads(kubectl(env, "get", "persistentvolumes", "-o", "json"))["items"]
        if (claim := volume["spec"].get("claimRef") or {}).get("name", "").startswith(RUN_OBJECT_PREFIX)
    ]
    return [line for line in (namespaced + namespaces).splitlines() if line.strip()] + volumes


def wait_until_clean(env: dict[str, str], timeout_s: float) -> list[str]:
    """Poll until no labelled object is left or the time is up; returns what is left."""
    deadline = time.monotonic() + timeout_s
    left = labelled_objects(env)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = labelled_objects(env)
    return left


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = ENFORCED_WITHIN_S) -> None:
    """Poll until condition() holds; fail naming what never happened. Tests wait for conditions, never sleep."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f}s"
        time.sleep(0.5)


def dry_run_refusal(env: dict[str, str], manifest: dict[str, Any]) -> str:
    """The API server's answer to a server-side dry-run create of manifest: its refusal, '' when admitted."""
    done = kubectl_answer(env, "create", "--dry-run=server", "-f", "-", "-o", "name", stdin=json.dumps(manifest))
    if done.returncode == 0:
        return ""
    return done.stderr.strip() or f"refused without a message (kubectl exit {done.returncode})"


def wait_until_enforced(env: dict[str, str], manifest: dict[str, Any], refusal: str) -> str:
    """Wait until the API server refuses manifest (a server-side dry run) with refusal in its answer; the answer.

    Admission policies and their bindings, webhooks, quotas and namespace labels reach the API server's admission
    through its informers, asynchronously: a run started right after `kubectl apply` may still be admitted. A dry
    run the policy must refuse, refused, is the proof that the run that follows meets the policy.
    """
    answers: list[str] = []

    def refused() -> bool:
        answers.append(dry_run_refusal(env, manifest))
        return refusal in answers[-1]

    wait_until(refused, f"{refusal!r} in the answer to {manifest['metadata']['name']} (last: {answers[-1:]})")
    return answers[-1]


def wait_until_allowed(env: dict[str, str], user: str, verb_resource: tuple[str, ...], *, allowed: bool) -> None:
    """Wait until RBAC answers `kubectl auth can-i` for user as wanted (RBAC changes reach the authorizer late too)."""
    want = "yes" if allowed else "no"

    def answered() -> bool:
        done = kubectl_answer(env, "auth", "can-i", *verb_resource, "--as", user)
        return done.stdout.strip() == want

    wait_until(answered, f"kubectl auth can-i {' '.join(verb_resource)} --as {user} answering {want}")


def wait_until_rbac_granted(env: dict[str, str]) -> None:
    """Wait until the authorizer answers with deploy/rbac.yaml's rules, its Role's and its ClusterRole's.

    RBAC changes reach the authorizer through informers: a run started at once may be refused what the rules grant.
    """
    wait_until_allowed(env, DEPLOY_USER, ("deletecollection", "pods", "-n", "dindcheck"), allowed=True)
    wait_until_allowed(env, DEPLOY_USER, ("get", "persistentvolumes"), allowed=True)


@contextmanager
def fresh_namespace(env: dict[str, str], name: str) -> Iterator[str]:
    """A namespace made for one test and deleted after it (not waited for).

    One of the same name that an earlier test left terminating is waited out first: creating it would fail.
    """

    def gone() -> bool:
        return not kubectl(env, "get", "namespace", name, "--ignore-not-found", "-o", "name").strip()

    wait_until(gone, f"namespace {name} of an earlier test gone", timeout_s=NAMESPACE_GONE_S)
    kubectl(env, "create", "namespace", name)
    try:
        yield name
    finally:
        kubectl(env, "delete", "namespace", name, "--wait=false")


@contextmanager
def applied(env: dict[str, str], documents: str) -> Iterator[None]:
    """Objects applied for one test (YAML documents) and deleted after it."""
    kubectl(env, "apply", "-f", "-", stdin=documents)
    try:
        yield
    finally:
        kubectl(env, "delete", "-f", "-", "--ignore-not-found", stdin=documents)


def pod_manifest(name: str, namespace: str, image: str, **container: Any) -> dict[str, Any]:
    """A one-container pod for dry runs: what a policy under test must refuse (or admit)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": image, **container}]},
    }


@dataclass(frozen=True)
class KubeContext:
    """One context of a kubeconfig the tests write: its name, its user's credentials, and its own namespace."""

    name: str
    user: dict[str, Any]
    namespace: str = ""


def admin_user(env: dict[str, str]) -> dict[str, Any]:
    """The testbed admin's credentials, as its kubeconfig has them."""
    admin = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())
    user: dict[str, Any] = admin["users"][0]["user"]
    return user


def service_account_user(env: dict[str, str], name: str = "dindcheck", namespace: str = "dindcheck") -> dict[str, Any]:
    """A token of a ServiceAccount (what a CI system would be given), valid for an hour."""
    token = kubectl(env, "create", "token", name, "-n", namespace, "--duration", "1h").strip()
    return {"token": token}


def write_kubeconfig(env: dict[str, str], path: Path, contexts: list[KubeContext]) -> Path:
    """A kubeconfig of the testbed cluster with the given contexts (the first is current), self-contained."""
    admin = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())
    cluster = admin["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
        cluster = {"server": cluster["server"], "certificate-authority-data": ca}
    entries = []
    for context in contexts:
        entry: dict[str, Any] = {"cluster": "testbed", "user": context.name}
        if context.namespace:
            entry["namespace"] = context.namespace
        entries.append({"name": context.name, "context": entry})
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": cluster}],
        "users": [{"name": context.name, "user": context.user} for context in contexts],
        "contexts": entries,
        "current-context": contexts[0].name,
    }
    path.write_text(yaml.safe_dump(config))
    return path


RBAC_MANIFEST = REPO / "deploy" / "rbac.yaml"
RBAC_NAMESPACE = "dindcheck"


@contextmanager
def rbac_deployed(env: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
    """deploy/rbac.yaml applied and granted (its documents), removed after unless it was there before.

    The nightly conformance keeps deploy/ applied across profiles: it is left as found.
    """
    documents = [doc for doc in yaml.safe_load_all(RBAC_MANIFEST.read_text()) if doc]

    def phase() -> str:
        return kubectl(env, "get", "namespace", RBAC_NAMESPACE, "--ignore-not-found", "-o", "jsonpath={.status.phase}")

    # an earlier module's removal (--wait=false) may still be under way: nothing can be created in it meanwhile
    wait_until(lambda: phase().strip() != "Terminating", f"namespace {RBAC_NAMESPACE} gone", NAMESPACE_GONE_S)
    existed = bool(phase().strip())
    kubectl(env, "apply", "-f", str(RBAC_MANIFEST))
    wait_until_rbac_granted(env)
    try:
        yield documents
    finally:
        if not existed:
            kubectl(env, "delete", "-f", str(RBAC_MANIFEST), "--wait=false", "--ignore-not-found")
