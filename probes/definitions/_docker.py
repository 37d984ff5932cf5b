"""Docker know-how shared by the DinD probes (socket sharing, docker run, sysbox); the engine knows none of it."""

from __future__ import annotations

from probes.engine import ProbeContext, compact

# Waits up to ~60 s for the daemon behind $DOCKER_HOST, printing how long it took or why it never answered. A daemon
# that answers but refuses this CLI's API version ends the wait at once: waiting cannot change that.
WAIT_FOR_DAEMON = r"""
echo "client_version=$(docker version -f '{{.Client.Version}}' 2>/dev/null)"
echo "client_api=$(docker version -f '{{.Client.APIVersion}}' 2>/dev/null)"
start=$(date +%s.%N 2>/dev/null || date +%s); i=0
until out=$(docker info 2>&1); do
  # the daemon's words: old CLIs print them as "ERROR: ..." in the Server section, newer ones on stderr
  err=$(echo "$out" | grep -i 'error' | grep -v 'errors pretty printing' | tail -n 2)
  [ -n "$err" ] || err=$(echo "$out" | tail -n 3)
  case $err in *"supported API version"*|*"client version"*" is too "*)
    echo "daemon=api_refused"; echo "daemon_error=$(echo "$err" | tr '\n' ' ')"; exit 0 ;;
  esac
  i=$((i+1))
  if [ "$i" -ge 300 ]; then
    echo "daemon=unreachable"; echo "daemon_error=$(echo "$err" | tr '\n' ' ')"; exit 0
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
case $(docker info -f '{{json .DriverStatus}}' 2>/dev/null) in
  *containerd.snapshotter*) echo "image_store=containerd" ;; *) echo "image_store=graphdriver" ;; esac
echo "server_api=$(docker version -f '{{.Server.APIVersion}}' 2>/dev/null)"
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


# The daemon's words when it refuses the client's API version (moby's api/server/middleware/version.go): Docker 29.0
# raised the minimum to 1.44, so a runner image's CLI from Docker <= 24 is refused (DOCKER_MIN_API_VERSION lowers it).
API_VERSION_MARKERS = ("minimum supported api version", "maximum supported api version", "is too old", "is too new")
API_VERSION_REMEDIATION = (
    "The job container's docker CLI and the sidecar's dockerd speak no common API version. Use a job image whose "
    "docker CLI matches the DinD image's release (or pin the DinD image to the runner's Docker release), or let "
    "the daemon accept older clients with DOCKER_MIN_API_VERSION=<client's API version> on the dind container."
)


def api_version_cause(text: str) -> str:
    """The API-version refusal in the daemon's own words, when text has one ('' otherwise)."""
    if not any(marker in text.lower() for marker in API_VERSION_MARKERS):
        return ""
    return f"dockerd refuses the job container's docker CLI (API version): {compact(text, 240)}"


def dockerd_log_tail(ctx: ProbeContext, pod_name: str, container: str = "dind", lines: int = 8) -> str:
    """The last lines dockerd logged, as one line: the cause when the daemon never answered."""
    text = ctx.logs(pod_name, container, tail=lines).strip()
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())
