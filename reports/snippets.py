"""Config to paste for a recommended mode, and what each mode costs in security.

Every pod snippet is the spec a probe submitted and proved (a TestedSpec in the result model), dumped with
yaml.safe_dump: valid YAML by construction, with the run's own images and resources. The only text added by hand is
leading '#' comment lines.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from probes.model import Mode, OverlayResult, TestedSpec
from probes.specs import RemediedSpec

SECURITY_COST: Mapping[Mode, str] = {
    Mode.DIND: (
        "Privileged container: root-equivalent on the node. A job can mount the node's disk, load kernel modules and "
        "read other pods' data, so every build job is trusted as much as the node's administrator. Fails Pod Security "
        "baseline and restricted."
    ),
    Mode.BUILDKIT_ROOTLESS: (
        "No privileged: buildkitd runs as uid 1000 in a user namespace. It still needs seccomp and AppArmor "
        "Unconfined and allowPrivilegeEscalation (for newuidmap), so kernel bugs reachable through unfiltered "
        "syscalls and user namespaces are the exposure. Fails Pod Security baseline (Unconfined profiles) and "
        "restricted. Builds and pushes only: no docker run."
    ),
    Mode.KANIKO: (
        "No privileged and no user namespace: the executor runs as root inside its container with the default "
        "capabilities and seccomp profile (allowPrivilegeEscalation false), which Pod Security baseline allows and "
        "restricted forbids. Root in a container is still a larger kernel attack surface than rootless BuildKit's "
        "unprivileged user, and a build can read whatever the pod can (mounted secrets). Builds and pushes only, "
        "one image per run, slower than BuildKit (it snapshots its own filesystem after every step)."
    ),
    Mode.SYSBOX: (
        "No privileged: the container's root maps to an unprivileged user on the node through user namespaces, and "
        "sysbox virtualises /proc and /sys for the inner Docker. The cost is a node-level install (sysbox-runc, "
        "usually with CRI-O) and trusting sysbox itself. Runs and builds."
    ),
    Mode.BUILDPACKS: (
        "No privileged, no root, no capability, no user namespace, no daemon: the CNB lifecycle runs as the builder "
        "image's non-root user with all capabilities dropped, RuntimeDefault seccomp and no privilege escalation, "
        "which Pod Security restricted admits. The exposure is the builder's buildpacks (code you run at build "
        "time) and what the pod can read. Builds from source only: no Dockerfile, no docker run."
    ),
    Mode.HOST_SOCKET: (
        "Mounting the node's Docker socket is root on the node: any job can start a privileged container, mount / "
        "and take over the node and every pod on it; jobs also share one daemon and cache. Fails Pod Security "
        "baseline (hostPath). Discouraged even where it works."
    ),
}

SNIPPET_TITLES: Mapping[Mode, tuple[str, ...]] = {
    Mode.DIND: (
        "Docker-in-Docker: privileged dockerd sidecar, socket over an emptyDir ({layout} sidecar layout, as tested).",
        "Copy spec: into your runner/agent pod template (ARC, Buildkite agent-stack-k8s, GitLab runner);",
        "replace the job container's command with your job. /var/lib/docker stays on an emptyDir on node disk.",
    ),
    Mode.BUILDKIT_ROOTLESS: (
        "Rootless BuildKit: no privileged; seccomp and AppArmor Unconfined (the namespace must allow them).",
        "Build in the buildkitd container (or a job container sharing /run/user/1000/buildkit):",
        "  buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. \\",
        "    --output type=image,name=REGISTRY/IMAGE:TAG,push=true",
    ),
    Mode.KANIKO: (
        "Kaniko: the executor as root, not privileged, no user namespace (Pod Security baseline), as tested.",
        "Put your build context in /workspace (or pass --context git://..., s3://...) and set --destination.",
        'GitLab CI (Kubernetes executor): a job with image: {image} (entrypoint: [""] on images with a shell)',
        "  running /kaniko/executor (or executor) with the same args. Buildkite agent-stack-k8s / ARC:",
        "  a step or container with this container spec. SkyPilot: enable_docker has no Kaniko mode.",
    ),
    Mode.SYSBOX: (
        "Sysbox: dockerd without privileged under RuntimeClass sysbox-runc (nodes need sysbox installed).",
        "The annotation asks CRI-O for a user namespace, as sysbox's Kubernetes guide does.",
    ),
    Mode.BUILDPACKS: (
        "Cloud Native Buildpacks: the lifecycle's creator builds from source (no Dockerfile) and pushes, as the",
        "builder's non-root user, all capabilities dropped, RuntimeDefault seccomp (Pod Security restricted),",
        "as tested.",
        "Put your app's source in /workspace and set the image to push (the last argument).",
    ),
    Mode.HOST_SOCKET: (
        "DISCOURAGED: the node's Docker socket is root on the node; any job can take over the node.",
        "Use it only for trusted jobs on dedicated nodes.",
    ),
}


def _yaml(document: object, comments: tuple[str, ...] = ()) -> str:
    """Dump a document, with optional '#' comment lines in front (still valid YAML)."""
    header = "".join(f"# {line}\n" if line else "#\n" for line in comments)
    if document is None:
        return header
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _cache_comments(cache: OverlayResult | None, mode_word: str) -> tuple[str, ...]:
    """SkyPilot's cache_volume must be block storage: say what the run learnt about the tested class."""
    if cache is not None and cache.overlay is False:
        verdict = f"overlay FAILED on StorageClass {cache.storage_class}: do not back cache_volume with it."
    elif cache is not None and cache.overlay:
        verdict = f"overlay worked on StorageClass {cache.storage_class}: it can back cache_volume."
    else:
        verdict = "no cache StorageClass was tested (--storage-class)."
    return (
        "To keep the build cache across restarts, use a SkyPilot volume on block storage",
        "(ext4/xfs; not NFS, EFS, Filestore or CephFS).",
        verdict,
        "  enable_docker:",
        f"    mode: {mode_word}",
        "    cache_volume: my-builder-cache",
    )


def pod_security_context(tested: TestedSpec | None) -> dict[str, Any]:
    """The pod-level securityContext a tested spec ran with ({} when none: the runtime chose the SELinux label)."""
    if tested is None:
        return {}
    return dict(tested.spec.get("securityContext") or {})


def spec_selinux_type(spec: Mapping[str, Any]) -> str:
    """The SELinux type a pod spec sets in its pod securityContext (--selinux-type), '' when the runtime chooses."""
    return str(((spec.get("securityContext") or {}).get("seLinuxOptions") or {}).get("type") or "")


def _sky_kubernetes(enable_docker: object, pod_security: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """SkyPilot's kubernetes block: enable_docker, and the pod securityContext the mode's pod ran with, if any."""
    block: dict[str, Any] = {"enable_docker": enable_docker}
    if not pod_security:
        return block, []
    block["pod_config"] = {"spec": {"securityContext": _plain(pod_security)}}
    said = "pod_config gives SkyPilot's pod the securityContext the probe pods ran with (--selinux-type)."
    return block, [said]


def skypilot_config(
    *,
    usable: frozenset[Mode],
    full_docker: Mode,
    cache: OverlayResult | None = None,
    pod_security: Mapping[Mode, Mapping[str, Any]] | None = None,
) -> str:
    """~/.sky/config.yaml: SkyPilot's enable_docker only knows dind (true / ALL) and rootless BuildKit (BUILD).

    pod_security: the pod-level securityContext each mode's tested pod ran with (an SELinux type, --selinux-type):
    SkyPilot's pod gets it through pod_config, or it would run without what the verdict needed.
    """
    where = "~/.sky/config.yaml (or under `config:` in a task YAML)"
    contexts = pod_security or {}
    if Mode.DIND in usable:
        comments = [where, "enable_docker: true = privileged dind sidecar: docker build, push and run."]
        if full_docker is not Mode.DIND:
            comments.append(f"dindcheck prefers {full_docker.value} for docker run; SkyPilot has no switch for it.")
        if Mode.BUILDKIT_ROOTLESS in usable:
            comments.append("Build and push only? enable_docker: BUILD works here too and needs no privileged.")
        comments.extend(_cache_comments(cache, "ALL"))
        block, said = _sky_kubernetes(True, contexts.get(Mode.DIND, {}))
        return _yaml({"kubernetes": block}, (*comments, *said))
    if Mode.BUILDKIT_ROOTLESS in usable:
        comments = [where, "enable_docker: BUILD = rootless BuildKit sidecar: docker buildx build and push, no run."]
        comments.extend(_cache_comments(cache, "BUILD"))
        block, said = _sky_kubernetes("BUILD", contexts.get(Mode.BUILDKIT_ROOTLESS, {}))
        return _yaml({"kubernetes": block}, (*comments, *said))
    kaniko = (
        ("Kaniko builds and pushes here (see the kaniko snippet), but enable_docker has no Kaniko mode.",)
        if Mode.KANIKO in usable
        else ()
    )
    return _yaml(
        None,
        (
            where,
            "Neither SkyPilot enable_docker mode (true/ALL = dind, BUILD = rootless BuildKit) works on this cluster:",
            "leave enable_docker unset.",
            *kaniko,
        ),
    )


DIND_TLS_TITLES = (
    "Docker-in-Docker: privileged dockerd sidecar reached over TLS on tcp://docker:2376 (GitLab's form, as tested);",
    "the client certs are shared on an emptyDir and the job must wait for them (until docker info; do sleep 1; done).",
)
DIND_LAYOUT_ORDER = ("native", "classic")
"""The DinD pod to print, best first, among the layouts every DinD check proved: socket-sharing tries the classic,
native and TLS layouts, docker-run the classic one, so the classic pod is what both proved and native is printed only
once docker-run proves it too; the TLS layout (GitLab's form) gets its own snippet."""


def _checks(tested: tuple[TestedSpec, ...]) -> dict[str, set[str]]:
    """Check -> the layouts it proved, for every check that tested the mode (one that proved none too)."""
    proved: dict[str, set[str]] = {}
    for spec in tested:
        proved.setdefault(spec.check, set())
        if spec.proven:
            proved[spec.check].add(spec.layout)
    return proved


def agreed_layouts(tested: tuple[TestedSpec, ...]) -> set[str]:
    """The layouts every check that tested the mode proved: only these are printed as what ran."""
    proved = list(_checks(tested).values())
    return set.intersection(*proved) if proved else set()


def pick_tested(mode: Mode, tested: tuple[TestedSpec, ...]) -> TestedSpec | None:
    """The spec to print for a mode: proven, in a layout every check of the mode proved (the best such DinD layout)."""
    agreed = agreed_layouts(tested)
    proven = [spec for spec in tested if spec.proven and spec.layout in agreed]
    if mode is Mode.DIND:
        rank = {layout: index for index, layout in enumerate(DIND_LAYOUT_ORDER)}
        proven.sort(key=lambda spec: rank.get(spec.layout, len(rank)))
    return next(iter(proven), None)


def partial_proofs(tested: tuple[TestedSpec, ...], layouts: tuple[str, ...], ending: str = "") -> tuple[str, ...]:
    """Of these layouts, those some check proved and another did not (or did not try), each said in one line."""
    proved = _checks(tested)
    agreed = agreed_layouts(tested)
    lines = []
    for layout in layouts:
        by = sorted(check or "a check" for check, found in proved.items() if layout in found)
        if not by or layout in agreed:
            continue
        not_by = sorted(check or "a check" for check, found in proved.items() if layout not in found)
        lines.append(f"The {layout} layout was proven by {', '.join(by)}, not by {', '.join(not_by)}{ending}.")
    return tuple(lines)


PLACEMENT_FIELDS = ("nodeSelector", "tolerations", "affinity")
CONTAINER_LISTS = ("initContainers", "containers")


def _containers(spec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c["name"]): c for key in CONTAINER_LISTS for c in spec.get(key, [])}


def _changed(mine: Mapping[str, Any], theirs: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    return [key for key in dict.fromkeys(keys) if mine.get(key) != theirs.get(key)]


def differences(mode: Mode, mine: tuple[TestedSpec, ...], theirs: tuple[TestedSpec, ...]) -> tuple[str, ...]:
    """What the pod printed from theirs differs in from the one printed from mine, each part named (none: the same).

    Pools of one run differ at least in placement; they may differ in layout, images, containers, pod fields or the
    remedies proven there, and a user pasting one pool's spec for another must know which.
    """
    ours, other = pick_tested(mode, mine), pick_tested(mode, theirs)
    if ours is None or other is None:
        return ("no proven spec",) if other is None else ("a proven spec where the other has none",)
    found: list[str] = []
    if ours.layout != other.layout:
        found.append(f"layout ({other.layout}, not {ours.layout})")
    placement = _changed(ours.spec, other.spec, PLACEMENT_FIELDS)
    if placement:
        found.append(f"placement ({', '.join(placement)})")
    a, b = _containers(ours.spec), _containers(other.spec)
    moved = [name for name, container in b.items() if name in a and a[name].get("image") != container.get("image")]
    images = [f"{name} {b[name].get('image')}" for name in moved]
    if images:
        found.append(f"images ({', '.join(images)})")
    if ours.layout == other.layout:
        plain_a = {name: {k: v for k, v in c.items() if k != "image"} for name, c in a.items()}
        plain_b = {name: {k: v for k, v in c.items() if k != "image"} for name, c in b.items()}
        containers = _changed(plain_a, plain_b, [*plain_a, *plain_b])
        if containers:
            found.append(f"containers ({', '.join(containers)})")
        if ours.spec.get("volumes") != other.spec.get("volumes"):
            found.append("volumes")
    skipped = {*PLACEMENT_FIELDS, *CONTAINER_LISTS, "volumes"}
    fields = _changed(ours.spec, other.spec, [k for k in [*ours.spec, *other.spec] if k not in skipped])
    if fields:
        found.append(f"pod fields ({', '.join(fields)})")
    if ours.annotations != other.annotations:
        found.append("annotations")
    remedies = proven_remedies(theirs)
    if remedies != proven_remedies(mine):
        said = ", ".join(remedy.split(":", 1)[0] for remedy in remedies) or "none"
        found.append(f"proven remedies ({said})")
    return tuple(found)


def proven_remedies(tested: tuple[TestedSpec, ...]) -> tuple[str, ...]:
    """Remedies a probe proved for this mode on this cluster (e.g. docker-run's --mtu), each once."""
    found = (remedy for spec in tested if isinstance(spec, RemediedSpec) for remedy in spec.remedies)
    return tuple(dict.fromkeys(found))


def _wrapped(texts: tuple[str, ...]) -> tuple[str, ...]:
    """Notes and proven remedies as wrapped comment lines (the spec itself stays as it ran)."""
    lines: list[str] = []
    for text in texts:
        lines.extend(textwrap.wrap(text, 112))
    return tuple(lines)


def pod_snippet(tested: TestedSpec, remedies: tuple[str, ...] = (), also: tuple[str, ...] = ()) -> str:
    """A tested spec as a Pod to paste: exactly the spec the probe submitted, images and resources included.

    Its notes, what else was proven (also) and remedies (proven by a probe on this cluster) come as comments above
    it, never inside it.
    """
    metadata: dict[str, Any] = {"name": f"{tested.mode.value}-build"}
    if tested.annotations:
        metadata["annotations"] = dict(tested.annotations)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": _plain(tested.spec)}
    first = (tested.spec.get("containers") or [{}])[0]
    titles = DIND_TLS_TITLES if tested.mode is Mode.DIND and tested.layout == "tls" else SNIPPET_TITLES.get(tested.mode)
    comments = tuple(
        line.replace("{layout}", tested.layout).replace("{image}", str(first.get("image", ""))) for line in titles or ()
    )
    return _yaml(
        pod,
        (
            *comments,
            "This is the pod spec dindcheck ran on this cluster, with the images it used.",
            *_wrapped(tested.notes),
            *_wrapped(also),
            *_wrapped(remedies),
        ),
    )


def _plain(value: object) -> Any:
    """Mappings and tuples as plain dicts and lists, so the YAML has no Python tags."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


TLS_LAYOUT = "tls"
"""GitLab's form of DinD: said in its own snippet, not beside the socket layouts' pod."""
GITLAB_SNIPPET = "gitlab"
"""recommendation.snippets key of the GitLab CI form: added beside the mode ids when DinD is recommended and the TLS
layout was proven."""
GITLAB_WAIT = "until docker info >/dev/null 2>&1; do sleep 1; done"
"""What the probe's job did first: the job can start before dockerd's entrypoint wrote the client certs."""


def _by_name(spec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c["name"]): c for c in [*spec.get("initContainers", []), *spec.get("containers", [])]}


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {str(item["name"]): str(item.get("value", "")) for item in container.get("env", [])}


def _gitlab_pod_security(spec: Mapping[str, Any]) -> list[str]:
    """config.toml lines giving the job's pod the SELinux type the tested pod ran as (none when the runtime chose)."""
    selinux_type = spec_selinux_type(spec)
    if not selinux_type:
        return []
    return ["    [runners.kubernetes.pod_security_context]", f'      selinux_type = "{selinux_type}"']


def _runner_config(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """GitLab Runner's config.toml names for the tested pod's settings (privileged service, job uid, volumes)."""
    containers = _by_name(spec)
    dind, job = containers.get("dind", {}), containers.get("job", {})
    lines = ["[[runners]]", '  executor = "kubernetes"', "  [runners.kubernetes]"]
    for prefix, container in (("", job), ("service_", dind)):
        for kind, values in (container.get("resources") or {}).items():
            for resource, quantity in values.items():
                lines.append(f'    {prefix}{resource}_{kind.rstrip("s")} = "{quantity}"')
    if (dind.get("securityContext") or {}).get("privileged"):
        lines += ["    [runners.kubernetes.service_container_security_context]", "      privileged = true"]
    lines += _gitlab_pod_security(spec)
    job_context = job.get("securityContext") or {}
    if job_context.get("runAsUser") is not None:
        lines += [
            "    [runners.kubernetes.build_container_security_context]",
            f"      run_as_user = {job_context['runAsUser']}",
            f"      run_as_group = {job_context.get('runAsGroup', job_context['runAsUser'])}",
        ]
    mounts = {m["name"]: m["mountPath"] for m in dind.get("volumeMounts", [])}
    for volume in spec.get("volumes", []):
        if "emptyDir" not in volume or volume["name"] not in mounts:
            continue
        lines += [
            "    [[runners.kubernetes.volumes.empty_dir]]",
            f'      name = "{volume["name"]}"',
            f'      mount_path = "{mounts[volume["name"]]}"',
        ]
        if (volume["emptyDir"] or {}).get("medium"):
            lines.append(f'      medium = "{volume["emptyDir"]["medium"]}"')
    return tuple(lines)


def gitlab_snippet(tested: TestedSpec, remedies: tuple[str, ...] = (), also: tuple[str, ...] = ()) -> str:
    """.gitlab-ci.yml for GitLab's Kubernetes executor, from the TLS layout's tested spec (images, env, uid as run).

    The job's env becomes the job's variables (GitLab passes them to services too), the dind container's own env
    beyond them becomes the service's variables, and the pod-level settings become config.toml lines.
    """
    containers = _by_name(tested.spec)
    dind, job = containers["dind"], containers["job"]
    variables = _env(job)
    service: dict[str, Any] = {"name": str(dind["image"]), "alias": "docker"}
    service_env = {k: v for k, v in _env(dind).items() if variables.get(k) != v}
    if service_env:
        service["variables"] = service_env
    document = {
        "docker-build": {
            "image": str(job["image"]),
            "services": [service],
            "variables": variables,
            "before_script": [GITLAB_WAIT],
            "script": ["docker info"],
        }
    }
    flags = [remedy.split(":", 1)[0] for remedy in remedies if remedy.startswith("--")]
    comments = (
        "GitLab CI, Kubernetes executor: docker:dind as a service with TLS on tcp://docker:2376, as tested: dindcheck",
        "ran the pod this job gets (dind privileged with DOCKER_TLS_CERTDIR=/certs, the job container not privileged,",
        "dialing the service alias docker with these variables, /certs/client on an emptyDir both mount).",
        f"The job waits for dockerd first ({GITLAB_WAIT}):",
        "it can start before the entrypoint wrote the client certs.",
        "Runner config.toml for that pod (GitLab Runner's names for the tested settings):",
        *(f"  {line}" for line in _runner_config(tested.spec)),
        *_wrapped(also),
        *_wrapped(remedies),
        *(
            (
                f"In GitLab: command: {json.dumps(flags)} on the docker service (docker:dind keeps its TLS listeners",
                "when the first argument is a flag).",
            )
            if flags
            else ()
        ),
    )
    return _yaml(document, comments)


def build_snippets(
    *,
    full_docker: Mode,
    build_only: Mode,
    usable: frozenset[Mode],
    cache: OverlayResult | None = None,
    tested: Callable[[Mode], tuple[TestedSpec, ...]] | None = None,
    comments: Mapping[Mode, tuple[str, ...]] | None = None,
    from_source: Mode = Mode.NONE,
) -> dict[str, str]:
    """'skypilot' always (a CONTRACT key), plus the tested pod spec keyed by mode id for each recommended mode.

    With DinD recommended and GitLab's TLS layout proven, 'gitlab' too: the .gitlab-ci.yml of that layout. With
    Kaniko or buildpacks recommended, their Tekton form too ('kaniko-tekton', 'buildpacks-tekton').
    comments: more to say beside a mode's pod (what other pools' specs differ in).
    """
    sky_modes = (Mode.DIND, Mode.BUILDKIT_ROOTLESS)
    pod_security = {
        mode: pod_security_context(pick_tested(mode, tested(mode)))
        for mode in sky_modes
        if tested is not None and mode in usable
    }
    config = {
        "skypilot": skypilot_config(usable=usable, full_docker=full_docker, cache=cache, pod_security=pod_security)
    }
    for mode in dict.fromkeys((full_docker, build_only, from_source)):
        specs = tested(mode) if tested is not None and mode is not Mode.NONE else ()
        chosen = pick_tested(mode, specs)
        pod = mode_snippet(mode, specs, (comments or {}).get(mode, ()))
        if pod is not None:
            config[mode.value] = pod
        tls = next((spec for spec in specs if spec.proven and spec.layout == TLS_LAYOUT), None)
        if mode is Mode.DIND and tls is not None:
            also = partial_proofs(specs, (TLS_LAYOUT,))
            config[GITLAB_SNIPPET] = gitlab_snippet(tls, proven_remedies(specs), also)
        if mode is Mode.BUILDPACKS and chosen is not None:
            config[GITLAB_BUILDPACKS_SNIPPET] = gitlab_buildpacks_snippet(chosen)
        if mode in TEKTON_SNIPPETS and chosen is not None:
            config[TEKTON_SNIPPETS[mode]] = tekton_snippet(chosen)
    return config


def mode_snippet(mode: Mode, specs: tuple[TestedSpec, ...], extra: tuple[str, ...] = ()) -> str | None:
    """The pod to paste for a mode: its proven spec in an agreed layout (pick_tested), None when there is none.

    extra: more to say above it (what other pools' specs differ in).
    """
    chosen = pick_tested(mode, specs)
    if chosen is None:
        return None
    others = tuple(dict.fromkeys(spec.layout for spec in specs if spec.layout != TLS_LAYOUT))
    also = partial_proofs(specs, others, ": it is not the spec below")
    return pod_snippet(chosen, proven_remedies(specs), (*also, *extra))


GITLAB_BUILDPACKS_SNIPPET = "gitlab-buildpacks"
"""recommendation.snippets key of the GitLab CI job for buildpacks: added when from_source is buildpacks."""
GITLAB_CNB_AUTH = (
    'export CNB_REGISTRY_AUTH="{\\"$CI_REGISTRY\\":\\"Basic $(printf %s:%s "$CI_REGISTRY_USER" "$CI_REGISTRY_PASSWORD"'
    " | base64 | tr -d '\\n')\\\"}\""
)
"""The lifecycle's push credentials (CNB_REGISTRY_AUTH), from GitLab's predefined registry variables."""
PROBE_ONLY_CREATOR_ARGS = ("-app=", "-report=")
"""Creator args that place the probe's own files: the job's source is $CI_PROJECT_DIR, its report stays in /layers."""


def gitlab_buildpacks_snippet(tested: TestedSpec) -> str:
    """.gitlab-ci.yml job calling the creator as tested (image, platform API, flags), from the project's source.

    The tested securityContext and the layers emptyDir become GitLab Runner config.toml lines: the job container
    must get them from the runner, as a restricted namespace requires.
    """
    (creator,) = tested.spec["containers"]
    args = [str(arg) for arg in creator["args"][:-1] if not str(arg).startswith(PROBE_ONLY_CREATOR_ARGS)]
    command = " ".join(
        [str(creator["command"][0]), '-app="$CI_PROJECT_DIR"', *args, '"$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA"']
    )
    document = {
        "buildpacks-build": {
            "image": {"name": str(creator["image"]), "entrypoint": [""]},
            "variables": _env(creator),
            "before_script": [GITLAB_CNB_AUTH],
            "script": [command],
        }
    }
    context = creator["securityContext"]
    comments = (
        "GitLab CI, Kubernetes executor: the CNB lifecycle's creator from the project's source, no Dockerfile, as",
        "tested: the builder image, its own non-root user, all capabilities dropped, RuntimeDefault seccomp, no",
        "privilege escalation, /layers on an emptyDir. Runner config.toml for that build container:",
        "  [[runners]]",
        '    executor = "kubernetes"',
        *_gitlab_pod_security(tested.spec),
        "    [runners.kubernetes.build_container_security_context]",
        f"      run_as_non_root = {str(context['runAsNonRoot']).lower()}",
        f"      allow_privilege_escalation = {str(context['allowPrivilegeEscalation']).lower()}",
        "      [runners.kubernetes.build_container_security_context.capabilities]",
        f"        drop = {json.dumps(context['capabilities']['drop'])}",
        "    [[runners.kubernetes.volumes.empty_dir]]",
        '      name = "layers"',
        '      mount_path = "/layers"',
        f"Pod Security restricted also wants seccompProfile {context['seccompProfile']['type']} on every container:",
        "set it on the runner's pods (a [[runners.kubernetes.pod_spec]] patch, FF_USE_ADVANCED_POD_SPEC_CONFIGURATION)",
        "where your runner version has no seccomp setting. Push credentials: CNB_REGISTRY_AUTH, as below.",
    )
    return _yaml(document, comments)


TEKTON_SNIPPETS: Mapping[Mode, str] = {Mode.KANIKO: "kaniko-tekton", Mode.BUILDPACKS: "buildpacks-tekton"}
"""recommendation.snippets keys of the Tekton form (a Task and a TaskRun) of a recommended builder's tested spec."""
TEKTON_API = "tekton.dev/v1"
TEKTON_STEP_FIELDS = (
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "env",
    "envFrom",
    "imagePullPolicy",
    "securityContext",
    "volumeMounts",
    "volumeDevices",
)
"""Container fields a Tekton v1 Step has under the same name (the v1 CRD's schema); resources is computeResources."""
TEKTON_POD_TEMPLATE_FIELDS = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "securityContext",
    "runtimeClassName",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "imagePullSecrets",
    "hostAliases",
    "hostNetwork",
    "dnsPolicy",
    "dnsConfig",
    "priorityClassName",
    "schedulerName",
    "topologySpreadConstraints",
)
"""Pod fields a TaskRun's podTemplate carries (the v1 CRD's schema)."""
TEKTON_OWN_POD_FIELDS = ("restartPolicy",)
"""Pod fields Tekton sets itself (a TaskRun's pod never restarts): not said again."""
TEKTON_RESULTS: Mapping[Mode, tuple[str, str]] = {
    Mode.KANIKO: ("IMAGE_DIGEST", "The pushed image's digest (the executor's --digest-file)."),
    Mode.BUILDPACKS: ("REPORT", "The creator's report.toml, with the pushed image's digest."),
}
"""The Task result that takes the place of the file the probe read the builder's answer from (its termination log):
Tekton keeps a step's termination message for itself (/tekton/termination), so /dev/termination-log is no file a
step can write there (the non-root creator could not even create it in /dev)."""
PROBE_RESULT_FILE = "/dev/termination-log"
TEKTON_SOURCE_WORKSPACE = "source"
TEKTON_SOURCE_PATH = "/workspace"
"""Where the tested builders read the source (Kaniko's context, the creator's -app): a Tekton workspace there."""


def _tekton_step(
    container: Mapping[str, Any], source_volume: str | None, result: str | None
) -> tuple[dict[str, Any], list[str]]:
    """The tested container as a Tekton step, and the container fields a step has no place for.

    The one change to its args: the probe's result file (the termination log) becomes the Task result's path.
    """
    step = {key: _plain(value) for key, value in container.items() if key in TEKTON_STEP_FIELDS}
    if result is not None:
        path = f"$(results.{result}.path)"
        step["args"] = [str(arg).replace(PROBE_RESULT_FILE, path) for arg in step.get("args", [])]
    if "resources" in container:
        step["computeResources"] = _plain(container["resources"])
    if source_volume is not None:
        mounts = [m for m in step.get("volumeMounts", []) if m["name"] != source_volume]
        if mounts:
            step["volumeMounts"] = mounts
        else:
            step.pop("volumeMounts", None)
    left = [key for key in container if key not in (*TEKTON_STEP_FIELDS, "resources")]
    return step, left


def _source_volume(container: Mapping[str, Any], volumes: list[Mapping[str, Any]]) -> str | None:
    """The emptyDir volume mounted at /workspace, which the Tekton form turns into the workspace 'source'."""
    mounted = {m["name"] for m in container.get("volumeMounts", []) if m.get("mountPath") == TEKTON_SOURCE_PATH}
    return next((str(v["name"]) for v in volumes if v["name"] in mounted and "emptyDir" in v), None)


def tekton_documents(tested: TestedSpec) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """A tested builder spec as a Tekton v1 Task and a TaskRun of it, and what of the pod they do not carry.

    The step is the tested container itself (image, command, args, env, securityContext, mounts; its resources as
    computeResources; the termination log it reported into is a Task result's path). The emptyDir the builder reads
    its source from (/workspace) becomes the Task's workspace 'source', which the TaskRun binds to an emptyDir, as
    tested; the other volumes stay the Task's. The pod-level fields become the TaskRun's podTemplate.
    """
    (container,) = tested.spec["containers"]
    volumes = list(tested.spec.get("volumes", []))
    source = _source_volume(container, volumes)
    result = TEKTON_RESULTS.get(tested.mode)
    step, left = _tekton_step(container, source, result[0] if result else None)
    name = f"{tested.mode.value}-build"
    task_spec: dict[str, Any] = {}
    if source is not None:
        task_spec["workspaces"] = [{"name": TEKTON_SOURCE_WORKSPACE, "mountPath": TEKTON_SOURCE_PATH}]
    if result is not None:
        task_spec["results"] = [{"name": result[0], "description": result[1]}]
    task_spec["steps"] = [step]
    kept = [_plain(v) for v in volumes if v["name"] != source]
    if kept:
        task_spec["volumes"] = kept
    run_spec: dict[str, Any] = {"taskRef": {"kind": "Task", "name": name}}
    if source is not None:
        run_spec["workspaces"] = [{"name": TEKTON_SOURCE_WORKSPACE, "emptyDir": {}}]
    template = {key: _plain(tested.spec[key]) for key in TEKTON_POD_TEMPLATE_FIELDS if key in tested.spec}
    if template:
        run_spec["podTemplate"] = template
    handled = {"containers", "volumes", *TEKTON_POD_TEMPLATE_FIELDS, *TEKTON_OWN_POD_FIELDS}
    left += [key for key in tested.spec if key not in handled]
    if tested.annotations:
        left.append("annotations")
    metadata = {"name": name}
    documents = [
        {"apiVersion": TEKTON_API, "kind": "Task", "metadata": metadata, "spec": task_spec},
        {"apiVersion": TEKTON_API, "kind": "TaskRun", "metadata": dict(metadata), "spec": run_spec},
    ]
    return documents, tuple(left)


TEKTON_TITLES: Mapping[Mode, tuple[str, ...]] = {
    Mode.KANIKO: (
        "Tekton: the Kaniko executor as a Task's step, as tested (root, not privileged: Pod Security baseline).",
        "The build context and Dockerfile are read from the workspace 'source' (/workspace); set --destination.",
    ),
    Mode.BUILDPACKS: (
        "Tekton: the CNB lifecycle's creator as a Task's step, as tested (non-root, all capabilities dropped,",
        "RuntimeDefault seccomp: Pod Security restricted). The app's source is read from the workspace 'source'",
        "(/workspace); set the image to push (the last argument). In a namespace that enforces restricted, Tekton's",
        'own init containers need its feature flag set-security-context: "true" (ConfigMap feature-flags).',
    ),
}


def tekton_snippet(tested: TestedSpec) -> str:
    """The Tekton form of a tested builder spec: a Task whose one step is the tested container, and its TaskRun."""
    documents, left = tekton_documents(tested)
    result = TEKTON_RESULTS[tested.mode][0]
    said = (
        (
            "Its step is the container dindcheck ran on this cluster, with the images it used (resources as "
            "computeResources); Tekton runs it in a pod of its own, with init containers of its own. One change: the "
            f"builder reports into the Task result {result} (Tekton keeps a step's termination log for itself). The "
            "TaskRun binds 'source' to an emptyDir, as tested: in a Pipeline, bind it to the volume your clone task "
            "wrote the source to."
        ),
        *tested.notes,
        *((f"Not carried by the Tekton form (no Step or podTemplate field): {', '.join(left)}.",) if left else ()),
    )
    comments = (*TEKTON_TITLES.get(tested.mode, ()), *_wrapped(said))
    header = "".join(f"# {line}\n" for line in comments)
    return header + yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False)
