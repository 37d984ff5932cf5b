"""Docker know-how shared by the DinD probes (socket sharing, docker run); the engine knows none of it."""

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


def dockerd_log_tail(ctx: ProbeContext, pod_name: str, container: str = "dind", lines: int = 8) -> str:
    """The last lines dockerd logged, as one line: the cause when the daemon never answered."""
    text = ctx.logs(pod_name, container, tail=lines).strip()
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())
