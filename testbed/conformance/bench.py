"""Benchmark (not a test): wall time of a full warm run on the testbed, per-probe durations, and their ratio.

Usage: python testbed/conformance/bench.py [--runs N] [--out DIR]. Writes benchmark.json and benchmark.md to DIR
(default ci-out/) and prints the table. Aim: the full run within 1.3x its slowest probe, well under a minute.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testbed.conformance.harness import REPO, STATE, read_shell_env, run_suite

AIM_RATIO = 1.3


def main() -> int:
    """Run the suite N times and report wall time, per-probe durations and the wall/slowest ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "ci-out")
    args = parser.parse_args()
    env = read_shell_env(STATE / "env")
    runs = []
    for index in range(args.runs):
        run = run_suite(env, args.out / f"bench-{index}")
        if not run.report:
            print(run.output[-3000:], file=sys.stderr)
            return 1
        durations = {c["id"]: c["duration_s"] for c in run.report["checks"]}
        slowest = max(durations, key=lambda k: durations[k])
        runs.append(
            {
                "wall_s": round(run.wall_s, 2),
                "report_total_s": run.report["timing"]["total_s"],
                "checks": durations,
                "slowest": slowest,
                "ratio": round(run.wall_s / durations[slowest], 2),
                "exit_code": run.exit_code,
            }
        )
    summary = {
        "runs": runs,
        "median_wall_s": round(statistics.median(r["wall_s"] for r in runs), 2),
        "median_ratio": round(statistics.median(r["ratio"] for r in runs), 2),
        "aim_ratio": AIM_RATIO,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# dindcheck benchmark (warm testbed, permissive profile)",
        "",
        "| run | wall s | slowest probe | its s | wall/slowest |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {i} | {r['wall_s']} | {r['slowest']} | {r['checks'][r['slowest']]} | {r['ratio']} |"
        for i, r in enumerate(runs)
    ]
    lines += ["", "| probe | s (last run) |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(runs[-1]["checks"].items(), key=lambda kv: -kv[1])]
    lines += [
        "",
        f"median wall {summary['median_wall_s']} s, median ratio {summary['median_ratio']} (aim <= {AIM_RATIO})",
    ]
    (args.out / "benchmark.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
