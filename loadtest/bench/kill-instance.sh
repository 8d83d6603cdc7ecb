#!/usr/bin/env bash
# One of three instances killed under a fixed load: how many requests fail,
# and how long until the gateway stops sending it anything?
#
#   - three instances: wasp processes answering 12 bytes from a mock
#     (`[services.hello.mock]`), one worker each;
#   - the gateway under test: service `shop` over the three, outlier
#     ejection at its defaults (5 failures in a row, 10 s, 50 %), PICK
#     balancing (round_robin or p2c);
#   - wasp-loadtest at RATE req/s (fixed rate, latency from when each
#     request was due) over CONNS keep-alive connections for DURATION s;
#     at KILL_AT s the second instance gets SIGKILL.
#
# Prints the load run (requests, errors, 5xx, p50/p99), the kill time, when
# the gateway logged the instance ejected (or that it never had to: a killed
# instance refuses connections, which the gateway fails over from at once),
# and the gateway's wasp_outlier_ejections_total and retries.
#
# Usage: loadtest/bench/kill-instance.sh [BINARY]
#   env: RATE=20000 CONNS=64 DURATION=10 KILL_AT=3 PICK=round_robin WORKERS=1
#        LOADTEST=target/release/wasp-loadtest KEEP=1 (keep the temp dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
bin=${1:-target/release/wasp}
lt=${LOADTEST:-target/release/wasp-loadtest}
rate=${RATE:-20000}; conns=${CONNS:-64}; dur=${DURATION:-10}; kill_at=${KILL_AT:-3}
pick=${PICK:-round_robin}; workers=${WORKERS:-1}
tmp=$(mktemp -d /tmp/wasp-kill.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 100); do grep -q "wasp ready" "$1" && return 0; sleep 0.05; done; echo "not ready: $1" >&2; cat "$1" >&2; exit 1; }

inst=()
for i in 1 2 3; do
  p=$(free_port); a=$(free_port)
  cat > "$tmp/inst$i.toml" <<TOML
[server]
listen = "127.0.0.1:$p"
admin_listen = "127.0.0.1:$a"
workers = 1
[log]
access = false
[services.hello.mock]
routes = [{ path = "/*", body = "hello world\n" }]
TOML
  "$bin" serve --config "$tmp/inst$i.toml" > "$tmp/inst$i.log" 2>&1 &
  pids+=($!); inst+=("127.0.0.1:$p")
  ready "$tmp/inst$i.log"
done
victim=${pids[1]}

gp=$(free_port); ga=$(free_port)
cat > "$tmp/gw.toml" <<TOML
[server]
listen = "127.0.0.1:$gp"
admin_listen = "127.0.0.1:$ga"
workers = $workers
[log]
access = false
[services.shop]
instances = ["${inst[0]}", "${inst[1]}", "${inst[2]}"]
balance = "$pick"
TOML
"$bin" serve --config "$tmp/gw.toml" > "$tmp/gw.log" 2>&1 &
pids+=($!)
ready "$tmp/gw.log"

"$lt" "http://127.0.0.1:$gp/shop/hello/x" -c "$conns" -R "$rate" -d "${dur}s" --quiet --json "$tmp/run.json" > "$tmp/run.txt" 2>&1 &
ltpid=$!
sleep "$kill_at"
killed=$(date +%s.%N)
kill -9 "$victim"
wait "$ltpid" || true
cat "$tmp/run.txt"
ejected=$(grep -m1 "instance ejected" "$tmp/gw.log" | grep -oE '^[0-9T:.-]+Z' || true)
echo "killed instance 2 at +${kill_at}s"
if [ -n "$ejected" ]; then
  python3 - "$killed" "$ejected" <<'PY'
import sys, datetime
k = float(sys.argv[1]); e = datetime.datetime.strptime(sys.argv[2][:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()
print(f"ejected {1000*(e-k):.0f} ms after the kill")
PY
else
  echo "never ejected (connects were refused and failed over at once; see retries)"
fi
curl -s "http://127.0.0.1:$ga/metrics" | grep -E '^wasp_(outlier_ejections_total|upstream_retries_total|upstream_errors)' || true
