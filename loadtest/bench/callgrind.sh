#!/usr/bin/env bash
# User-space instructions per proxied request (callgrind "Ir"), one line per
# gateway binary, so a before/after pair is compared in one run.
#
# Why: on this shared 2-core box wall-clock and CPU-time figures move ±25 %
# between runs, while the instruction count of the gateway's own code is
# nearly deterministic. It is the figure to check that a change to the
# request path (parsing, routing, header rewriting, pooling, timers) did not
# make each request more expensive. It does not see the kernel (loopback TCP,
# syscalls: most of a proxy's CPU, see README "Performance"), so it
# complements the CPU-per-request figures there rather than replacing them.
#
# How: an origin (nginx if installed, e.g. `apt-get install -y nginx-light`,
# else soak.py's python origin; never under valgrind) answers 12 bytes; each
# binary runs `serve --workers 1` under `valgrind --tool=callgrind`; after a
# warm-up (2000 requests: pool filled, lazy initialisation done) the counters
# are zeroed, N1 keep-alive GETs go through it (wasp-loadtest -n N1 -c 8),
# the total Ir of all threads is read with callgrind_control, zeroed again,
# and the same for N2. Ir/request = (Ir(N2) - Ir(N1)) / (N2 - N1): what each
# run costs regardless of its length (connection set-up, idle ticks) cancels.
#
# The gateway runs on the epoll driver (DRIVER=epoll): valgrind 3.19 does not
# treat io_uring_enter as a blocking syscall, so a worker parked in it holds
# valgrind's big lock and every other thread (start-up, admin) hangs. The
# gateway's own code is the same on both drivers; the driver's share differs.
#
# Usage: loadtest/bench/callgrind.sh BINARY [BINARY2 ...]
#   env: N1=20000 N2=40000 CONNS=8 DRIVER=epoll LOADTEST=target/release/wasp-loadtest
#        KEEP=1 (keep the temp dir: configs, logs, callgrind files)
#        SERVICE_EXTRA=FILE: TOML appended after [services.origin], e.g.
#          loadtest/bench/five-filters.toml (the cost of a service's filters)
# Takes a few minutes per binary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
[ $# -ge 1 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
n1=${N1:-20000}; n2=${N2:-40000}; conns=${CONNS:-8}; driver=${DRIVER:-epoll}
lt=${LOADTEST:-target/release/wasp-loadtest}
py=python3
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
  || { echo "callgrind.sh: needs valgrind (apt-get install -y valgrind)" >&2; exit 2; }
[ "$n2" -gt "$n1" ] || { echo "callgrind.sh: N2 must be larger than N1" >&2; exit 2; }
for b in "$@"; do [ -x "$b" ] || { echo "callgrind.sh: $b is not an executable" >&2; exit 2; }; done
if [ ! -x "$lt" ]; then cargo build --release -p wasp-loadtest -q; lt=target/release/wasp-loadtest; fi

cpu0=(); cpu1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then cpu0=(taskset -c 0); cpu1=(taskset -c 1); fi

work=$(mktemp -d /tmp/wasp-callgrind.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

read -r origin_port < <($py "$here/soak.py" ports 1)
if command -v nginx >/dev/null; then
  origin=nginx
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin_port; location / { return 200 'hello world\n'; } } }
EOF
  "${cpu0[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
else
  origin="python (soak.py origin; nginx not installed)"
  "${cpu0[@]}" $py "$here/soak.py" origin --port "$origin_port" 2> "$work/origin.log" &
fi
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$origin_port") 2>/dev/null && break; sleep 0.1; done

# Sum of the Ir counters of all threads since the last zeroing.
ir() { callgrind_control -e Ir "$1" 2>/dev/null | awk '$1 == "Th" { gsub(",", "", $3); s += $3 } END { printf "%d\n", s }'; }
# N requests through the gateway; fails unless every answer was a 2xx.
load() {
  "${cpu0[@]}" "$lt" "http://127.0.0.1:$gw_port/origin/hello" -n "$1" -c "$conns" --quiet --json "$work/lt.json" > /dev/null
  $py -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s["errors"] == 0 and s["status_2xx"] == s["requests"] == int(sys.argv[2]) else 1)' "$work/lt.json" "$1" \
    || { echo "callgrind.sh: not every request answered 2xx:" >&2; cat "$work/lt.json" >&2; return 1; }
}

echo "callgrind: user-space instructions per proxied GET (keep-alive, $conns connections, 1 worker, $driver driver, origin $origin); Ir/request = (Ir[$n2] - Ir[$n1]) / ($n2 - $n1)"
i=0
for bin in "$@"; do
  i=$((i + 1))
  read -r gw_port admin_port < <($py "$here/soak.py" ports 2)
  cfg=$work/wasp-$i.toml
  cat > "$cfg" <<EOF
[server]
listen = "127.0.0.1:$gw_port"
admin_listen = "127.0.0.1:$admin_port"
workers = 1
io_driver = "$driver"

[log]
access = false
level = "warn"

[services.origin]
instances = ["127.0.0.1:$origin_port"]
EOF
  if [ -n "${SERVICE_EXTRA:-}" ]; then cat "$SERVICE_EXTRA" >> "$cfg"; fi
  "${cpu1[@]}" valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$work/callgrind.$i.%p" \
    "$bin" serve --config "$cfg" --workers 1 > "$work/gateway-$i.log" 2>&1 &
  vg=$!; pids+=($vg)
  $py "$here/soak.py" wait --port "$admin_port" --timeout 300
  load 2000                                   # warm-up
  callgrind_control -z "$vg" > /dev/null 2>&1
  load "$n1"; a=$(ir "$vg")
  callgrind_control -z "$vg" > /dev/null 2>&1
  load "$n2"; b=$(ir "$vg")
  kill "$vg"; wait "$vg" 2>/dev/null || true
  $py - "$bin" "$a" "$b" "$n1" "$n2" <<'EOF'
import sys
b, ia, ib, n1, n2 = sys.argv[1], *map(int, sys.argv[2:])
print(f"{b:<48} {(ib - ia) / (n2 - n1):>10,.0f} Ir/request   ({n1}: {ia / 1e6:,.1f} M Ir = {ia / n1:,.0f}/req, {n2}: {ib / 1e6:,.1f} M Ir = {ib / n2:,.0f}/req)")
EOF
done
