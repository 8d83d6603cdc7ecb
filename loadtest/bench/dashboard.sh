#!/usr/bin/env bash
# What an open dashboard costs. Two figures:
#  1. The gateway's CPU per request with and without a dashboard polling
#     GET /stats every second (as the UI does, with ?since=), side by side in
#     one ../shared/bench/http_peers.py run (one worker on CPU 1; nginx and
#     haproxy for scale). The poller runs outside the measured processes.
#  2. The sampler's own cost: CPU time of an idle gateway with 1,000
#     services over 60 s (the admin thread samples every service each
#     second), against the same gateway's CPU with 1 service.
# Usage: [WASP_BIN=path] loadtest/bench/dashboard.sh [rounds] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}; secs=${2:-8}
# WASP_BIN: a binary built elsewhere (else this tree's release build).
if [ -z "${WASP_BIN:-}" ]; then cargo build --release -q --bin wasp; fi
bin=${WASP_BIN:-$PWD/target/release/wasp}
dir=$(mktemp -d)
for kind in quiet dash; do
  if [ $kind = quiet ]; then p=18095; a=19995; else p=18096; a=19996; fi
  cat > "$dir/$kind.toml" <<TOML
[server]
listen = "127.0.0.1:$p"
admin_listen = "127.0.0.1:$a"
workers = 1
[log]
access = false
[services.origin]
instances = ["127.0.0.1:18080"]
TOML
done
# The dashboard: one /stats a second on wasp-dash's admin port, for the
# whole run, on CPU 0 with the load generator.
(
  since=0
  while sleep 1; do
    out=$(taskset -c 0 curl -s "http://127.0.0.1:19996/stats?since=$since" || true)
    since=$(printf '%s' "$out" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["seq"])
except Exception: print(0)')
  done
) &
poller=$!
trap 'kill $poller 2>/dev/null || true' EXIT
python3 ../shared/bench/http_peers.py --rounds "$rounds" --dur "$secs" --only nginx,haproxy,wasp-quiet,wasp-dash \
  --extra "wasp-quiet|18095|/origin/|$bin serve --config $dir/quiet.toml" \
  --extra "wasp-dash|18096|/origin/|$bin serve --config $dir/dash.toml"
kill $poller 2>/dev/null || true

echo
echo "== sampler cost: idle gateway, 60 s, 1 vs 1000 services"
for n in 1 1000; do
  {
    printf '[server]\nlisten = "127.0.0.1:18094"\nadmin_listen = "127.0.0.1:19994"\nworkers = 2\n[log]\naccess = false\n'
    for i in $(seq "$n"); do printf '[services.s%d]\ninstances = ["127.0.0.1:18080"]\n' "$i"; done
  } > "$dir/idle-$n.toml"
  "$bin" serve --config "$dir/idle-$n.toml" >/dev/null 2>&1 &
  pid=$!
  sleep 5
  t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  sleep 60
  t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  curl -s "http://127.0.0.1:19994/stats" | wc -c | xargs printf "  /stats answer: %s bytes\n"
  kill $pid; wait $pid 2>/dev/null || true
  tck=$(getconf CLK_TCK)
  python3 -c "print(f'  {$n} services: {($t1-$t0)/$tck*1000/60:.2f} ms CPU per second idle')"
done
