#!/usr/bin/env python3
"""Repeatable instruction count of one delivery through the whole relay (issue 12's 3% bar).

Runs the relay binary under `valgrind --tool=callgrind --separate-threads=yes` (one loop,
pinned to CPU 0) while `wsrelay-swarm fanout` (CPU 1) publishes at a light fixed rate to 100
subscribers, once for a short and once for a long window. The difference between the two runs
of the event loop thread's instruction count, divided by the difference in deliveries, is the
marginal cost of one delivery: start-up, handshakes and shutdown cancel out, and at this rate
every publish is its own turn, so the figure does not depend on timing the way deliveries/s do.

The loop's `memset` is reported apart: it is the per-interval zeroing of latency histograms
(time-proportional, not per delivery), which moved to the exporter thread in 2026-12.

Usage: callgrind_fanout.py RELAY_BIN SWARM_BIN [--rate 20] [--subscribers 100]
Prints one JSON line. Only loopback traffic; every process is started and ended here by PID.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, proc):
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit("relay exited during start-up")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("relay did not become healthy")


def thread_costs(prefix):
    """(total Ir, memset Ir) of the thread that executed the most instructions (the loop)."""
    best = (0, 0)
    for name in os.listdir(os.path.dirname(prefix)):
        path = os.path.join(os.path.dirname(prefix), name)
        if not name.startswith(os.path.basename(prefix) + "-"):
            continue
        total = 0
        with open(path) as f:
            for line in f:
                if line.startswith("totals:") or line.startswith("summary:"):
                    total = int(line.split()[1])
                    break
        if total <= best[0]:
            continue
        out = subprocess.run(
            ["callgrind_annotate", "--inclusive=no", path],
            capture_output=True, text=True, check=True,
        ).stdout
        memset = 0
        for line in out.splitlines():
            cost = re.match(r"\s*([0-9,]+) \(", line)
            if cost and "memset" in line:
                memset += int(cost.group(1).replace(",", ""))
        best = (total, memset)
    return best


def run(args, window_s, workdir):
    port = free_port()
    prefix = os.path.join(workdir, f"cg-{window_s}")
    relay = subprocess.Popen(
        ["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--separate-threads=yes",
         f"--callgrind-out-file={prefix}", args.relay, "--bind", "127.0.0.1", "--port",
         str(port), "--threads", "1", "--max-connections-per-ip", "0", "--connect-rate", "0",
         "--connect-rate-per-ip", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(port, relay)
        swarm = subprocess.run(
            ["taskset", "-c", "1", args.swarm, "fanout", "--url", f"ws://127.0.0.1:{port}/",
             "--subscribers", str(args.subscribers), "--rate", str(args.rate), "--duration",
             f"{window_s}s", "--warmup", "1s", "--ramp", "500", "--json"],
            capture_output=True, text=True, timeout=300, check=True,
        )
        report = json.loads(swarm.stdout)
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=120)
    total, memset = thread_costs(prefix)
    return {"received": report["received"], "loss": report["loss"], "loop_ir": total,
            "loop_memset_ir": memset}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("relay")
    p.add_argument("swarm")
    p.add_argument("--rate", type=int, default=20)
    p.add_argument("--subscribers", type=int, default=100)
    p.add_argument("--short", type=int, default=5)
    p.add_argument("--long", type=int, default=15)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        short = run(args, args.short, workdir)
        long = run(args, args.long, workdir)
    deliveries = long["received"] - short["received"]
    ir = long["loop_ir"] - short["loop_ir"]
    memset = long["loop_memset_ir"] - short["loop_memset_ir"]
    print(json.dumps({
        "relay": args.relay, "rate": args.rate, "subscribers": args.subscribers,
        "short": short, "long": long, "deliveries": deliveries,
        "loop_ir_per_delivery": round(ir / deliveries, 1),
        "loop_ir_per_delivery_without_memset": round((ir - memset) / deliveries, 1),
    }))


if __name__ == "__main__":
    main()
