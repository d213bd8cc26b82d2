#!/usr/bin/env python3
"""Turns compare.sh's JSON results into a markdown table with ratios versus wsrelay.

usage: compare_table.py RESULTS_DIR "SERVERS" "SCENARIOS"

Each cell is the mean over rounds; the per-round values of the headline figure follow in
brackets so the spread is visible.
"""

import json
import pathlib
import sys


def load(results, scenario, server):
    runs = []
    for path in sorted(results.glob(f"{scenario}.{server}.*.json")):
        try:
            runs.append(json.loads(path.read_text()))
        except (json.JSONDecodeError, OSError):
            pass
    return runs


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def fmt(value, digits=0, scale=1.0):
    if value is None:
        return "n/a"
    return f"{value * scale:,.{digits}f}"


def traffic_row(scenario, server, runs, base):
    delivered = [r["delivered_per_s"] for r in runs]
    d = mean(delivered)
    ratio = f"{d / base:.2f}×" if base and d is not None else "n/a"
    window = mean([r["window_s"] for r in runs]) or 1.0
    loss = sum(r["loss"] for r in runs)
    expected = sum(r["expected"] for r in runs)
    skipped = sum(r["publish_skipped"] for r in runs)
    lat = lambda q: mean([r["latency_us"][q] for r in runs])
    cpu_pct = mean([(r["server_cpu_s"] or 0) / window * 100 for r in runs])
    swarm_pct = mean([r["swarm_cpu_s"] / window * 100 for r in runs])
    waits = lambda key: mean([(r.get(key) or 0) / window * 100 for r in runs])
    send_lag_p99 = mean([(r.get("send_lag_us") or {}).get("p99") for r in runs])
    return (
        f"| {scenario} | {server} | {fmt(d)} ({', '.join(fmt(x) for x in delivered)}) | {ratio} "
        f"| {loss:,} of {expected:,} (+{skipped:,} skipped) | {fmt(lat('p50'), 2, 1e-3)} "
        f"| {fmt(lat('p99'), 2, 1e-3)} ({', '.join(fmt(r['latency_us']['p99'], 2, 1e-3) for r in runs)}) "
        f"| {fmt(lat('p999'), 2, 1e-3)} | {fmt(send_lag_p99, 2, 1e-3)} "
        f"| {fmt(cpu_pct)}% | {fmt(mean([r['server_cpu_s_per_million'] for r in runs]), 3)} "
        f"| {fmt(swarm_pct)}% | {fmt(waits('server_run_queue_wait_s'))}% / {fmt(waits('swarm_run_queue_wait_s'))}% |"
    )


def conns_row(server, runs, base):
    per_conn = mean([r["server_bytes_per_conn"] for r in runs])
    ratio = f"{per_conn / base:.2f}×" if base and per_conn is not None else "n/a"
    c = [r["connections"] for r in runs]
    return (
        f"| conns | {server} | {fmt(mean([x['ready'] for x in c]))} of {fmt(mean([x['planned'] for x in c]))} "
        f"| {fmt(mean([x['failed'] + x['lost'] for x in c]))} | {fmt(per_conn)} "
        f"({', '.join(fmt(r['server_bytes_per_conn']) for r in runs)}) | {ratio} "
        f"| {fmt(mean([x['connect_us']['p50'] for x in c]))} | {fmt(mean([x['connect_us']['p99'] for x in c]))} "
        f"| {fmt(mean([x['setup_s'] for x in c]), 2)} |"
    )


def main():
    results = pathlib.Path(sys.argv[1])
    servers = sys.argv[2].split()
    scenarios = sys.argv[3].split()
    traffic = [s for s in scenarios if s != "conns"]
    if traffic:
        print("| scenario | server | delivered/s (per round) | vs wsrelay | loss | p50 ms "
              "| p99 ms (per round) | p99.9 ms | swarm send lag p99 ms | server CPU "
              "| server CPU-s / M deliveries | swarm CPU | waiting for a CPU (server / swarm) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for scenario in traffic:
            base_runs = load(results, scenario, "wsrelay")
            base = mean([r["delivered_per_s"] for r in base_runs])
            for server in servers:
                runs = load(results, scenario, server)
                if runs:
                    print(traffic_row(scenario, server, runs, base))
        print()
    if "conns" in scenarios:
        print("| scenario | server | ready | failed | server bytes / conn (per round) | vs wsrelay "
              "| connect p50 µs | connect p99 µs | setup s |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        base = mean([r["server_bytes_per_conn"] for r in load(results, "conns", "wsrelay")])
        for server in servers:
            runs = load(results, "conns", server)
            if runs:
                print(conns_row(server, runs, base))


if __name__ == "__main__":
    main()
