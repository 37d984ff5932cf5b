r"""Keeping the last N reports of a scheduled run in a ConfigMap, so tonight's run compares with last night's.

A ConfigMap (not a PVC) because it needs no StorageClass, survives the Job's pod, and a person reads it with
`kubectl get configmap dindcheck-reports -o jsonpath='{.data.latest\\.json}'`. Reports are tens of KB; the last 14
fit well inside the 1 MiB a ConfigMap may hold, and the oldest go first when that limit comes near.

    python -m dindcheck.history fetch --configmap NAME --to previous.json    (no file when there is no history)
    python -m dindcheck.history store --configmap NAME --from report.json [--keep 14]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException

from probes.cluster import Connection, connect
from probes.engine import api_call
from probes.exceptions import UsageError

LATEST = "latest.json"
MAX_BYTES = 900_000
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LABELS = {"app.kubernetes.io/part-of": "dindcheck", "app.kubernetes.io/component": "report-history"}


def history_key(report: dict[str, Any]) -> str:
    """report-<generated_at>.json, with characters a ConfigMap key cannot hold replaced."""
    stamp = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(report.get("generated_at", "unknown")))
    return f"report-{stamp}.json"


def rotated(data: dict[str, str], report_text: str, keep: int) -> dict[str, str]:
    """The ConfigMap data with this report added as latest and as its own entry, the oldest dropped beyond keep."""
    report = json.loads(report_text)
    entries = {key: value for key, value in data.items() if key.startswith("report-")}
    entries[history_key(report)] = report_text
    names = sorted(entries)
    while names and (len(names) > keep or sum(len(entries[n]) for n in names) + len(report_text) > MAX_BYTES):
        names.pop(0)
    return {LATEST: report_text, **{name: entries[name] for name in names}}


def fetch(connection: Connection, namespace: str, name: str, target: Path) -> bool:
    """Write the latest stored report to target; False (and no file) when there is none yet."""
    try:
        config_map = api_call(connection.core.read_namespaced_config_map, name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    latest = (config_map.data or {}).get(LATEST)
    if not latest:
        return False
    target.write_text(latest, encoding="utf-8")
    return True


def store(connection: Connection, namespace: str, name: str, source: Path, keep: int) -> int:
    """Add the report to the ConfigMap (created on first use); returns how many reports it now keeps."""
    report_text = source.read_text(encoding="utf-8")
    core = connection.core
    try:
        current = api_call(core.read_namespaced_config_map, name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        data = rotated({}, report_text, keep)
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": LABELS}, "data": data}
        api_call(core.create_namespaced_config_map, namespace, body)
    else:
        data = rotated(dict(current.data or {}), report_text, keep)
        current.data = data
        api_call(core.replace_namespaced_config_map, name, namespace, current)
    return len(data) - 1


def main(argv: list[str] | None = None) -> int:
    """Fetch or store, for the nightly CronJob's script (deploy/cronjob.yaml)."""
    parser = argparse.ArgumentParser(prog="python -m dindcheck.history", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("fetch", "store"))
    parser.add_argument("--configmap", required=True)
    parser.add_argument("--namespace", help="default: the pod's own namespace")
    parser.add_argument("--kubeconfig", help="default: in-cluster ServiceAccount, else $KUBECONFIG")
    parser.add_argument("--to", type=Path, help="fetch: where to write the latest report")
    parser.add_argument("--from", dest="source", type=Path, help="store: the report to add")
    parser.add_argument("--keep", type=int, default=14, help="store: how many reports to keep (default 14)")
    args = parser.parse_args(argv)
    namespace = args.namespace or (
        SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.is_file() else "default"
    )
    try:
        connection = connect(args.kubeconfig, None)
        if args.action == "fetch":
            if args.to is None:
                parser.error("fetch needs --to PATH")
            found = fetch(connection, namespace, args.configmap, args.to)
            print(f"dindcheck history: {'fetched the latest report' if found else 'no earlier report'}")  # noqa: T201
            return 0
        if args.source is None or not args.source.is_file():
            print("dindcheck history: no report to store (the run wrote none)", file=sys.stderr)  # noqa: T201
            return 1
        kept = store(connection, namespace, args.configmap, args.source, args.keep)
        print(f"dindcheck history: stored; {kept} report(s) kept in configmap {namespace}/{args.configmap}")  # noqa: T201
    except (UsageError, ApiException) as exc:
        print(f"dindcheck history: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
