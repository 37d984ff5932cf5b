"""Docker know-how shared by the DinD probes (socket sharing, docker run, sysbox); the engine knows none of it."""

from __future__ import annotations

from probes.engine import ProbeContext

# Waits up to ~60 s for the daemon behind $DOCKER_HOST, printing how long it took or why it never answered.
WAIT_FOR_DAEMON = r"""
start=$(date +%s.%N 2>/dev/null || date +%s); i=0
until docker info >/dev/null 2>&1; do
  i=$((i+1))
  if [ "$i" -ge 300 ]; then
    echo "daemon=unreachable"; echo "daemon_error=$(docker info 2>&1 | tail -n 3 | tr '\n' ' ')"; exit 0
  fi
  sleep 0.2
done
end=$(date +%s.%N 2>/dev/null || date +%s)
echo "daemon=ok"
echo "waited_s=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}' 2>/dev/null)"
"""

# From the job container, once the daemon answers: import an image made in the pod (no registry), run it twice.
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


def dockerd_log_tail(ctx: ProbeContext, pod_name: str, container: str = "dind", lines: int = 8) -> str:
    """The last lines dockerd logged, as one line: the cause when the daemon never answered."""
    text = ctx.logs(pod_name, container, tail=lines).strip()
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())
