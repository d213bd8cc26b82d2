#!/usr/bin/env bash
# Starts a local wsrelay cluster for trying scale-out: 1 or 3 nats-servers with JetStream
# (memory storage, fresh store directory) and 2 relays joined through them, all on loopback.
# Everything it starts is stopped by PID on Ctrl-C or when --for elapses.
#
#   scripts/local-cluster.sh                 # 1 nats-server, relays on :8080 and :8081
#   scripts/local-cluster.sh --nats-nodes 3  # a 3-node JetStream cluster, streams with R3
#   scripts/local-cluster.sh --for 60        # stop by itself after 60 s
#
# Then, for example:
#   target/release/wsrelay-swarm fanout --url ws://127.0.0.1:8080/ --url ws://127.0.0.1:8081/ \
#       --subscribers 1000 --rate 1000 --duration 30s
#
# Environment: WSRELAY_BIN (default target/release/wsrelay, built if missing), NATS_SERVER_BIN
# (default /usr/sbin/nats-server, Debian's package `nats-server`), RELAY_PORTS (default
# "8080 8081"), NATS_BASE_PORT (default 14220: client 14221.., routes 16221.., monitoring 18221..).
set -euo pipefail

nodes=1
run_for=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nats-nodes) nodes="$2"; shift 2 ;;
    --for) run_for="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$nodes" in 1|3) ;; *) echo "--nats-nodes is 1 or 3" >&2; exit 2 ;; esac

cd "$(dirname "$0")/.."
nats_bin="${NATS_SERVER_BIN:-/usr/sbin/nats-server}"
relay_bin="${WSRELAY_BIN:-target/release/wsrelay}"
relay_ports=(${RELAY_PORTS:-8080 8081})
base="${NATS_BASE_PORT:-14220}"
if [ ! -x "$nats_bin" ]; then
  echo "nats-server not found at $nats_bin (apt-get install -y nats-server)" >&2
  exit 1
fi
if [ ! -x "$relay_bin" ]; then
  cargo build --release -p wsrelay
fi

dir="$(mktemp -d -t wsrelay-cluster.XXXXXX)"
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 0' INT TERM

routes=""
for i in $(seq 1 "$nodes"); do
  routes="$routes nats-route://127.0.0.1:$((base + 2000 + i)),"
done
urls=""
nats_args=()
for i in $(seq 1 "$nodes"); do
  client=$((base + i)); http=$((base + 4000 + i)); route=$((base + 2000 + i))
  conf="$dir/n$i.conf"
  {
    echo "server_name: n$i"
    echo "listen: 127.0.0.1:$client"
    echo "http: 127.0.0.1:$http"
    echo "jetstream { store_dir: \"$dir/n$i\", max_memory_store: 256MB, max_file_store: 1GB }"
    if [ "$nodes" -eq 3 ]; then
      echo "cluster { name: wsr, listen: 127.0.0.1:$route, routes: [ ${routes%,} ] }"
    fi
  } > "$conf"
  "$nats_bin" -c "$conf" > "$dir/n$i.log" 2>&1 &
  pids+=($!)
  urls="$urls${urls:+,}nats://127.0.0.1:$client"
  nats_args+=(--nats "nats://127.0.0.1:$client")
done

# Readiness: the JetStream meta group has a leader (and 3 peers in a cluster); a bare
# /healthz answers too early (design §10, trap 5).
ready=0
for _ in $(seq 1 300); do
  jsz="$(curl -fsS "http://127.0.0.1:$((base + 4001))/jsz" 2>/dev/null || true)"
  if [ "$nodes" -eq 1 ] && [ -n "$jsz" ]; then ready=1; break; fi
  if echo "$jsz" | python3 -c 'import json,sys; m=json.load(sys.stdin).get("meta_cluster",{}); sys.exit(0 if m.get("leader") and m.get("cluster_size")==3 else 1)' 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.1
done
[ "$ready" -eq 1 ] || { echo "nats-server not ready; logs in $dir" >&2; tail -5 "$dir"/n*.log >&2; exit 1; }

replicas=1
[ "$nodes" -eq 3 ] && replicas=3
n=0
for port in "${relay_ports[@]}"; do
  n=$((n + 1))
  "$relay_bin" serve --bind 127.0.0.1 --port "$port" "${nats_args[@]}" --nats-replicas "$replicas" \
    --node-name "relay-$n" > "$dir/relay-$n.log" 2>&1 &
  pids+=($!)
done
sleep 1
for i in $(seq 1 "$n"); do
  if ! kill -0 "${pids[$((nodes + i - 1))]}" 2>/dev/null; then
    echo "relay-$i exited:" >&2; tail -20 "$dir/relay-$i.log" >&2; exit 1
  fi
done

echo "nats:   $urls ($nodes node(s), JetStream, streams R$replicas)"
for port in "${relay_ports[@]}"; do echo "relay:  ws://127.0.0.1:$port/   (status page http://127.0.0.1:$port/status)"; done
echo "logs:   $dir"
if [ "$run_for" -gt 0 ]; then
  echo "stopping in ${run_for}s"
  sleep "$run_for"
else
  echo "Ctrl-C stops everything"
  wait "${pids[0]}"
fi
