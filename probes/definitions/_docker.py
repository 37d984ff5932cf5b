"""Docker know-how shared by the DinD probes (socket sharing, docker run, sysbox); the engine knows none of it."""

from __future__ import annotations

import functools
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from probes.definitions import _selinux
from probes.definitions._registry import MANIFEST_TYPES, bearer_challenge
from probes.engine import ProbeContext, compact

# Waits up to $daemon_wait_s seconds of wall time (wait_for_daemon sets it) for the daemon behind $DOCKER_HOST,
# printing how long it took or why it never answered. A daemon that answers but refuses this CLI's API version ends
# the wait at once: waiting cannot change that.
WAIT_FOR_DAEMON = (
    f'echo "client_label=$({_selinux.READ_LABEL})"\n'
    r"""
echo "client_version=$(docker version -f '{{.Client.Version}}' 2>/dev/null)"
echo "client_api=$(docker version -f '{{.Client.APIVersion}}' 2>/dev/null)"
limit=${daemon_wait_s:-60}; echo "daemon_wait_s=$limit"
start=$(date +%s.%N 2>/dev/null || date +%s); give_up=$(( $(date +%s) + limit ))
until out=$(docker info 2>&1); do
  # the daemon's words: old CLIs print them as "ERROR: ..." in the Server section, newer ones on stderr
  err=$(echo "$out" | grep -i 'error' | grep -v 'errors pretty printing' | tail -n 2)
  [ -n "$err" ] || err=$(echo "$out" | tail -n 3)
  case $err in *"supported API version"*|*"client version"*" is too "*)
    echo "daemon=api_refused"; echo "daemon_error=$(echo "$err" | tr '\n' ' ')"; exit 0 ;;
  esac
  # a socket that keeps refusing this client (its mode, or an LSM) will not let it in later
  case $err in
    *"ermission denied"*) now=$(date +%s); denied_since=${denied_since:-$now}
      if [ $((now - denied_since)) -ge "${denied_wait_s:-15}" ]; then
        echo "daemon=unreachable"; echo "denied_for_s=$((now - denied_since))"
        echo "daemon_error=$(echo "$err" | tr '\n' ' ')"; exit 0
      fi ;;
    *) denied_since= ;;
  esac
  if [ "$(date +%s)" -ge "$give_up" ]; then
    echo "daemon=unreachable"; echo "daemon_error=$(echo "$err" | tr '\n' ' ')"; exit 0
  fi
  sleep 0.2
done
end=$(date +%s.%N 2>/dev/null || date +%s)
echo "daemon=ok"
echo "waited_s=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}' 2>/dev/null)"
"""
)
DAEMON_WAIT_S = 60.0
"""How long dockerd may take to answer on a node of usual speed; a slow node's --timeout stretches it."""
DAEMON_EXEC_S = DAEMON_WAIT_S + 30
"""The exec limit of the wait (scaled like every exec): the wait ends first, with its own words."""


def daemon_wait_s(ctx: ProbeContext) -> float:
    """How long this run waits for dockerd: the usual wait times the run's slowness (--timeout over its default)."""
    return DAEMON_WAIT_S * ctx.scope.slowness


def wait_for_daemon(wait_s: float) -> str:
    """WAIT_FOR_DAEMON bounded by wait_s seconds of wall time (a loop count would stretch with a slow node's CPU).

    A refusal ("permission denied") that lasts a quarter of it (15 s at the usual wait) ends it: the socket's
    owner is set as dockerd creates it, so only a refusal that outlives that is the answer (an SELinux denial cost
    the whole wait before, five minutes on the emulated node).
    """
    return f"daemon_wait_s={int(wait_s)}\ndenied_wait_s={max(1, int(wait_s / 4))}\n{WAIT_FOR_DAEMON}"


# dockerd's words when it dies or gives up, and when it serves: with neither in its log, a daemon that has not
# answered is still starting (a slow node), which proves nothing about the cluster.
FATAL_MARKERS = ("failed to start daemon", "level=fatal", "level=error")
LISTENING_MARKERS = ("api listen on", "daemon has completed initialization")
NOT_ANSWERING = ("cannot connect to the docker daemon", "connection refused", "no such file or directory", "timeout")


def last_words(log: str) -> str:
    """What a daemon said as it died: from its last fatal or error line to the end (an error may span lines).

    log is dockerd_log_tail's form (lines joined by ' | '); with no such line, the last line.
    """
    lines = [line for line in log.split(" | ") if line.strip()]
    fatal = [i for i, line in enumerate(lines) if any(marker in line.lower() for marker in FATAL_MARKERS)]
    return " ".join(lines[fatal[-1] :] if fatal else lines[-1:])


def still_starting(daemon_error: str, log: str) -> bool:
    """Whether a dockerd that never answered may only be slow: nothing listens yet and its log has no error.

    Called while its container still runs. A daemon that answered with a refusal, logged an error or already
    listens (so the client cannot reach what serves) is a finding about the pod; one still starting is not.
    """
    lowered_log = log.lower()
    if any(marker in lowered_log for marker in FATAL_MARKERS + LISTENING_MARKERS):
        return False
    lowered_error = daemon_error.lower()
    return not lowered_error.strip() or any(words in lowered_error for words in NOT_ANSWERING)


def still_starting_summary(what: str, waited_s: object, log: object) -> str:
    """The inconclusive summary of a dockerd that is still starting: the node's slowness, not a refusal."""
    log = str(log or "") or "nothing yet"
    return (
        f"{what} did not answer within {waited_s or '?'}s, but its container still runs and its "
        f"log shows no error: it is still starting, which says nothing about the cluster (a node this slow needs a "
        f"larger --timeout: every wait grows with it); dockerd's log: {compact(log, 240)}"
    )


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
# busybox wget speaks https through ssl_client where the image has one (Alpine, so docker:dind)
sc=$(command -v ssl_client || :); [ -z "$sc" ] || { mkdir -p "$r$(dirname "$sc")"; cp "$sc" "$r$sc"; }
for f in "$bb" $sc; do
  for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*'); do mkdir -p "$r$(dirname "$lib")"; cp "$lib" "$r$lib"; done
done
if out=$(tar -C "$r" -c . | docker import - dindcheck-probe:local 2>&1); then echo "import=ok"; else
  echo "import=failed"; echo "import_error=$(echo "$out" | tr '\n' ' ')"; exit 0; fi
if out=$(docker run --rm --network none dindcheck-probe:local /bin/busybox echo nested-ok 2>&1); then
  echo "run_none=ok"; else echo "run_none=failed"; echo "run_none_error=$(echo "$out" | tr '\n' ' ')"; fi
# What confines a nested container: the profile dockerd says it applies, and what the kernel says it got (an
# unreadable attr, as on a kernel without an LSM, records nothing)
echo "security_options=$(docker info -f '{{join .SecurityOptions ","}}' 2>/dev/null)"
echo "nested_lsm_context=$(docker run --rm --network none dindcheck-probe:local \
  /bin/busybox cat /proc/self/attr/current 2>/dev/null | tr -d '\0\n')"
if out=$(docker run --rm dindcheck-probe:local /bin/busybox cat /sys/class/net/eth0/mtu 2>&1); then
  echo "run_bridge=ok"; echo "inner_mtu=$out"; else
  echo "run_bridge=failed"; echo "run_bridge_error=$(echo "$out" | tr '\n' ' ')"; fi
"""
PROBE_IMAGE = "dindcheck-probe:local"
"""The image NESTED_RUN imports and leaves in the nested dockerd (the pod goes away with it)."""


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


CONTAINER_END_WAIT_S = 30.0
"""How long a container the exec channel found stopped gets for its end to show in the pod's status.

The runtime refuses the exec at once ("cannot exec in a stopped state"); the kubelet reports the end at its next
status sync, seconds later, more on a busy emulated node. Scaled by the run's slowness (--timeout).
"""


def container_exit(
    ctx: ProbeContext, pod_name: str, container: str = "dind", *, settle_s: float = 0.0
) -> dict[str, Any]:
    """How a container (dockerd's by default) ended, with the last lines it logged; {} while it still runs.

    A daemon that dies at start (an iptables backend the node cannot serve, a flag or variable it refuses) leaves its
    container terminated: an exec into it fails, but its state and its log still say why, so they are read first.
    settle_s: how long to wait for an end the caller has reason to expect (an exec refused) to reach the status.
    """
    deadline = time.monotonic() + settle_s
    while True:
        pod = ctx.read_pod(pod_name)
        statuses = list(pod.status.init_container_statuses or []) + list(pod.status.container_statuses or [])
        ended = next(
            (s.state.terminated for s in statuses if s.name == container and s.state and s.state.terminated), None
        )
        if ended is not None:
            found: dict[str, Any] = {"exit_code": ended.exit_code, "reason": ended.reason or ""}
            if (ended.message or "").strip():
                found["message"] = ended.message.strip()
            found["log"] = dockerd_log_tail(ctx, pod_name, container, lines=12)
            return found
        if time.monotonic() >= deadline:
            return {}
        ctx.sleep(1)


def exec_refused_end_wait_s(ctx: ProbeContext) -> float:
    """CONTAINER_END_WAIT_S at the run's pace."""
    return CONTAINER_END_WAIT_S * ctx.scope.slowness


def dockerd_ended(ctx: ProbeContext, pod_name: str, evidence: dict[str, Any], *, settle_s: float = 0.0) -> bool:
    """Whether dockerd's container has terminated; its exit and last log lines go into evidence['dockerd_exit']."""
    ended = container_exit(ctx, pod_name, settle_s=settle_s)
    if ended:
        evidence["dockerd_exit"] = ended
    return bool(ended)


# ----- a payload outside the pod, for a nested container to fetch (docker-run's transfer) ----------------------------
PAYLOAD_BYTES = 8 * 1024 * 1024
"""Enough full-size segments that a path dropping them cannot hide; small enough to be quick on a healthy one."""
DOCKER_HUB = "registry-1.docker.io"
LOCATE_TIMEOUT_S = 10.0
# What Python's ssl module says when an https request reaches a server that speaks plain HTTP (OpenSSL 1.1/3.0,
# 3.2+): only then is http tried, as dockerd does for a registry it may reach insecurely.
PLAIN_HTTP_ANSWERS = ("wrong_version_number", "wrong version number", "record layer failure", "http_request")


@dataclass(frozen=True)
class Payload:
    """A layer blob of the DinD image in the registry that served it, located for a nested container to fetch.

    header (an anonymous pull token) goes to the nested wget only, never into the evidence.
    """

    url: str = ""
    header: str = ""
    size: int = 0
    blob: str = ""
    registry: str = ""
    error: str = ""
    """Why no payload could be located: the transfer is then not measured."""
    token: bool = False
    """The registry asked for a Bearer token (anonymous); a redirect to storage elsewhere goes without it."""

    def to_evidence(self) -> dict[str, Any]:
        """Evidence form: where the bytes came from (a signed redirect's query string left out)."""
        return {
            "registry": self.registry,
            "blob": self.blob,
            "bytes": self.size,
            "url": self.url.split("?", 1)[0],
            "auth": "anonymous bearer token" if self.token else "none",
            **({"error": self.error} if self.error else {}),
        }


def image_repository(ref: str) -> tuple[str, str, str]:
    """(registry host, repository, tag or digest) of an image reference, normalised as docker does.

    'docker:29-dind' -> ('registry-1.docker.io', 'library/docker', '29-dind'); a first component with a dot, a
    colon or 'localhost' is a registry host.
    """
    name, _, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", name
    tag = ""
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    if host in ("docker.io", "index.docker.io"):
        host = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    return host, path, digest or tag or "latest"


def platform_manifest(index: dict[str, Any]) -> str:
    """The digest of an image index's first runnable image (attestation manifests, platform unknown, skipped)."""
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") or {}
        kind = str((entry.get("annotations") or {}).get("vnd.docker.reference.type", ""))
        if platform.get("os") != "unknown" and "attestation" not in kind and entry.get("digest"):
            return str(entry["digest"])
    return ""


def largest_layer(manifest: dict[str, Any]) -> tuple[str, int]:
    """(digest, size) of an image manifest's largest layer; ('', 0) when it lists none."""
    layers = [(str(layer.get("digest", "")), int(layer.get("size") or 0)) for layer in manifest.get("layers") or []]
    layers = [layer for layer in layers if layer[0]]
    return max(layers, key=lambda layer: layer[1]) if layers else ("", 0)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Blob GETs answer with a redirect to storage (a CDN): the nested wget follows it, not this process."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class _Answer:
    """A registry's answer: status, headers, and the body when read."""

    status: int
    headers: Any
    body: bytes


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One context for every registry request: loading the system's CA store costs ~20 ms of CPU each time."""
    return ssl.create_default_context()


def _get(url: str, headers: dict[str, str], *, read: bool = True) -> _Answer:
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=_tls_context()))
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) by construction
    try:
        with opener.open(request, timeout=LOCATE_TIMEOUT_S) as response:
            return _Answer(response.status, response.headers, response.read() if read else b"")
    except urllib.error.HTTPError as answer:  # 3xx (not followed), 4xx, 5xx: an answer all the same
        with answer:
            return _Answer(answer.code, answer.headers, b"")


def _plain_http(exc: BaseException) -> bool:
    """Whether an https attempt met a server that speaks plain HTTP."""
    text = f"{getattr(exc, 'reason', '')} {exc}".lower()
    return any(answer in text for answer in PLAIN_HTTP_ANSWERS)


class _NotLocatedError(Exception):
    """The registry answered, but no payload could be had from it (the message says why)."""


def locate_payload(image: str, want: int = PAYLOAD_BYTES) -> Payload:
    """The largest layer blob of the image, in the registry it names, fetched anonymously (a Bearer token if asked).

    https first; plain http only when the registry answers https with plain HTTP (a registry the nodes reach
    insecurely). Never raises: a payload that cannot be located carries the registry's words in error.
    """
    host, repo, reference = image_repository(image)
    scheme = "https"
    while True:
        try:
            return _locate(f"{scheme}://{host}", repo, reference, want, host)
        except _NotLocatedError as exc:
            return Payload(registry=host, error=str(exc))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if scheme == "https" and _plain_http(exc):
                scheme = "http"
                continue
            reason = getattr(exc, "reason", exc)
            return Payload(registry=host, error=f"{scheme}://{host}/v2/ unreachable from this machine: {reason}")


def _locate(base: str, repo: str, reference: str, want: int, host: str) -> Payload:
    accept = {"Accept": MANIFEST_TYPES}
    manifest_url = f"{base}/v2/{repo}/manifests/{reference}"
    answer = _get(manifest_url, accept)
    auth: dict[str, str] = {}
    if answer.status == 401:
        auth = {"Authorization": f"Bearer {_anonymous_token(answer, repo)}"}
        answer = _get(manifest_url, {**accept, **auth})
    if answer.status != 200:
        raise _NotLocatedError(f"{manifest_url}: HTTP {answer.status}")
    manifest = json.loads(answer.body)
    if manifest.get("manifests"):
        digest = platform_manifest(manifest)
        if not digest:
            raise _NotLocatedError(f"{manifest_url}: an image index without a runnable image")
        answer = _get(f"{base}/v2/{repo}/manifests/{digest}", {**accept, **auth})
        if answer.status != 200:
            raise _NotLocatedError(f"{base}/v2/{repo}/manifests/{digest}: HTTP {answer.status}")
        manifest = json.loads(answer.body)
    blob, size = largest_layer(manifest)
    if not blob:
        raise _NotLocatedError(f"{manifest_url}: the manifest lists no layers")
    blob_url = f"{base}/v2/{repo}/blobs/{blob}"
    answer = _get(blob_url, auth, read=False)
    header = f"Authorization: {auth['Authorization']}" if auth else ""
    if answer.status in (301, 302, 303, 307, 308) and answer.headers.get("Location"):
        location = urllib.parse.urljoin(blob_url, answer.headers["Location"])
        same_host = urllib.parse.urlsplit(location).netloc == urllib.parse.urlsplit(blob_url).netloc
        return Payload(location, header if same_host else "", min(size, want), blob, host, token=bool(auth))
    if answer.status != 200:
        raise _NotLocatedError(f"{blob_url}: HTTP {answer.status}")
    return Payload(blob_url, header, min(size, want), blob, host, token=bool(auth))


def _anonymous_token(answer: _Answer, repo: str) -> str:
    """A pull token from the registry's Bearer challenge, asked for without credentials (public images only)."""
    challenge = bearer_challenge(str(answer.headers.get("WWW-Authenticate", "")))
    if not challenge.get("realm"):
        raise _NotLocatedError(
            f"the registry wants credentials ({answer.headers.get('WWW-Authenticate', 'no challenge')}); "
            "dindcheck fetches the payload anonymously"
        )
    query = {"service": challenge.get("service", ""), "scope": challenge.get("scope") or f"repository:{repo}:pull"}
    token_answer = _get(f"{challenge['realm']}?{urllib.parse.urlencode(query)}", {})
    if token_answer.status != 200:
        raise _NotLocatedError(f"anonymous token refused by {challenge['realm']}: HTTP {token_answer.status}")
    token = json.loads(token_answer.body)
    value = str(token.get("token") or token.get("access_token") or "")
    if not value:
        raise _NotLocatedError(f"{challenge['realm']} answered without a token")
    return value


SELINUX_SOCKET_REMEDIATION = (
    "On an SELinux node the job container runs as container_t and the privileged dockerd as spc_t; a policy that "
    "does not let container_t connect to spc_t's sockets (the node's audit log: avc: denied { connectto } ... "
    "tcontext=...spc_t ... tclass=unix_stream_socket) refuses every docker command over the shared socket, whatever "
    "its mode and group. Run the job container with " + _selinux.SPC_T + " (Pod Security 'baseline' refuses it, "
    "as it refuses the privileged sidecar), or reach dockerd over TCP instead (GitLab's form: "
    "DOCKER_HOST=tcp://docker:2376 with TLS), or load a policy module allowing container_t that connectto. "
    + _selinux.PROVE_SPC_T
)


def selinux_socket_refusal(error: str, client_label: str) -> str:
    """The job's refusal at dockerd's socket in SELinux's terms, or '' when SELinux does not explain it.

    EACCES from a job container whose label is a confined type: the socket's mode may refuse a non-root job too, so
    the words say what was seen (the label, the refusal) and where the AVC that decides it is.
    """
    kind = _selinux.confined_type(client_label)
    if not kind or "permission denied" not in error.lower():
        return ""
    return (
        f"the job container, confined by SELinux as {client_label}, was refused dockerd's socket ({error.strip()}): "
        f"the node's policy does not let {kind} connect to the privileged dockerd (spc_t): avc: denied "
        "{ connectto } in its audit log"
    )
