#!/usr/bin/env bash
# RSS per idle WebSocket connection: wasp (one worker, CPU 1) before and while
# 10,000 connections are held open by the load generator (CPU 0).
# (../shared/bench/ws_peers.py measures the same figure side by side with pushpin.)
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-10000}
cargo build --release --workspace -q
ulimit -n 20000
cfg=$(mktemp); sed "s#BACKEND#http://127.0.0.1:1/#" loadtest/bench/bench-ws.toml > "$cfg"
taskset -c 1 target/release/wasp serve --config "$cfg" > /dev/null 2>&1 &
gw=$!; trap 'kill $gw 2>/dev/null; rm -f "$cfg"' EXIT
sleep 0.5
before=$(awk '/VmRSS/{print $2}' /proc/$gw/status)
taskset -c 0 target/release/wasp-loadtest ws://127.0.0.1:18095/ws/bench -c "$conns" --hold -d 8s --quiet > /dev/null &
lt=$!
sleep 6
during=$(awk '/VmRSS/{print $2}' /proc/$gw/status)
open=$(curl -s 127.0.0.1:19995/metrics | awk '$1 == "wasp_ws_connections" {print $2}')
echo "RSS ${before} KiB -> ${during} KiB with ${open} connections: $(( (during - before) * 1024 / open )) bytes per connection"
wait $lt
