"""docker run: does a nested container start inside the DinD sidecar, from an image made in the pod?

No registry is needed: the job container packs its own busybox into a rootfs and `docker import`s it, then runs
it with --network none and on the default bridge. Storage driver, cgroup version, iptables backend and MTU are
recorded because they are what breaks nested runs (probe-facts section 4).
"""

from __future__ import annotations

from typing import Any

from probes import specs
from probes.definitions._docker import WAIT_FOR_DAEMON, dockerd_log_tail
from probes.engine import Outcome, ProbeContext, ProbeDefinition, key_values
from probes.model import Status

REMEDIATION = (
    "Nested docker run needs the dockerd sidecar privileged, /var/lib/docker on a volume that supports overlay, "
    "and a working iptables backend: on nf_tables-only nodes set DOCKER_IPTABLES_LEGACY=1 or start dockerd with "
    "--iptables=false and run with --network none|host. On cgroup v2 the DinD entrypoint must move itself into a "
    "child cgroup (docker:dind does). If large transfers hang, pass dockerd --mtu to match the pod network."
)

NESTED_RUN = r"""
echo "driver=$(docker info -f '{{.Driver}}' 2>/dev/null)"
echo "cgroup_version=$(docker info -f '{{.CgroupVersion}}' 2>/dev/null)"
echo "cgroup_driver=$(docker info -f '{{.CgroupDriver}}' 2>/dev/null)"
echo "server_version=$(docker version -f '{{.Server.Version}}' 2>/dev/null)"
r=/tmp/dindcheck-rootfs; rm -rf "$r"; mkdir -p "$r/bin"
bb=$(command -v busybox || echo /bin/busybox)
cp "$bb" "$r/bin/busybox"
for lib in $(ldd "$bb" 2>/dev/null | grep -o '/[^ ]*'); do mkdir -p "$r$(dirname "$lib")"; cp "$lib" "$r$lib"; done
if out=$(tar -C "$r" -c . | docker import - dindcheck-probe:local 2>&1); then echo "import=ok"; else
  echo "import=failed"; echo "import_error=$(echo "$out" | tr '\n' ' ')"; exit 0; fi
if out=$(docker run --rm --network none dindcheck-probe:local /bin/busybox echo nested-ok 2>&1); then
  echo "run_none=ok"; else echo "run_none=failed"; echo "run_none_error=$(echo "$out" | tr '\n' ' ')"; fi
if out=$(docker run --rm dindcheck-probe:local /bin/busybox cat /sys/class/net/eth0/mtu 2>&1); then
  echo "run_bridge=ok"; echo "inner_mtu=$out"; else
  echo "run_bridge=failed"; echo "run_bridge_error=$(echo "$out" | tr '\n' ' ')"; fi
docker rmi dindcheck-probe:local >/dev/null 2>&1
"""

HOST_FACTS = r"""
echo "iptables=$(iptables --version 2>&1 | head -n 1)"
echo "pod_mtu=$(cat /sys/class/net/eth0/mtu 2>/dev/null)"
echo "cgroup_fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
echo "cap_bnd=$(grep CapBnd /proc/self/status | cut -f2)"
"""

DEGRADED_DRIVERS = ("vfs", "fuse-overlayfs", "native")


def run(ctx: ProbeContext) -> Outcome:
    """A DinD pod; from the unprivileged job container: wait for dockerd, import an image, run it twice."""
    images = ctx.settings.images
    manifest = ctx.pod_manifest("run", specs.dind_pod_spec(images.dind, images.dind))
    name = manifest["metadata"]["name"]
    evidence: dict[str, Any] = {}
    with ctx.pod(manifest):
        ctx.say("waiting for dockerd")
        daemon = key_values(ctx.exec(name, "client", WAIT_FOR_DAEMON, timeout_s=90).stdout)
        evidence["daemon"] = daemon.get("daemon", "unknown")
        evidence.update(key_values(ctx.exec(name, "dind", HOST_FACTS, timeout_s=20).stdout))
        if daemon.get("daemon") != "ok":
            log = dockerd_log_tail(ctx, name)
            evidence["dockerd_log"] = log
            return Outcome(
                Status.FAIL, f"dockerd did not start: {daemon.get('daemon_error', '')}; log: {log}", evidence
            )
        ctx.say("importing an image made in the pod and running it")
        result = ctx.exec(name, "client", NESTED_RUN, timeout_s=120)
        evidence.update(key_values(result.stdout))
        if "run_bridge" not in evidence and "import" not in evidence:
            evidence["script_error"] = result.tail()
    return _verdict(evidence)


def _verdict(evidence: dict[str, Any]) -> Outcome:
    facts = (
        f"driver {evidence.get('driver', '?')}, cgroup v{evidence.get('cgroup_version', '?')}, "
        f"{evidence.get('iptables', 'iptables ?')}, MTU {evidence.get('pod_mtu', '?')}"
    )
    if evidence.get("driver") in DEGRADED_DRIVERS:
        facts += f" (storage driver {evidence['driver']} is slow/degraded: overlay2 expected)"
    if evidence.get("import") != "ok":
        cause = evidence.get("import_error") or evidence.get("script_error", "the script did not finish")
        return Outcome(Status.FAIL, f"could not import an image into the nested dockerd: {cause}; {facts}", evidence)
    if evidence.get("run_bridge") == "ok":
        return Outcome(
            Status.PASS,
            f"nested docker run works on the bridge and with --network none; {facts}",
            evidence,
            remediation="",
        )
    if evidence.get("run_none") == "ok":
        return Outcome(
            Status.FAIL,
            f"nested docker run works only with --network none; bridge: {evidence.get('run_bridge_error', '')}; "
            f"{facts}",
            evidence,
        )
    return Outcome(Status.FAIL, f"nested docker run fails: {evidence.get('run_none_error', '')}; {facts}", evidence)


PROBE = ProbeDefinition(
    id="docker-run",
    capability="docker-run",
    title="a nested docker run works inside the DinD sidecar",
    remediation=REMEDIATION,
    run=run,
)
