#!/usr/bin/env bash
# Broadcast delivery rate to 10,000 WebSocket connections on one wasp worker.
# wasp runs alone on CPU 1; the load generator (and its push-API driver) on CPU 0.
# The producer is closed-loop (at most --backlog undelivered messages per
# connection), so the figure is deliveries per second, not queueing speed.
# Usage: loadtest/bench/ws-broadcast.sh [connections] [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-10000}; runs=${2:-3}
cargo build --release --workspace -q
ulimit -n 20000
cfg=$(mktemp); sed "s#BACKEND#http://127.0.0.1:1/#" loadtest/bench/bench-ws.toml > "$cfg"
taskset -c 1 target/release/wasp serve --config "$cfg" > /dev/null 2>&1 &
gw=$!; trap 'kill $gw 2>/dev/null; rm -f "$cfg"' EXIT
sleep 0.5
for _ in $(seq "$runs"); do
  taskset -c 0 target/release/wasp-loadtest ws://127.0.0.1:18095/ws/bench -c "$conns" \
    --broadcast http://127.0.0.1:19995/endpoints/bench/messages \
    --message '{"type":"tick","n":12345}' -d 5s --inflight 8 --quiet | grep -E "received|broadcasts"
done
