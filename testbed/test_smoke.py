"""Smoke test of the testbed cluster: `pytest testbed/test_smoke.py` after `testbed/up [knobs]`.

Reads testbed/.state/env (what `up` printed) and testbed/.state/profile (which knobs are active), drives the cluster
with the kubectl that `up` built, and proves each capability by doing the real thing. Tests of knobs that are not
active are skipped with the reason. Every pod carries app.kubernetes.io/managed-by=dindcheck-testbed-smoke and lives
in a namespace of its own that is deleted at the end.

Two namespaces are used: "open" is labelled pod-security enforce=privileged (as a platform team would exempt a build
namespace), so DinD and BuildKit are checked whatever the PSA default; "plain" has no labels, so the cluster-wide PSA
defaults apply there.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.testbed

STATE = Path(__file__).resolve().parent / ".state"
MANAGED_BY = ("app.kubernetes.io/managed-by", "dindcheck-testbed-smoke")
VAP_NAME = "dindcheck-testbed-deny-privileged"
DEFAULT_NODE, CI_NODE, CI_NODE_IP = "dindcheck-node", "dindcheck-ci", "10.88.0.2"
POOL_LABEL = "dindcheck.io/pool"
CI_POOL = {
    "nodeSelector": {POOL_LABEL: "ci"},
    "tolerations": [{"key": "dedicated", "value": "ci", "effect": "NoSchedule"}],
}
VM_NODE, VM_NODE_IP = "dindcheck-vm", "10.88.0.3"
VM_POOL = {
    "nodeSelector": {POOL_LABEL: "vm"},
    "tolerations": [{"key": "dedicated", "value": "vm", "effect": "NoSchedule"}],
}
FUSE_ROOT = "/var/lib/dindcheck-testbed/cache/fuse"
MANIFEST_ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
)


def read_kv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (values may be shell-quoted) -> dict."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        key, _, raw = line.partition("=")
        parts = shlex.split(raw)
        out[key.strip()] = parts[0] if parts else ""
    return out


@dataclass
class Testbed:
    """What `up` announced (env, profile) and a kubectl bound to it; one per test session."""

    __test__ = False  # not a test class (pytest collects Test* names)

    env: dict[str, str]
    profile: dict[str, str]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def kubectl_path(self) -> str:
        """The kubectl that `up` built."""
        return str(Path(self.env["TESTBED_BIN"]) / "kubectl")

    @property
    def ns_open(self) -> str:
        """Namespace labelled pod-security enforce=privileged (a build namespace a platform team exempted)."""
        return f"dindcheck-smoke-{self.run_id}-open"

    @property
    def ns_plain(self) -> str:
        """Namespace without labels: the cluster-wide PSA defaults apply."""
        return f"dindcheck-smoke-{self.run_id}-plain"

    def kubectl(
        self, *args: str, stdin: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Runs kubectl against the testbed; with check, a failure raises with its output."""
        cmd = [self.kubectl_path, "--kubeconfig", self.env["KUBECONFIG"], *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            msg = f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            raise AssertionError(msg)
        return proc

    def apply(self, obj: dict[str, Any], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Creates OBJ (a real create: admission answers as it would for a user)."""
        return self.kubectl("create", "-f", "-", stdin=json.dumps(obj), check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """One object as a dict."""
        obj: dict[str, Any] = json.loads(self.kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)
        return obj

    def exec(
        self, namespace: str, pod: str, script: str, *, container: str = "c", timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Runs a shell script in a container; never raises on a non-zero exit."""
        return self.kubectl(
            "-n", namespace, "exec", pod, "-c", container, "--", "sh", "-c", script, timeout=timeout, check=False
        )

    def logs(self, namespace: str, pod: str, *, previous: bool = False) -> str:
        """The tail of a pod's log (empty when there is none)."""
        args = ["-n", namespace, "logs", pod, "--tail=200"]
        if previous:
            args.append("--previous")
        return self.kubectl(*args, check=False).stdout

    def events(self, namespace: str, name: str) -> str:
        """The events about one object, one "REASON MESSAGE" line each."""
        proc = self.kubectl(
            "-n",
            namespace,
            "get",
            "events",
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
            "--no-headers",
            check=False,
        )
        return proc.stdout

    def wait_running(self, namespace: str, pod: str, timeout: float = 180) -> None:
        """Waits until every container of POD is ready (running); fails with the pod's story otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj = self.get("pod", pod, namespace)
            statuses = obj.get("status", {}).get("containerStatuses") or []
            if statuses and all("running" in s.get("state", {}) for s in statuses):
                return
            for s in statuses:
                term = s.get("state", {}).get("terminated") or s.get("lastState", {}).get("terminated")
                if term:
                    pytest.fail(
                        f"pod {pod} container {s['name']} terminated: {term}\nlogs:\n"
                        f"{self.logs(namespace, pod)}\nevents:\n{self.events(namespace, pod)}"
                    )
            time.sleep(1)
        pytest.fail(
            f"pod {pod} not running after {timeout}s: {self.get('pod', pod, namespace).get('status')}\n"
            f"events:\n{self.events(namespace, pod)}"
        )


def pod(name: str, namespace: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict([MANAGED_BY])},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "containers": containers,
            **spec,
        },
    }


def privileged_container(image: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "c",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"privileged": True},
        **extra,
    }


def buildkit_pod(tb: Testbed, name: str) -> dict[str, Any]:
    """The rootless BuildKit reference pod (moby/buildkit examples/kubernetes/*.rootless.yaml)."""
    container = {
        "name": "c",
        "image": tb.env["TESTBED_IMAGE_BUILDKIT"],
        "imagePullPolicy": "IfNotPresent",
        "args": ["--oci-worker-no-process-sandbox"],
        "securityContext": {
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
        },
        "volumeMounts": [{"name": "buildkitd", "mountPath": "/home/user/.local/share/buildkit"}],
    }
    return pod(name, tb.ns_open, [container], volumes=[{"name": "buildkitd", "emptyDir": {}}])


def overlay_script(directory: str) -> str:
    d = shlex.quote(directory)
    return (
        f"set -e; mkdir -p {d}/lower {d}/upper {d}/work {d}/merged; echo hi > {d}/lower/f; "
        f"mount -t overlay overlay -o lowerdir={d}/lower,upperdir={d}/upper,workdir={d}/work {d}/merged; "
        f"echo x > {d}/merged/new; rm {d}/merged/f; umount {d}/merged; echo OVERLAY-OK"
    )


# --------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def tb() -> Iterator[Testbed]:
    env_file, profile_file = STATE / "env", STATE / "profile"
    if not env_file.exists() or not profile_file.exists():
        pytest.fail(f"testbed is not up ({env_file} / {profile_file} missing): run testbed/up first", pytrace=False)
    testbed = Testbed(env=read_kv(env_file), profile=read_kv(profile_file))
    for ns, labels in ((testbed.ns_open, {"pod-security.kubernetes.io/enforce": "privileged"}), (testbed.ns_plain, {})):
        testbed.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {MANAGED_BY[0]: MANAGED_BY[1], **labels}},
            }
        )
    # Pods need the namespace's default ServiceAccount (made by the controller-manager).
    for ns in (testbed.ns_open, testbed.ns_plain):
        deadline = time.monotonic() + 60
        while testbed.kubectl("-n", ns, "get", "serviceaccount", "default", check=False).returncode != 0:
            assert time.monotonic() < deadline, f"no default ServiceAccount in {ns} after 60s"
            time.sleep(1)
    yield testbed
    selector = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
    for ns in (testbed.ns_open, testbed.ns_plain):
        testbed.kubectl(
            "-n",
            ns,
            "delete",
            "pods",
            "-l",
            selector,
            "--grace-period=0",
            "--force",
            "--ignore-not-found",
            "--wait=true",
            timeout=120,
            check=False,
        )
        testbed.kubectl(
            "-n", ns, "delete", "pvc", "--all", "--ignore-not-found", "--wait=true", timeout=120, check=False
        )
    testbed.kubectl(
        "delete", "namespace", "-l", selector, "--ignore-not-found", "--wait=true", timeout=180, check=False
    )


def knob(tb: Testbed, name: str) -> str:
    return tb.profile.get(name, "")


def two_nodes(tb: Testbed) -> bool:
    return knob(tb, "NODES") == "2"


def vm_node(tb: Testbed) -> bool:
    return knob(tb, "NODE_VM") == "true"


# ------------------------------------------------------------------------------------------------------ tests
def nodes_by_name(tb: Testbed) -> dict[str, dict[str, Any]]:
    items = json.loads(tb.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {node["metadata"]["name"]: node for node in items}


def test_node_ready(tb: Testbed) -> None:
    """Every node of the profile is Ready, in its pool, with its runtime; only the ci and vm nodes are tainted."""
    nodes = nodes_by_name(tb)
    want = {DEFAULT_NODE: "default", CI_NODE: "ci"} if two_nodes(tb) else {DEFAULT_NODE: "default"}
    if vm_node(tb):
        want[VM_NODE] = "vm"
    assert sorted(nodes) == sorted(want), list(nodes)
    for name, pool in want.items():
        node = nodes[name]
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}.get("Ready")
        assert ready == "True", (name, node["status"]["conditions"])
        assert node["metadata"]["labels"].get(POOL_LABEL) == pool, (name, node["metadata"]["labels"])
    default = nodes[DEFAULT_NODE]
    assert not default["spec"].get("taints"), default["spec"]
    assert default["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6."), default["status"]
    if two_nodes(tb):
        ci = nodes[CI_NODE]
        assert ci["spec"].get("taints") == [{"key": "dedicated", "value": "ci", "effect": "NoSchedule"}], ci["spec"]
        assert ci["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2."), ci["status"]
        addresses = {a["type"]: a["address"] for a in ci["status"]["addresses"]}
        assert addresses.get("InternalIP") == CI_NODE_IP, addresses
    if vm_node(tb):
        vm = nodes[VM_NODE]
        assert vm["spec"].get("taints") == [{"key": "dedicated", "value": "vm", "effect": "NoSchedule"}], vm["spec"]
        addresses = {a["type"]: a["address"] for a in vm["status"]["addresses"]}
        assert addresses.get("InternalIP") == VM_NODE_IP, addresses
        # Debian's own kernel in the guest, not the host's.
        assert vm["status"]["nodeInfo"]["kernelVersion"] != default["status"]["nodeInfo"]["kernelVersion"], vm["status"]
        # --vm-kernel: bookworm's 6.1 (6.1.0-N-amd64) or bookworm-backports' 6.12 (6.12.N+debN-amd64).
        want_kernel = (knob(tb, "VM_KERNEL") or "6.1") + "."
        assert vm["status"]["nodeInfo"]["kernelVersion"].startswith(want_kernel), (want_kernel, vm["status"])


def test_dind_nested_docker_run(tb: Testbed) -> None:
    """A privileged DinD pod runs dockerd and a nested `docker run` of an image made in the pod (docker import).

    Its Docker version and storage are the ones the --dind profile announces.
    """
    if knob(tb, "DENY_PRIVILEGED") == "true":
        pytest.skip("--deny-privileged is active: privileged pods are denied (see test_deny_privileged_rejects)")
    name = "smoke-dind"
    container = privileged_container(
        tb.env["TESTBED_IMAGE_DIND"],
        args=["--host=unix:///var/run/docker.sock"],
        env=[{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
        volumeMounts=[{"name": "docker", "mountPath": "/var/lib/docker"}],
    )
    tb.apply(pod(name, tb.ns_open, [container], volumes=[{"name": "docker", "emptyDir": {}}]))
    tb.wait_running(tb.ns_open, name)
    script = (
        "set -e; i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 90 ] || { docker info; exit 1; }; "
        "sleep 1; done; "
        "rm -rf /tmp/rootfs; mkdir -p /tmp/rootfs/bin; cp /bin/busybox /tmp/rootfs/bin/busybox; "
        "tar -C /tmp/rootfs -c . | docker import - smoke/busybox:1 >/dev/null; "
        "docker run --rm --network none smoke/busybox:1 /bin/busybox echo nested-docker-run-ok; "
        "docker info -f 'driver={{.Driver}} server={{.ServerVersion}} status={{json .DriverStatus}}'; "
        "docker version -f 'client={{.Client.Version}}'"
    )
    proc = tb.exec(tb.ns_open, name, script)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\ndockerd logs:\n{tb.logs(tb.ns_open, name)}"
    assert "nested-docker-run-ok" in proc.stdout
    if knob(tb, "DIND") == "legacy":  # Debian's Docker 20.10: graph driver overlay2
        expected = ["driver=overlay2", "server=20.10.", "client=20.10."]
    else:  # Docker 29: the containerd image store (snapshotter overlayfs) is the default on a fresh data root
        expected = ["driver=overlayfs", "io.containerd.snapshotter.v1", "server=29.", "client=29."]
    for text in expected:
        assert text in proc.stdout, proc.stdout


def start_buildkit(tb: Testbed, name: str) -> None:
    tb.apply(buildkit_pod(tb, name))


def test_rootless_buildkit_build_and_push(tb: Testbed) -> None:
    """Rootless BuildKit builds FROM scratch + COPY and pushes to the testbed registry; the manifest is read back."""
    if knob(tb, "USERNS") == "off":
        pytest.skip(
            "--userns off is active: rootless BuildKit must fail (see test_userns_off_breaks_rootless_buildkit)"
        )
    name = "smoke-buildkit"
    start_buildkit(tb, name)
    tb.wait_running(tb.ns_open, name)
    registry = tb.env["TESTBED_REGISTRY"]
    repo, tag = "dindcheck-smoke/hello", tb.run_id
    script = (
        "set -e; i=0; until buildctl debug workers >/dev/null 2>&1; do i=$((i+1)); "
        "[ $i -lt 60 ] || { buildctl debug workers; exit 1; }; sleep 1; done; "
        "d=$(mktemp -d); echo hello-from-buildkit > $d/hello.txt; "
        "printf 'FROM scratch\\nCOPY hello.txt /hello.txt\\n' > $d/Dockerfile; "
        "buildctl build --progress=plain --frontend dockerfile.v0 --local context=$d --local dockerfile=$d "
        f"--output type=image,name={registry}/{repo}:{tag},push=true,registry.insecure=true"
    )
    proc = tb.exec(tb.ns_open, name, script, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\nbuildkitd logs:\n{tb.logs(tb.ns_open, name)}"
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        manifest = json.load(resp)
    if "manifests" in manifest:  # an index: follow the linux/amd64 (or first) entry
        digest = manifest["manifests"][0]["digest"]
        req = urllib.request.Request(
            f"http://{registry}/v2/{repo}/manifests/{digest}", headers={"Accept": MANIFEST_ACCEPT}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            manifest = json.load(resp)
    assert len(manifest["layers"]) == 1, manifest


def test_userns_off_breaks_rootless_buildkit(tb: Testbed) -> None:
    """With user.max_user_namespaces=0 on the node, rootless BuildKit cannot start its user namespace."""
    if knob(tb, "USERNS") != "off":
        pytest.skip("--userns off is not active (user namespaces are allowed)")
    name = "smoke-buildkit-nouserns"
    start_buildkit(tb, name)
    deadline = time.monotonic() + 120
    story = ""
    while time.monotonic() < deadline:
        obj = tb.get("pod", name, tb.ns_open)
        statuses = obj.get("status", {}).get("containerStatuses") or []
        terminated = [s["state"]["terminated"] for s in statuses if "terminated" in s.get("state", {})]
        if terminated:
            story = tb.logs(tb.ns_open, name)
            break
        if statuses and all("running" in s.get("state", {}) for s in statuses):
            # Still running: does buildkitd ever come up? It must not be able to build.
            proc = tb.exec(tb.ns_open, name, "buildctl debug workers", timeout=30)
            if proc.returncode == 0 and proc.stdout.strip().count("\n") >= 1:
                pytest.fail(f"rootless buildkitd came up with user namespaces off:\n{proc.stdout}")
        time.sleep(2)
    assert story, f"rootless buildkitd neither exited nor failed within 120s: {tb.logs(tb.ns_open, name)}"
    # What the kernel answers at max_user_namespaces=0 (rootlesskit: "fork/exec /proc/self/exe: no space left on
    # device"), whether the node sysctl or its seccomp emulation (USERNS_MECHANISM=seccomp) is in force.
    assert "no space left on device" in story.lower(), story
    if knob(tb, "USERNS_MECHANISM") == "sysctl":
        proc = tb.exec(tb.ns_open, "smoke-dind", "cat /proc/sys/user/max_user_namespaces")
        assert proc.stdout.strip() == "0" or proc.returncode != 0, proc.stdout


def test_privileged_admitted_by_default(tb: Testbed) -> None:
    if knob(tb, "PSA_DEFAULT") != "privileged" or knob(tb, "DENY_PRIVILEGED") == "true":
        pytest.skip("a restricting knob is active (--psa-default or --deny-privileged)")
    obj = pod("smoke-priv-default", tb.ns_plain, [privileged_container(tb.env["TESTBED_IMAGE_TOOLS"])])
    proc = tb.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(obj), check=False)
    assert proc.returncode == 0, proc.stderr


def test_psa_default_rejects_privileged(tb: Testbed) -> None:
    level = knob(tb, "PSA_DEFAULT")
    if level not in {"baseline", "restricted"}:
        pytest.skip(f"--psa-default is {level or 'privileged'}: privileged pods are allowed by PodSecurity")
    obj = pod("smoke-priv-psa", tb.ns_plain, [privileged_container(tb.env["TESTBED_IMAGE_TOOLS"])])
    proc = tb.apply(obj, check=False)
    assert proc.returncode != 0, "privileged pod was admitted under a PSA default of " + level
    assert f'violates PodSecurity "{level}:latest"' in proc.stderr, proc.stderr
    assert "privileged" in proc.stderr, proc.stderr


def test_deny_privileged_rejects(tb: Testbed) -> None:
    if knob(tb, "DENY_PRIVILEGED") != "true":
        pytest.skip("--deny-privileged is not active")
    tools = tb.env["TESTBED_IMAGE_TOOLS"]
    obj = pod("smoke-priv-vap", tb.ns_open, [privileged_container(tools)])
    proc = tb.apply(obj, check=False)
    assert proc.returncode != 0, "privileged pod was admitted under --deny-privileged"
    assert f"ValidatingAdmissionPolicy '{VAP_NAME}'" in proc.stderr, proc.stderr
    assert f"[denied by {VAP_NAME}]" in proc.stderr, proc.stderr
    init = {**privileged_container(tools), "name": "init"}
    obj = pod("smoke-priv-vap-init", tb.ns_open, [{"name": "c", "image": tools}], initContainers=[init])
    proc = tb.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(obj), check=False)
    assert proc.returncode != 0, "privileged init container was admitted under --deny-privileged"
    assert "init" in proc.stderr, proc.stderr


def overlay_pod(tb: Testbed, name: str, **spec: Any) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": tb.ns_open, "labels": dict([MANAGED_BY])},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": tb.env["TESTBED_CACHE_STORAGE_CLASS"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    tb.apply(claim)
    container = privileged_container(
        tb.env["TESTBED_IMAGE_TOOLS"],
        command=["sleep", "infinity"],
        volumeMounts=[{"name": "cache", "mountPath": "/cache"}, {"name": "scratch", "mountPath": "/scratch"}],
    )
    tb.apply(
        pod(
            name,
            tb.ns_open,
            [container],
            volumes=[
                {"name": "cache", "persistentVolumeClaim": {"claimName": name}},
                {"name": "scratch", "emptyDir": {}},
            ],
            **spec,
        )
    )
    tb.wait_running(tb.ns_open, name)


def test_cache_fs_fuse_breaks_overlay(tb: Testbed) -> None:
    """On a FUSE-backed cache PVC an overlay mount fails (as on NFS) while one on an emptyDir works."""
    if knob(tb, "CACHE_FS") != "fuse":
        pytest.skip(f"--cache-fs is {knob(tb, 'CACHE_FS') or 'ext4'}, not fuse")
    if knob(tb, "DENY_PRIVILEGED") == "true":
        pytest.skip("--deny-privileged is active: the overlay check needs a privileged pod")
    name = "smoke-overlay-fuse"
    overlay_pod(tb, name)
    fstype = tb.exec(tb.ns_open, name, "stat -f -c %T /cache").stdout.strip()
    assert fstype.startswith("fuse"), fstype
    ok = tb.exec(tb.ns_open, name, overlay_script("/scratch/ov"))
    assert "OVERLAY-OK" in ok.stdout, f"overlay on emptyDir failed: {ok.stdout}\n{ok.stderr}"
    bad = tb.exec(tb.ns_open, name, overlay_script("/cache/ov"))
    assert bad.returncode != 0, f"overlay on the FUSE cache volume unexpectedly worked: {bad.stdout}"
    assert "OVERLAY-OK" not in bad.stdout


def test_cache_fs_overlay_works(tb: Testbed) -> None:
    """On an ext4 or tmpfs cache PVC an overlay mount works."""
    fs = knob(tb, "CACHE_FS") or "ext4"
    if fs == "fuse":
        pytest.skip("--cache-fs fuse is active (see test_cache_fs_fuse_breaks_overlay)")
    if knob(tb, "DENY_PRIVILEGED") == "true":
        pytest.skip("--deny-privileged is active: the overlay check needs a privileged pod")
    name = f"smoke-overlay-{fs}"
    overlay_pod(tb, name)
    fstype = tb.exec(tb.ns_open, name, "stat -f -c %T /cache").stdout.strip()
    assert fstype == {"ext4": "ext2/ext3", "tmpfs": "tmpfs"}[fs], fstype
    ok = tb.exec(tb.ns_open, name, overlay_script("/cache/ov"))
    assert "OVERLAY-OK" in ok.stdout, f"overlay on the {fs} cache volume failed: {ok.stdout}\n{ok.stderr}"


def test_ci_node_runs_tolerating_pod(tb: Testbed) -> None:
    """With --nodes 2: a pod selecting the ci pool and tolerating its taint runs on the ci node (containerd 2).

    The image is pulled from the testbed registry there, exec and logs work (API server -> the second kubelet), its
    IP is from the ci node's range, it reaches the registry on the node, and it meets the profile's userns setting.
    """
    if not two_nodes(tb):
        pytest.skip("--nodes 2 is not active")
    name = "smoke-ci-pod"
    container = {
        "name": "c",
        "image": tb.env["TESTBED_IMAGE_TOOLS"],
        "imagePullPolicy": "Always",  # a pull through the ci containerd's hosts.toml, not only the imported image
        "command": ["sh", "-c", "echo ci-pod-started; exec sleep infinity"],
    }
    tb.apply(pod(name, tb.ns_open, [container], **CI_POOL))
    tb.wait_running(tb.ns_open, name)
    obj = tb.get("pod", name, tb.ns_open)
    assert obj["spec"]["nodeName"] == CI_NODE, obj["spec"]
    octets = [int(x) for x in obj["status"]["podIP"].split(".")]
    assert octets[:2] == [10, 88], obj["status"]["podIP"]
    assert octets[2] >= 128, f"{obj['status']['podIP']} is not in the ci node's range 10.88.128.0/17"
    assert "ci-pod-started" in tb.logs(tb.ns_open, name)
    registry = tb.env["TESTBED_REGISTRY"]
    host, port = registry.split(":")
    script = (
        f"exec 3<>/dev/tcp/{host}/{port} && printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3; "
        "unshare -U true 2>&1 && echo USERNS-OK; true"
    )
    proc = tb.kubectl("-n", tb.ns_open, "exec", name, "-c", "c", "--", "bash", "-c", script, check=False)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "200 OK" in proc.stdout, proc.stdout
    assert_userns_as_the_profile_says(tb, proc.stdout)  # runc-wrapper's emulation (or the sysctl) applies here too


def assert_userns_as_the_profile_says(tb: Testbed, said: str) -> None:
    """`unshare -U true && echo USERNS-OK` worked, or with --userns off failed as the kernel says it (ENOSPC)."""
    if knob(tb, "USERNS") == "off":
        assert "USERNS-OK" not in said, said
        assert "no space left on device" in said.lower(), said
    else:
        assert "USERNS-OK" in said, said


def test_vm_node_runs_pod_under_its_lsm_on_cgroup2(tb: Testbed) -> None:
    """With --node-vm: a pod selecting the vm pool and tolerating its taint runs on the guest's kernel.

    It runs confined by containerd's default AppArmor profile (enforce), or with --vm-lsm selinux as container_t
    with its own MCS categories, on cgroup v2, its image from the guest's
    seeded image store, exec and logs through the guest's kubelet, its IP in the vm node's
    range, and it reaches the registry on the first node; unprivileged user namespaces work (the guest's real kernel),
    or with --userns off fail as the kernel's own switch makes them (ENOSPC, and the sysctl reads 0).
    """
    if not vm_node(tb):
        pytest.skip("--node-vm is not active")
    name = "smoke-vm-pod"
    container = {
        "name": "c",
        "image": tb.env["TESTBED_IMAGE_TOOLS"],
        "command": ["sh", "-c", "echo vm-pod-started; exec sleep infinity"],
    }
    tb.apply(pod(name, tb.ns_open, [container], **VM_POOL))
    tb.wait_running(tb.ns_open, name, timeout=600)  # the guest is emulated: a container start takes 10-20 s
    obj = tb.get("pod", name, tb.ns_open)
    assert obj["spec"]["nodeName"] == VM_NODE, obj["spec"]
    octets = [int(x) for x in obj["status"]["podIP"].split(".")]
    assert octets[:3] == [10, 88, 0], obj["status"]["podIP"]
    assert 16 <= octets[3] <= 254, f"{obj['status']['podIP']} is not in the vm node's range 10.88.0.16-254"
    assert "vm-pod-started" in tb.logs(tb.ns_open, name)
    host, port = tb.env["TESTBED_REGISTRY"].split(":")
    script = (
        "cat /proc/self/attr/current; echo; stat -f -c 'fs=%T' /sys/fs/cgroup; "
        f"exec 3<>/dev/tcp/{host}/{port} && printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3; "
        "unshare -U true 2>&1 && echo USERNS-OK; true"
    )
    proc = tb.kubectl("-n", tb.ns_open, "exec", name, "-c", "c", "--", "bash", "-c", script, check=False, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    if knob(tb, "VM_LSM") == "selinux":  # containerd's enable_selinux: container_t with the pod's own categories
        assert "system_u:system_r:container_t:s0:c" in proc.stdout, proc.stdout
    else:
        assert "cri-containerd.apparmor.d (enforce)" in proc.stdout, proc.stdout
    assert "fs=cgroup2fs" in proc.stdout, proc.stdout
    assert "200 OK" in proc.stdout, proc.stdout
    assert_userns_as_the_profile_says(tb, proc.stdout)
    if knob(tb, "USERNS") == "off":  # the guest kernel's own user.max_user_namespaces=0, from its command line
        sysctl = "/proc/sys/user/max_user_namespaces"
        userns = tb.kubectl("-n", tb.ns_open, "exec", name, "-c", "c", "--", "cat", sysctl)
        assert userns.stdout.strip() == "0", "the real switch reads 0 in the pod (the emulation cannot make it so)"


def test_ci_node_cache_volume_on_fuse(tb: Testbed) -> None:
    """With --nodes 2: a cache-class PVC used by a pod on the ci node is made on the FUSE root.

    The PV has a nodeAffinity for that node, and overlay fails on it (as on the NFS-like storage of a CI pool).
    """
    if not two_nodes(tb):
        pytest.skip("--nodes 2 is not active")
    if knob(tb, "DENY_PRIVILEGED") == "true":
        pytest.skip("--deny-privileged is active: the overlay check needs a privileged pod")
    name = "smoke-ci-overlay"
    overlay_pod(tb, name, **CI_POOL)
    assert tb.get("pod", name, tb.ns_open)["spec"]["nodeName"] == CI_NODE
    claim = tb.get("pvc", name, tb.ns_open)
    assert claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == CI_NODE, claim["metadata"]
    volume = json.loads(tb.kubectl("get", "pv", claim["spec"]["volumeName"], "-o", "json").stdout)
    assert volume["spec"]["hostPath"]["path"].startswith(FUSE_ROOT + "/"), volume["spec"]
    term = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert (term["key"], term["values"]) == ("kubernetes.io/hostname", [CI_NODE]), volume["spec"]["nodeAffinity"]
    fstype = tb.exec(tb.ns_open, name, "stat -f -c %T /cache").stdout.strip()
    assert fstype.startswith("fuse"), fstype
    bad = tb.exec(tb.ns_open, name, overlay_script("/cache/ov"))
    assert "OVERLAY-OK" not in bad.stdout, f"overlay on the ci node's FUSE cache volume worked: {bad.stdout}"
    ok = tb.exec(tb.ns_open, name, overlay_script("/scratch/ov"))
    assert "OVERLAY-OK" in ok.stdout, f"overlay on an emptyDir on the ci node failed: {ok.stdout}\n{ok.stderr}"


def test_ci_node_repels_untolerating_pods(tb: Testbed) -> None:
    """With --nodes 2: a pod that selects the ci pool without tolerating its taint is never scheduled.

    And no pod of this session without the toleration ran on the ci node.
    """
    if not two_nodes(tb):
        pytest.skip("--nodes 2 is not active")
    name = "smoke-ci-untolerated"
    container = {"name": "c", "image": tb.env["TESTBED_IMAGE_TOOLS"], "command": ["sleep", "infinity"]}
    tb.apply(pod(name, tb.ns_open, [container], nodeSelector={POOL_LABEL: "ci"}))
    deadline = time.monotonic() + 30
    events = ""
    while time.monotonic() < deadline and "FailedScheduling" not in events:
        time.sleep(1)
        events = tb.events(tb.ns_open, name)
    assert "FailedScheduling" in events, events
    assert "untolerated taint" in events, events
    assert not tb.get("pod", name, tb.ns_open)["spec"].get("nodeName")
    for ns in (tb.ns_open, tb.ns_plain):
        for item in json.loads(tb.kubectl("-n", ns, "get", "pods", "-o", "json").stdout)["items"]:
            tolerates = any(t.get("key") == "dedicated" for t in item["spec"].get("tolerations") or [])
            if not tolerates:
                assert item["spec"].get("nodeName") in {None, DEFAULT_NODE}, item["metadata"]["name"]


def test_sysbox_class_pod_cannot_start(tb: Testbed) -> None:
    """RuntimeClass sysbox-runc exists but no node has the handler: the pod is admitted yet never starts."""
    if knob(tb, "SYSBOX_CLASS") != "true":
        pytest.skip("--sysbox-class is not active")
    name = "smoke-sysbox"
    container = {
        "name": "c",
        "image": tb.env["TESTBED_IMAGE_TOOLS"],
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "infinity"],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    tb.apply(pod(name, tb.ns_plain, [container], runtimeClassName="sysbox-runc"))  # admitted: raises otherwise
    deadline = time.monotonic() + 90
    events = ""
    while time.monotonic() < deadline:
        events = tb.events(tb.ns_plain, name)
        if "sysbox-runc" in events and "FailedCreatePodSandBox" in events:
            break
        time.sleep(2)
    assert "FailedCreatePodSandBox" in events, events
    assert "sysbox-runc" in events, events
    phase = tb.get("pod", name, tb.ns_plain)["status"].get("phase")
    assert phase == "Pending", phase


def test_pod_mtu(tb: Testbed) -> None:
    """A pod's eth0 has the --pod-mtu MTU (1500 without the knob) while the bridge, the node side, stays at 1500."""
    want = int(knob(tb, "POD_MTU") or 1500)
    name = "smoke-mtu"
    container = {
        "name": "c",
        "image": tb.env["TESTBED_IMAGE_TOOLS"],
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "infinity"],
    }
    tb.apply(pod(name, tb.ns_open, [container]))
    tb.wait_running(tb.ns_open, name)
    proc = tb.exec(tb.ns_open, name, "cat /sys/class/net/eth0/mtu")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) == want, f"pod eth0 MTU {proc.stdout.strip()}, profile POD_MTU={want}"
    bridge = Path("/sys/class/net/dcbr0/mtu")
    if bridge.exists():  # the smoke test runs on the testbed host
        assert int(bridge.read_text()) == 1500, "the bridge (the node side) must stay at 1500"


def largest_blob(tb: Testbed, image: str) -> tuple[str, int]:
    """The registry URL and size of IMAGE's largest layer (several megabytes for the testbed images)."""
    registry = tb.env["TESTBED_REGISTRY"]
    repo, tag = image.split("/", 1)[1].rsplit(":", 1)
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        layer = max(json.load(resp)["layers"], key=lambda entry: entry["size"])
    return f"http://{registry}/v2/{repo}/blobs/{layer['digest']}", int(layer["size"])


def test_pod_mtu_stalls_nested_large_transfer(tb: Testbed) -> None:
    """Below the node's MTU, a nested container's multi-megabyte download from the node's registry stalls.

    The container nested in DinD (docker0 at 1500, MSS 1460) gets small answers; the pod itself (its own MSS) fetches
    the same blob.
    """
    if not knob(tb, "POD_MTU"):
        pytest.skip("--pod-mtu is not active (pods have the node's MTU)")
    if knob(tb, "DENY_PRIVILEGED") == "true":
        pytest.skip("--deny-privileged is active: DinD needs a privileged pod")
    url, size = largest_blob(tb, tb.env["TESTBED_IMAGE_TOOLS"])
    assert size > 4 * 1024 * 1024, size
    name = "smoke-mtu-dind"
    container = privileged_container(
        tb.env["TESTBED_IMAGE_DIND"],
        args=["--host=unix:///var/run/docker.sock"],
        env=[{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
    )
    tb.apply(pod(name, tb.ns_open, [container]))
    tb.wait_running(tb.ns_open, name)
    registry = tb.env["TESTBED_REGISTRY"]
    # wget in the background of a shell that kills it after 20 s (busybox wget -T crashes; a PID 1 ignores SIGTERM).
    fetch = (
        f"/bin/busybox sh -c '/bin/busybox wget -q -O /dev/null {url} & p=$!; i=0; "
        "while kill -0 $p 2>/dev/null; do i=$((i+1)); [ $i -le 20 ] || { kill $p; exit 124; }; sleep 1; done; "
        "wait $p'"
    )
    script = (
        "i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 90 ] || { docker info; exit 1; }; "
        "sleep 1; done; "
        "rm -rf /tmp/rootfs; mkdir -p /tmp/rootfs/bin; cp /bin/busybox /tmp/rootfs/bin/busybox; "
        "tar -C /tmp/rootfs -c . | docker import - smoke/busybox:1 >/dev/null || exit 1; "
        f"docker run --rm smoke/busybox:1 /bin/busybox wget -q -O - http://{registry}/v2/ >/dev/null; "
        "echo small=$?; "
        f"docker run --rm --network host smoke/busybox:1 {fetch}; echo pod=$?; "
        f"docker run --rm smoke/busybox:1 {fetch}; echo nested=$?"
    )
    proc = tb.exec(tb.ns_open, name, script, timeout=180)
    assert "small=0" in proc.stdout, f"{proc.stdout}\n{proc.stderr}"
    assert "pod=0" in proc.stdout, f"the pod's own download failed: {proc.stdout}\n{proc.stderr}"
    assert "nested=" in proc.stdout, f"{proc.stdout}\n{proc.stderr}"
    assert "nested=0" not in proc.stdout, f"a nested {size}-byte download worked below the node's MTU: {proc.stdout}"


def test_env_file_matches_contract(tb: Testbed) -> None:
    env = tb.env
    expected = (
        f"--kubeconfig {env['KUBECONFIG']} --image-dind {env['TESTBED_IMAGE_DIND']} "
        f"--image-buildkit {env['TESTBED_IMAGE_BUILDKIT']} --image-tools {env['TESTBED_IMAGE_TOOLS']} "
        f"--image-registry {env['TESTBED_IMAGE_REGISTRY']} --image-kaniko {env['TESTBED_IMAGE_KANIKO']} "
        f"--image-builder {env['TESTBED_IMAGE_BUILDER']} --storage-class {env['TESTBED_CACHE_STORAGE_CLASS']}"
    )
    assert env["TESTBED_PYTEST_ARGS"] == expected
    assert os.access(tb.kubectl_path, os.X_OK)
    # --dind picks TESTBED_IMAGE_DIND; the Docker 20.10 image and the Kaniko executor are always announced.
    assert env["TESTBED_IMAGE_DIND_LEGACY"].rsplit("/", 1)[-1].startswith("dind-legacy:")
    assert (env["TESTBED_IMAGE_DIND"] == env["TESTBED_IMAGE_DIND_LEGACY"]) == (knob(tb, "DIND") == "legacy")
    assert env["TESTBED_IMAGE_KANIKO"].rsplit("/", 1)[-1].startswith("kaniko:")
    assert env["TESTBED_IMAGE_BUILDER"].rsplit("/", 1)[-1].startswith("builder:")
