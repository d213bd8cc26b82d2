#!/usr/bin/env bash
# wss vs ws fanout, side by side on one machine: the release relay with and without TLS (and,
# optionally, another relay binary in plain ws, e.g. the build before TLS), alternated, each
# run a fresh server pinned to CPU 0 and the swarm pinned to CPU 1 (as compare.sh does).
#
#   loadtest/tls_bench.sh [ROUNDS]
#
# Environment: MODES (default "ws wss"; "base" adds BASE_BIN in plain ws; "tt-ws" and
# "tt-wss" add the tokio-tungstenite peer of ../shared/peers with TLS_CERT/TLS_KEY support,
# loadtest/peers/tokio-tungstenite-tls.patch, built at TT_BIN:
#   cp -r ../shared/peers/tokio-tungstenite /tmp/tt && chmod -R u+w /tmp/tt &&
#   (cd /tmp/tt && patch -p1 < "$OLDPWD/loadtest/peers/tokio-tungstenite-tls.patch" &&
#    cargo build --release)   # TT_BIN=/tmp/tt/target/release/peer-tokio-tungstenite
# ), BASE_BIN, TT_BIN,
# WSRELAY_BIN (default target/release/wsrelay), SWARM_BIN (default
# target/release/wsrelay-swarm), SCENARIO (swarm arguments, default fanout 1→1,000, 100-byte
# content, max rate, 5 s after 1 s of warm-up).
# The certificate is made here with openssl: a throwaway CA and an ECDSA P-256 leaf for
# localhost/127.0.0.1; the swarm trusts the CA (--tls-ca), so the handshakes are verified.
# Prints each run's throughput and CPU lines. Needs: openssl, taskset, the release builds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=${1:-2}
MODES=${MODES:-"ws wss"}
WSRELAY_BIN=${WSRELAY_BIN:-$ROOT/target/release/wsrelay}
SWARM_BIN=${SWARM_BIN:-$ROOT/target/release/wsrelay-swarm}
SCENARIO=${SCENARIO:-"fanout --publishers 1 --subscribers 1000 --channels 1 --size 100 --rate max --duration 5s --warmup 1s"}
WORK=$(mktemp -d /tmp/tls-bench.XXXXXX)

make_certificates() {
  cd "$WORK"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout ca.key -out ca.crt -days 2 -subj /CN=tls-bench-ca 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout leaf.key -out leaf.csr -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -out leaf.crt -extfile leaf.ext 2>/dev/null
  cd - >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

run_one() {
  local mode=$1 round=$2 port bin tls_args=() scheme=ws swarm_tls=()
  port=$(free_port)
  bin=$WSRELAY_BIN
  case "$mode" in
    wss) tls_args=(--tls-cert "$WORK/leaf.crt" --tls-key "$WORK/leaf.key"); scheme=wss
         swarm_tls=(--tls-ca "$WORK/ca.crt") ;;
    base) bin=$BASE_BIN ;;
  esac
  case "$mode" in
    tt-ws) bin=$TT_BIN
      taskset -c 0 "$bin" "$port" >"$WORK/server.$mode.$round.log" 2>&1 & ;;
    tt-wss) bin=$TT_BIN; scheme=wss; swarm_tls=(--tls-ca "$WORK/ca.crt")
      TLS_CERT="$WORK/leaf.crt" TLS_KEY="$WORK/leaf.key" taskset -c 0 "$bin" "$port" \
        >"$WORK/server.$mode.$round.log" 2>&1 & ;;
    *) taskset -c 0 "$bin" --bind 127.0.0.1 --port "$port" --threads 1 --max-connections-per-ip 0 \
      --connect-rate 0 --connect-rate-per-ip 0 "${tls_args[@]}" >"$WORK/server.$mode.$round.log" 2>&1 & ;;
  esac
  local pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
  echo "== round $round: $mode ($bin, pid $pid)"
  # shellcheck disable=SC2086
  taskset -c 1 "$SWARM_BIN" $SCENARIO --url "$scheme://127.0.0.1:$port/" "${swarm_tls[@]}" \
    --server-pid "$pid" 2>/dev/null | grep -E 'connections|throughput|deliveries|cpu ' || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

make_certificates
echo "tls_bench: $(date -u +%FT%TZ), $(nproc) CPUs, kernel $(uname -r); scenario: $SCENARIO"
for round in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    run_one "$mode" "$round"
  done
done
rm -rf "$WORK"
