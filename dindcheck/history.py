r"""Keeping a scheduled run's reports in a ConfigMap: last night's, the last N, and a pinned known-good one.

A ConfigMap (not a PVC) because it needs no StorageClass, survives the Job's pod, and a person reads it with
`kubectl get configmap dindcheck-reports -o jsonpath='{.data.latest\\.json}'`. Reports are tens of KB; the last 14
fit well inside the 1 MiB a ConfigMap may hold, and the oldest go first when that limit comes near.

`pinned.json` is the known-good report tonight's run is also judged against (--pinned-baseline): a mode lost since
then fails every night, not only the night it was lost. The first report stored becomes the pin (or, in a history
from before pins, the latest one already there); after that only `pin` moves it, on purpose.

    python -m dindcheck.history fetch --configmap NAME --to previous.json [--pinned-to pinned.json]
        (no file when there is none yet; exit 1 when the API cannot be read: never a silent run without them)
    python -m dindcheck.history store --configmap NAME --from report.json [--keep 14]
    python -m dindcheck.history pin --configmap NAME [--from report.json]    (default: the latest stored report)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import urllib3
from kubernetes.client import CoreV1Api
from kubernetes.client.rest import ApiException

from probes.api import api_call
from probes.cluster import connect
from probes.exceptions import UsageError

LATEST = "latest.json"
PINNED = "pinned.json"
MAX_BYTES = 900_000
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LABELS = {"app.kubernetes.io/part-of": "dindcheck", "app.kubernetes.io/component": "report-history"}


def history_key(report: dict[str, Any]) -> str:
    """report-<generated_at>.json, with characters a ConfigMap key cannot hold replaced."""
    stamp = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(report.get("generated_at", "unknown")))
    return f"report-{stamp}.json"


def rotated(data: dict[str, str], report_text: str, keep: int) -> dict[str, str]:
    """The ConfigMap data with this report added as latest and as its own entry, the oldest dropped beyond keep.

    The pin is kept as it is; without one, the report that was latest until now (else this one) becomes it.
    """
    report = json.loads(report_text)
    pinned = data.get(PINNED) or data.get(LATEST) or report_text
    entries = {key: value for key, value in data.items() if key.startswith("report-")}
    entries[history_key(report)] = report_text
    names = sorted(entries)
    fixed = len(report_text) + len(pinned)
    while names and (len(names) > keep or sum(len(entries[n]) for n in names) + fixed > MAX_BYTES):
        names.pop(0)
    return {LATEST: report_text, PINNED: pinned, **{name: entries[name] for name in names}}


def with_pin(data: dict[str, str], report_text: str) -> dict[str, str]:
    """The ConfigMap data with this report as the pin, the rest unchanged."""
    return {**data, PINNED: report_text}


def _read(core: CoreV1Api, namespace: str, name: str) -> Any:
    """The ConfigMap, or None when it does not exist yet (the first night); any other error is raised."""
    try:
        return api_call(core.read_namespaced_config_map, name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def fetch(core: CoreV1Api, namespace: str, name: str, targets: dict[str, Path]) -> list[str]:
    """Write each stored report of targets ({LATEST: path, PINNED: path}) that exists; returns the keys written."""
    config_map = _read(core, namespace, name)
    data = (config_map.data or {}) if config_map is not None else {}
    written = []
    for key, target in targets.items():
        if data.get(key):
            target.write_text(data[key], encoding="utf-8")
            written.append(key)
    return written


def store(core: CoreV1Api, namespace: str, name: str, source: Path, keep: int) -> int:
    """Add the report to the ConfigMap (created on first use); returns how many reports it now keeps."""
    report_text = source.read_text(encoding="utf-8")
    current = _read(core, namespace, name)
    if current is None:
        data = rotated({}, report_text, keep)
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": LABELS}, "data": data}
        api_call(core.create_namespaced_config_map, namespace, body)
    else:
        data = rotated(dict(current.data or {}), report_text, keep)
        current.data = data
        api_call(core.replace_namespaced_config_map, name, namespace, current)
    return sum(key.startswith("report-") for key in data)


def pin(core: CoreV1Api, namespace: str, name: str, source: Path | None) -> str:
    """Make a report the pin: the file source, else the latest stored one; returns its generated_at."""
    current = _read(core, namespace, name)
    if current is None or not (current.data or {}).get(LATEST):
        raise UsageError(f"configmap {namespace}/{name} holds no report yet: nothing to pin")
    report_text = source.read_text(encoding="utf-8") if source is not None else current.data[LATEST]
    generated_at = str(json.loads(report_text).get("generated_at", "?"))
    current.data = with_pin(dict(current.data), report_text)
    api_call(core.replace_namespaced_config_map, name, namespace, current)
    return generated_at


def _reason(exc: Exception) -> str:
    """One line: the API's status and its own message, not the response headers an ApiException prints."""
    if not isinstance(exc, ApiException):
        return " ".join(str(exc).split())
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return f"the API answered {exc.status} {exc.reason}" + (f": {' '.join(str(message).split())}" if message else "")


def _say(text: str, *, error: bool = False) -> None:
    print(f"dindcheck history: {text}", file=sys.stderr if error else sys.stdout)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser, namespace: str) -> int:
    core = connect(args.kubeconfig, None).core
    where = f"configmap {namespace}/{args.configmap}"
    if args.action == "fetch":
        if args.to is None:
            parser.error("fetch needs --to PATH")
        targets = {LATEST: args.to, **({PINNED: args.pinned_to} if args.pinned_to else {})}
        written = fetch(core, namespace, args.configmap, targets)
        _say("fetched the latest report" if LATEST in written else f"no earlier report in {where}")
        if args.pinned_to:
            _say("fetched the pinned report" if PINNED in written else "no pinned report yet")
        return 0
    if args.action == "pin":
        _say(f"pinned the report of {pin(core, namespace, args.configmap, args.source)} in {where}")
        return 0
    if args.source is None or not args.source.is_file():
        _say("no report to store (the run wrote none)", error=True)
        return 1
    kept = store(core, namespace, args.configmap, args.source, args.keep)
    _say(f"stored; {kept} report(s) kept in {where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Fetch, store or pin, for the nightly CronJob's script (deploy/cronjob.yaml) and its owner."""
    parser = argparse.ArgumentParser(prog="python -m dindcheck.history", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("fetch", "store", "pin"))
    parser.add_argument("--configmap", required=True)
    parser.add_argument("--namespace", help="default: the pod's own namespace")
    parser.add_argument("--kubeconfig", help="default: in-cluster ServiceAccount, else $KUBECONFIG")
    parser.add_argument("--to", type=Path, help="fetch: where to write the latest report")
    parser.add_argument("--pinned-to", type=Path, help="fetch: where to write the pinned report")
    parser.add_argument("--from", dest="source", type=Path, help="store: the report to add; pin: the report to pin")
    parser.add_argument("--keep", type=int, default=14, help="store: how many reports to keep (default 14)")
    args = parser.parse_args(argv)
    namespace = args.namespace or (
        SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.is_file() else "default"
    )
    try:
        return _run(args, parser, namespace)
    except (UsageError, ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        _say(f"could not {args.action} (configmap {namespace}/{args.configmap}): {_reason(exc)}", error=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
