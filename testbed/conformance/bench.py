"""Benchmark (not a test): wall time of a full warm run on the testbed, per-probe durations, and their ratio.

Usage: python testbed/conformance/bench.py [--runs N] [--out DIR] [--pools | --concurrent N | --fleet]. Writes
benchmark.json and benchmark.md to DIR (default ci-out/) and prints the table. Aim: the full run within 1.3x its slowest
probe, well under a minute. With --pools (two-node testbed): each round also runs one pool (--node-selector) and both
pools at once (--each-pool), side by side; aim: two pools within 1.3x the wall time of one. With --concurrent N: each
round runs one full run alone, then N at once (each in its own namespace), and writes benchmark-concurrent.{json,md}:
the wall time of the N against one, and the host CPU each cost (N runs share the host's cores, so the ratio follows the
CPU, not a lock between runs). With --fleet: each round runs one context, then two contexts at once from one process (a
fleet run), and writes benchmark-fleet.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testbed.conformance.harness import (
    REPO,
    STATE,
    KubeContext,
    admin_user,
    finish_suite,
    host_busy_cpu_s,
    read_shell_env,
    run_suite,
    start_suite,
    statuses,
    with_kubeconfig,
    write_kubeconfig,
)

AIM_RATIO = 1.3
FLEET_CONTEXTS = ("bench-a", "bench-b")


def main() -> int:
    """Run the suite N times and report wall time, per-probe durations and the wall/slowest ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "ci-out")
    parser.add_argument("--pools", action="store_true", help="also compare one pool with two (two-node testbed)")
    parser.add_argument("--concurrent", type=int, default=0, metavar="N", help="compare N runs at once with one")
    parser.add_argument("--fleet", action="store_true", help="compare a two-context fleet run with one context")
    args = parser.parse_args()
    env = read_shell_env(STATE / "env")
    if args.pools:
        return pools_benchmark(env, args.runs, args.out)
    if args.fleet:
        return fleet_benchmark(env, args.runs, args.out)
    if args.concurrent:
        return concurrent_benchmark(env, args.runs, args.concurrent, args.out)
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
                "host_cpu_s": run.host_cpu_s,
                "host_busy": run.host_busy,
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
        "| run | wall s | slowest probe | its s | wall/slowest | host CPU s | host busy |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {i} | {r['wall_s']} | {r['slowest']} | {r['checks'][r['slowest']]} | {r['ratio']} "
        f"| {r['host_cpu_s']} | {r['host_busy']:.0%} |"
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


ONE_POOL = ("--node-selector", "dindcheck.io/pool=default")
TWO_POOLS = ("--each-pool", "dindcheck.io/pool", "--toleration", "all")


def pools_benchmark(env: dict[str, str], rounds: int, out: Path) -> int:
    """One pool, then both pools at once, per round: wall time must stay O(1) in the number of pools.

    Both testbed nodes share the host's cores, so next to the plain ratio each round says how busy the host was and
    how long the two-pool run took against its own slowest probe: a ratio above the aim with the host's cores
    saturated and wall ~ slowest probe is the host's CPU, not dindcheck serialising pools.
    """
    cores = os.cpu_count() or 1
    rows = []
    for index in range(rounds):
        one = run_suite(env, out / f"bench-pool-one-{index}", *ONE_POOL)
        two = run_suite(env, out / f"bench-pool-two-{index}", *TWO_POOLS)
        if not one.report or not two.report:
            print((one.output if not one.report else two.output)[-3000:], file=sys.stderr)
            return 1
        slowest = max(check["duration_s"] for pool in two.report["pools"] for check in pool["checks"])
        rows.append(
            {
                "one_pool_s": round(one.wall_s, 2),
                "two_pools_s": round(two.wall_s, 2),
                "ratio": round(two.wall_s / one.wall_s, 2),
                "one_pool_cpu_s": one.host_cpu_s,
                "two_pools_cpu_s": two.host_cpu_s,
                "one_pool_host_busy": one.host_busy,
                "two_pools_host_busy": two.host_busy,
                "two_pools_slowest_probe_s": slowest,
                "two_pools_wall_over_slowest": round(two.wall_s / slowest, 2),
            }
        )
    summary = {
        "cores": cores,
        "rounds": rows,
        "median_ratio": round(statistics.median(r["ratio"] for r in rows), 2),
        "median_cpu_ratio": round(statistics.median(r["two_pools_cpu_s"] / r["one_pool_cpu_s"] for r in rows), 2),
        "aim_ratio": AIM_RATIO,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark-pools.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# two pools vs one (warm two-node testbed, both nodes on one host of {cores} cores)",
        "",
        (
            "| round | one pool s | two pools s | ratio | host CPU s (one / two) | host busy (one / two) "
            "| two pools: slowest probe s | two pools: wall/slowest |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {i} | {r['one_pool_s']} | {r['two_pools_s']} | {r['ratio']} "
        f"| {r['one_pool_cpu_s']} / {r['two_pools_cpu_s']} "
        f"| {r['one_pool_host_busy']:.0%} / {r['two_pools_host_busy']:.0%} "
        f"| {r['two_pools_slowest_probe_s']} | {r['two_pools_wall_over_slowest']} |"
        for i, r in enumerate(rows)
    ]
    lines += [
        "",
        (
            f"median two/one ratio {summary['median_ratio']} (aim <= {AIM_RATIO}); "
            f"two pools cost {summary['median_cpu_ratio']}x the host CPU of one"
        ),
    ]
    (out / "benchmark-pools.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def concurrent_benchmark(env: dict[str, str], rounds: int, count: int, out: Path) -> int:
    """One run alone, then count runs at once, per round: the wall time of all of them against one.

    Every run must reach the lone run's verdicts (a benchmark of runs that broke each other would measure nothing).
    """
    rows: list[dict[str, Any]] = []
    for index in range(rounds):
        one = run_suite(env, out / f"bench-concurrent-one-{index}")
        if not one.report:
            print(one.output[-3000:], file=sys.stderr)
            return 1
        cpu_before = host_busy_cpu_s()
        started = [start_suite(env, out / f"bench-concurrent-{index}-{n}") for n in range(count)]
        runs = [finish_suite(run) for run in started]
        cpu = round(host_busy_cpu_s() - cpu_before, 2)
        wall = max(run.wall_s for run in runs)
        differing = [run for run in runs if statuses(run) != statuses(one) or run.exit_code != one.exit_code]
        if differing:
            print(differing[0].output[-3000:], file=sys.stderr)
            print(f"bench: {len(differing)} of {count} concurrent runs differ from the lone run", file=sys.stderr)
            return 1
        rows.append(
            {
                "one_s": round(one.wall_s, 2),
                "all_s": round(wall, 2),
                "ratio": round(wall / one.wall_s, 2),
                "each_s": [round(run.wall_s, 2) for run in runs],
                "one_cpu_s": one.host_cpu_s,
                "all_cpu_s": cpu,
                "one_host_busy": one.host_busy,
                "all_host_busy": round(cpu / ((os.cpu_count() or 1) * wall), 2),
            }
        )
    summary = {
        "cores": os.cpu_count() or 1,
        "concurrent": count,
        "rounds": rows,
        "median_ratio": round(statistics.median(r["ratio"] for r in rows), 2),
        "median_cpu_ratio": round(statistics.median(r["all_cpu_s"] / r["one_cpu_s"] for r in rows), 2),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark-concurrent.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# {count} runs at once vs one (warm testbed, permissive profile, {summary['cores']} cores)",
        "",
        f"| round | one run s | {count} at once s | ratio | each s | host CPU s (one / all) | host busy (one / all) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {i} | {r['one_s']} | {r['all_s']} | {r['ratio']} | {', '.join(map(str, r['each_s']))} "
        f"| {r['one_cpu_s']} / {r['all_cpu_s']} | {r['one_host_busy']:.0%} / {r['all_host_busy']:.0%} |"
        for i, r in enumerate(rows)
    ]
    lines += [
        "",
        (
            f"median ratio {summary['median_ratio']} for {count} runs ({count} alone in a row: {count}); "
            f"{count} runs cost {summary['median_cpu_ratio']}x the host CPU of one"
        ),
    ]
    (out / "benchmark-concurrent.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def fleet_benchmark(env: dict[str, str], rounds: int, out: Path) -> int:
    """One context, then two at once from one process, per round: a fleet costs its slowest cluster, not their sum.

    Both contexts reach the one testbed (each run in its own namespace), so both clusters' probes share the host's
    cores. Judged as the pools benchmark is: the fleet's wall time over the larger of its slowest cluster's own wall
    time and the host's CPU limit (the host CPU-seconds it used over the cores): above the aim would mean dindcheck
    serialised the clusters, not that the host was busy.
    """
    cores = os.cpu_count() or 1
    out.mkdir(parents=True, exist_ok=True)
    kubeconfig = write_kubeconfig(
        env, out / "bench-fleet-kubeconfig", [KubeContext(name, admin_user(env)) for name in FLEET_CONTEXTS]
    )
    fleet_env = with_kubeconfig(env, kubeconfig)
    rows = []
    for index in range(rounds):
        one = run_suite(fleet_env, out / f"bench-fleet-one-{index}", "--context", FLEET_CONTEXTS[0])
        two = run_suite(
            fleet_env,
            out / f"bench-fleet-two-{index}",
            *(arg for name in FLEET_CONTEXTS for arg in ("--context", name)),
        )
        clusters = two.report.get("clusters", [])
        if not one.report or len(clusters) != len(FLEET_CONTEXTS):
            print((one.output if not one.report else two.output)[-3000:], file=sys.stderr)
            return 1
        slowest_cluster = max(cluster["timing"]["total_s"] for cluster in clusters)
        cpu_limit = two.host_cpu_s / cores
        rows.append(
            {
                "one_s": round(one.wall_s, 2),
                "two_s": round(two.wall_s, 2),
                "ratio": round(two.wall_s / one.wall_s, 2),
                "one_cpu_s": one.host_cpu_s,
                "two_cpu_s": two.host_cpu_s,
                "slowest_cluster_s": round(slowest_cluster, 2),
                "cpu_limit_s": round(cpu_limit, 2),
                "wall_over_bound": round(two.wall_s / max(slowest_cluster, cpu_limit), 2),
            }
        )
    summary = {
        "cores": cores,
        "rounds": rows,
        "median_ratio": round(statistics.median(r["ratio"] for r in rows), 2),
        "median_wall_over_bound": round(statistics.median(r["wall_over_bound"] for r in rows), 2),
        "median_cpu_ratio": round(statistics.median(r["two_cpu_s"] / r["one_cpu_s"] for r in rows), 2),
        "aim_ratio": AIM_RATIO,
    }
    (out / "benchmark-fleet.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# two clusters (contexts) vs one (warm testbed, both on one host of {cores} cores)",
        "",
        (
            "| round | one context s | two contexts s | ratio | host CPU s (one / two) | slowest cluster s "
            "| CPU limit s | two: wall / max(slowest, CPU limit) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {i} | {r['one_s']} | {r['two_s']} | {r['ratio']} | {r['one_cpu_s']} / {r['two_cpu_s']} "
        f"| {r['slowest_cluster_s']} | {r['cpu_limit_s']} | {r['wall_over_bound']} |"
        for i, r in enumerate(rows)
    ]
    lines += [
        "",
        (
            f"median two/one ratio {summary['median_ratio']}; median wall over its bound "
            f"{summary['median_wall_over_bound']} (aim <= {AIM_RATIO}); two contexts cost "
            f"{summary['median_cpu_ratio']}x the host CPU of one"
        ),
    ]
    (out / "benchmark-fleet.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
