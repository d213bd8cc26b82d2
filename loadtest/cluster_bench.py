#!/usr/bin/env python3
"""Cluster-mode benchmarks for docs/BENCHMARKS.md ("Cluster mode", issue 13).

Starts its own nats-server(s) and relays on loopback (fresh store directory per run), pins
relays and nats-servers to CPU 0 and the swarm to CPU 1 (taskset), runs wsrelay-swarm, and
prints one JSON line per run with the swarm's report fields, the CPU seconds of every server
process over the run, and the relays' cluster metrics (before/after deltas). Everything it
starts is killed by PID at the end of each run.

    loadtest/cluster_bench.py latency     # (a) 2 relays + 1 nats-server vs 1 relay, 1,000/s
    loadtest/cluster_bench.py coalesce    # (b) 50,000 publishes/s on one channel
    loadtest/cluster_bench.py leaderkill  # (c) 3 nats-servers R3, SIGKILL the stream leader

Environment: WSRELAY_BIN (target/release/wsrelay), SWARM_BIN (target/release/wsrelay-swarm),
NATS_SERVER_BIN (/usr/sbin/nats-server), BENCH_ROUNDS (latency: 2), BENCH_SUBSCRIBERS
(latency: 1000, coalesce: 10, leaderkill: 100), BENCH_RATE (coalesce: 50000, leaderkill: 500),
BENCH_RELAY_EXTRA (more relay flags, e.g. "--nats-publish-queue 100000").
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

RELAY = os.environ.get("WSRELAY_BIN", "target/release/wsrelay")
SWARM = os.environ.get("SWARM_BIN", "target/release/wsrelay-swarm")
NATS = os.environ.get("NATS_SERVER_BIN", "/usr/sbin/nats-server")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, path, timeout=5):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.read().decode()
    except Exception:
        return ""


def cpu_s(pid):
    """utime + stime of a process (all threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except OSError:
        return 0.0


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Procs:
    """Processes started by this script, killed by PID."""

    def __init__(self):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="wsrelay-cbench.")

    def start(self, args, log, cpu="0"):
        out = open(os.path.join(self.dir, log), "w")
        p = subprocess.Popen(["taskset", "-c", cpu] + args, stdout=out, stderr=out)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_nats(procs, nodes):
    """1 or 3 JetStream servers; returns [(Popen, url, http_port, name)]."""
    ports = [(free_port(), free_port(), free_port()) for _ in range(nodes)]
    routes = ", ".join(f"nats-route://127.0.0.1:{r}" for _, r, _ in ports)
    out = []
    for i, (client, route, mon) in enumerate(ports, 1):
        conf = os.path.join(procs.dir, f"n{i}.conf")
        with open(conf, "w") as f:
            f.write(f"server_name: n{i}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{mon}\n")
            f.write(f'jetstream {{ store_dir: "{procs.dir}/n{i}", max_memory_store: 256MB, '
                    "max_file_store: 2GB }\n")
            if nodes == 3:
                f.write(f"cluster {{ name: wsr, listen: 127.0.0.1:{route}, routes: [ {routes} ] }}\n")
        p = procs.start([NATS, "-c", conf], f"n{i}.log")
        out.append((p, f"nats://127.0.0.1:{client}", mon, f"n{i}"))
    deadline = time.time() + 30
    while time.time() < deadline:
        ready = True
        for _, _, mon, _ in out:
            j = http(mon, "/jsz")
            if not j:
                ready = False
            elif nodes == 3:
                m = json.loads(j).get("meta_cluster", {})
                ready = ready and bool(m.get("leader")) and m.get("cluster_size") == 3
        if ready:
            return out
        time.sleep(0.1)
    raise SystemExit("nats-server not ready")


def start_relay(procs, name, urls, extra=()):
    port = free_port()
    args = [RELAY, "--bind", "127.0.0.1", "--port", str(port), "--threads", "1",
            "--max-connections-per-ip", "0", "--connect-rate", "0", "--connect-rate-per-ip", "0",
            "--node-name", name]
    for u in urls:
        args += ["--nats", u]
    extra = list(extra) + os.environ.get("BENCH_RELAY_EXTRA", "").split()
    p = procs.start(args + extra, f"{name}.log")
    deadline = time.time() + 30
    while time.time() < deadline:
        if http(port, "/healthz") .startswith("ok"):
            return p, port
        if p.poll() is not None:
            raise SystemExit(f"relay {name} exited: see {procs.dir}/{name}.log")
        time.sleep(0.05)
    raise SystemExit(f"relay {name} not ready")


def metrics(port):
    out = {}
    for line in http(port, "/metrics").splitlines():
        if line.startswith(("wsrelay_cluster_", "wsrelay_messages_", "wsrelay_frames_",
                            "wsrelay_queue_drops", "wsrelay_command_errors")):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def swarm(args, server_pid):
    cmd = ["taskset", "-c", "1", SWARM, "fanout"] + args + ["--json", "--server-pid", str(server_pid)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode not in (0, 1):
        raise SystemExit(f"swarm failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout), " ".join(cmd[3:])


def summary(rep):
    keys = ("sent", "sent_per_s", "expected", "received", "delivered_per_s", "loss",
            "gap_messages", "reordered", "gap_notices", "errors", "latency_us", "send_lag_us",
            "server_cpu_s", "server_run_queue_wait_s", "swarm_cpu_s", "swarm_run_queue_wait_s",
            "publish_skipped", "connections", "close_codes")
    return {k: rep.get(k) for k in keys}


def delta(before, after):
    return {k: round(v - before.get(k, 0.0), 6) for k, v in after.items()
            if not k.split("{")[0].endswith(("_max_ms", "connected", "ready", "live_channels",
                                               "queue_depth"))
            and "quantile" not in k and v != before.get(k, 0.0)}


def latency_run(cluster, rounds_note, subscribers):
    procs = Procs()
    try:
        pids = {}
        if cluster:
            nats = start_nats(procs, 1)
            pids["nats"] = nats[0][0].pid
            a, pa = start_relay(procs, "a", [nats[0][1]], ["--history-size", "1000"])
            b, pb = start_relay(procs, "b", [nats[0][1]], ["--history-size", "1000"])
            pids["a"], pids["b"] = a.pid, b.pid
            urls = ["--url", f"ws://127.0.0.1:{pa}/", "--url", f"ws://127.0.0.1:{pb}/",
                    "--publish-url", f"ws://127.0.0.1:{pa}/"]
        else:
            a, pa = start_relay(procs, "single", [], ["--history-size", "1000"])
            pids["a"] = a.pid
            urls = ["--url", f"ws://127.0.0.1:{pa}/"]
        cpu0 = {k: cpu_s(v) for k, v in pids.items()}
        m0 = metrics(pa)
        load = loadavg()
        rep, cmd = swarm(urls + ["--publishers", "1", "--subscribers", str(subscribers),
                                 "--channels", "1", "--size", "100", "--rate", "1000", "--warmup", "2s",
                                 "--duration", "10s", "--drain", "5s"], pids["a"])
        cpu = {k: round(cpu_s(v) - cpu0[k], 2) for k, v in pids.items()}
        return {"run": ("cluster" if cluster else "single") + f", {subscribers} subscribers",
                "loadavg": load, "cmd": cmd,
                **summary(rep), "cpu_s_over_run": cpu, "relay_a_metrics": delta(m0, metrics(pa)),
                "note": rounds_note}
    finally:
        procs.stop()


def coalesce_run(subscribers, rate):
    procs = Procs()
    try:
        nats = start_nats(procs, 1)
        a, pa = start_relay(procs, "a", [nats[0][1]], ["--history-size", "1000"])
        b, pb = start_relay(procs, "b", [nats[0][1]], ["--history-size", "1000"])
        pids = {"nats": nats[0][0].pid, "a": a.pid, "b": b.pid}
        cpu0 = {k: cpu_s(v) for k, v in pids.items()}
        m0, mb0 = metrics(pa), metrics(pb)
        load = loadavg()
        rep, cmd = swarm(["--url", f"ws://127.0.0.1:{pa}/", "--url", f"ws://127.0.0.1:{pb}/",
                          "--publish-url", f"ws://127.0.0.1:{pa}/", "--publishers", "1",
                          "--subscribers", str(subscribers), "--channels", "1", "--size", "100",
                          "--rate", str(rate), "--warmup", "2s", "--duration", "10s",
                          "--drain", "10s"], pids["a"])
        cpu = {k: round(cpu_s(v) - cpu0[k], 2) for k, v in pids.items()}
        m1 = metrics(pa)
        varz = json.loads(http(nats[0][2], "/varz") or "{}")
        return {"run": f"coalesce {rate}/s, {subscribers} subscribers", "loadavg": load,
                "cmd": cmd, **summary(rep), "cpu_s_over_run": cpu,
                "relay_a_metrics": delta(m0, m1), "relay_b_metrics": delta(mb0, metrics(pb)),
                "nats_slow_consumers": varz.get("slow_consumers"),
                "ack_quantiles_s": {k: v for k, v in m1.items() if "publish_ack_seconds{" in k}}
    finally:
        procs.stop()


def stream_leader_of_busiest(nodes):
    """(stream, leader name) of the stream holding the most messages."""
    best = None
    for _, _, mon, _ in nodes:
        j = http(mon, "/jsz?streams=true")
        if not j:
            continue
        for acc in json.loads(j).get("account_details", []):
            for s in acc.get("stream_detail", []):
                msgs = s.get("state", {}).get("messages", 0)
                leader = s.get("cluster", {}).get("leader")
                if leader and (best is None or msgs > best[0]):
                    best = (msgs, s["name"], leader)
    return best


def leaderkill_run(rate, subscribers):
    procs = Procs()
    try:
        nodes = start_nats(procs, 3)
        urls = [u for _, u, _, _ in nodes]
        r3 = ["--nats-replicas", "3", "--history-size", "100000"]
        a, pa = start_relay(procs, "a", urls, r3)
        b, pb = start_relay(procs, "b", urls, r3)
        killed = {}

        def killer():
            time.sleep(6.0)  # setup + 2 s warm-up + about 3 s of the window
            msgs, stream, leader = stream_leader_of_busiest(nodes)
            for p, _, _, name in nodes:
                if name == leader:
                    p.kill()
                    killed.update(stream=stream, leader=leader, at=time.time(), msgs=msgs)

        t = threading.Thread(target=killer)
        m0 = metrics(pa)
        load = loadavg()
        t.start()
        rep, cmd = swarm(["--url", f"ws://127.0.0.1:{pa}/", "--url", f"ws://127.0.0.1:{pb}/",
                          "--publish-url", f"ws://127.0.0.1:{pa}/", "--publishers", "1",
                          "--subscribers", str(subscribers), "--channels", "1", "--size", "100",
                          "--rate", str(rate), "--warmup", "2s", "--duration", "15s",
                          "--drain", "15s"], a.pid)
        t.join()
        return {"run": f"leader kill, {rate}/s, {subscribers} subscribers", "loadavg": load,
                "cmd": cmd, "killed": killed, **summary(rep),
                "relay_a_metrics": delta(m0, metrics(pa)),
                "relay_b_gaps_announced": metrics(pb).get("wsrelay_cluster_gaps_announced_total"),
                "stall_max_ms_a": metrics(pa).get("wsrelay_cluster_publish_stall_max_ms"),
                "series": rep.get("series")}
    finally:
        procs.stop()


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "latency"
    if what == "latency":
        subs = int(os.environ.get("BENCH_SUBSCRIBERS", "1000"))
        for r in range(int(os.environ.get("BENCH_ROUNDS", "2"))):
            for cluster in (False, True):
                print(json.dumps(latency_run(cluster, f"round {r + 1}", subs)), flush=True)
    elif what == "coalesce":
        rate = int(os.environ.get("BENCH_RATE", "50000"))
        subs = int(os.environ.get("BENCH_SUBSCRIBERS", "10"))
        print(json.dumps(coalesce_run(subs, rate)), flush=True)
    elif what == "leaderkill":
        rate = int(os.environ.get("BENCH_RATE", "500"))
        subs = int(os.environ.get("BENCH_SUBSCRIBERS", "100"))
        print(json.dumps(leaderkill_run(rate, subs)), flush=True)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
