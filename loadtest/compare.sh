#!/usr/bin/env bash
# Runs the same swarm scenarios against wsrelay and the reference peers, side by side, on one
# machine, and prints a markdown table with ratios versus wsrelay.
#
#   loadtest/compare.sh PEERS_DIR [OUT.md]
#
# PEERS_DIR holds node-ws/ and tokio-tungstenite/ (see its README.md). It is only read: the
# peers are copied to a scratch directory under /tmp and built there; nothing from PEERS_DIR
# enters this repository.
#
# Method: each server is pinned to CPU 0 and the swarm to CPU 1 (taskset); every run gets a
# fresh server process, started and stopped by this script by its PID; servers alternate
# (wsrelay, tokio-tungstenite, node-ws, then again) for ROUNDS rounds so that drift of the
# machine hits all of them alike. Every run is bounded (warm-up + duration + drain) and all
# traffic goes to 127.0.0.1.
#
# Environment: PEERS_COPY (/tmp/wsrelay-compare-peers, the peers' build copy), ROUNDS (2), DURATION (5s), WARMUP (1s), CONNS (15000), SERVERS
# ("wsrelay tokio-tungstenite node-ws"), SCENARIOS ("fanout-max fanout-2000 rooms conns"),
# WSRELAY_BIN (the relay binary to measure, default this tree's target/release/wsrelay: point
# it at another build to compare two commits with the same swarm).
# Needs: cargo, node + npm, taskset, python3.
set -euo pipefail

if [[ $# -lt 1 || ! -d "$1" ]]; then
  echo "usage: $0 PEERS_DIR [OUT.md]" >&2
  exit 2
fi
PEERS_DIR=$(cd "$1" && pwd)
OUT=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-15000}
SERVERS=${SERVERS:-"wsrelay tokio-tungstenite node-ws"}
WSRELAY_BIN=${WSRELAY_BIN:-$ROOT/target/release/wsrelay}
SCENARIOS=${SCENARIOS:-"fanout-max fanout-2000 rooms conns"}
SERVER_CPU=0
SWARM_CPU=1

# The peers are built in a copy that is kept between runs (incremental builds).
PEERS_COPY=${PEERS_COPY:-/tmp/wsrelay-compare-peers}
WORK=$(mktemp -d /tmp/wsrelay-compare.XXXXXX)
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
SERVER_PID=""

cleanup() {
  if [[ -n "$SERVER_PID" ]]; then stop_server "$SERVER_PID"; fi
}
trap cleanup EXIT

log() { echo "compare: $*" >&2; }

build_all() {
  log "building wsrelay and the swarm (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin wsrelay -p wsrelay && cargo build --release --quiet -p loadtest)
  log "copying peers to $PEERS_COPY and building them there"
  mkdir -p "$PEERS_COPY"
  cp -r "$PEERS_DIR/." "$PEERS_COPY/"
  chmod -R u+w "$PEERS_COPY"
  if [[ " $SERVERS " == *" node-ws "* ]]; then
    (cd "$PEERS_COPY/node-ws" && npm ci --silent --no-audit --no-fund >/dev/null)
  fi
  if [[ " $SERVERS " == *" tokio-tungstenite "* ]]; then
    (cd "$PEERS_COPY/tokio-tungstenite" && cargo build --release --quiet)
  fi
}

# Prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  local port
  for port in $(seq 39200 39400); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  log "no free port in 39200-39400"
  exit 1
}

# start_server NAME PORT: starts the server pinned to SERVER_CPU, sets SERVER_PID, waits until
# it accepts connections (at most 10 s).
start_server() {
  local name=$1 port=$2
  case "$name" in
    wsrelay)
      # Every connection comes from 127.0.0.1: lift the per-source and connection-rate limits
      # (the peers have none), as an operator would for a trusted load generator.
      taskset -c "$SERVER_CPU" "$WSRELAY_BIN" --bind 127.0.0.1 --port "$port" \
        --threads 1 --max-connections-per-ip 0 --connect-rate 0 --connect-rate-per-ip 0 \
        >"$WORK/$name.log" 2>&1 &
      ;;
    tokio-tungstenite)
      taskset -c "$SERVER_CPU" "$PEERS_COPY/tokio-tungstenite/target/release/peer-tokio-tungstenite" \
        "$port" >"$WORK/$name.log" 2>&1 &
      ;;
    node-ws)
      (cd "$PEERS_COPY/node-ws" && exec taskset -c "$SERVER_CPU" node server.js "$port") \
        >"$WORK/$name.log" 2>&1 &
      ;;
    *) log "unknown server $name"; exit 2 ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.05
  done
  log "$name did not start on port $port (see $WORK/$name.log)"
  exit 1
}

# stop_server PID: SIGTERM, then SIGKILL after 5 s; only the PID this script started.
stop_server() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  SERVER_PID=""
}

# The swarm flags of each scenario (the issue's performance bar).
scenario_args() {
  case "$1" in
    fanout-max) echo "fanout --publishers 1 --subscribers 1000 --channels 1 --size 100 --rate max --duration $DURATION --warmup $WARMUP" ;;
    fanout-2000) echo "fanout --publishers 1 --subscribers 1000 --channels 1 --size 100 --rate 2000 --duration $DURATION --warmup $WARMUP --drain 5s" ;;
    rooms) echo "rooms --rooms 250 --members 8 --hz 20 --size 100 --duration $DURATION --warmup $WARMUP" ;;
    conns) echo "conns --connections $CONNS --hold 3s --ramp 5000" ;;
    *) log "unknown scenario $1"; exit 2 ;;
  esac
}

run_one() {
  local scenario=$1 server=$2 round=$3 port
  port=$(free_port)
  start_server "$server" "$port"
  local out="$RESULTS/$scenario.$server.$round.json"
  log "round $round: $scenario against $server (pid $SERVER_PID, port $port)"
  # shellcheck disable=SC2046
  if ! taskset -c "$SWARM_CPU" "$ROOT/target/release/wsrelay-swarm" $(scenario_args "$scenario") \
      --url "ws://127.0.0.1:$port/" --server-pid "$SERVER_PID" --json >"$out" 2>"$out.err"; then
    log "swarm failed: $(tail -1 "$out.err")"
  fi
  stop_server "$SERVER_PID"
}

main() {
  build_all
  local round scenario server
  for round in $(seq 1 "$ROUNDS"); do
    for scenario in $SCENARIOS; do
      for server in $SERVERS; do
        run_one "$scenario" "$server" "$round"
      done
    done
  done
  python3 "$ROOT/loadtest/compare_table.py" "$RESULTS" "$SERVERS" "$SCENARIOS" | tee "${OUT:-/dev/null}"
  log "raw results in $RESULTS"
}

main
