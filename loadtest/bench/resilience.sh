#!/usr/bin/env bash
# Resilience under load, four scenarios, each a fresh set of processes:
#
#   slow     three instances, one answering 10x slower (a mock `delay`):
#            its share of RATE req/s under round_robin and under p2c;
#   hung     three instances, health checks every 500 ms (timeout 250 ms,
#            unhealthy 2, healthy 2); at +3 s instance 2 is SIGSTOPped
#            (accepts, never answers), at +7 s SIGCONTed: failures, when
#            the gateway logged it unhealthy and healthy again;
#   budget   two instances answering 503, retry.on = ["503"], attempts 3,
#            budget 20 %: requests the instances saw per client request;
#   flood    one instance answering after 50 ms, circuit max_connections 16
#            and max_pending 16, 256 connections as fast as they go: how
#            many got 503 overloaded and how fast.
#
# Instances are wasp processes answering from a mock (one worker each); the
# gateway has one worker. Usage: loadtest/bench/resilience.sh [BINARY]
#   env: RATE=5000 DURATION=10 LOADTEST=target/release/wasp-loadtest KEEP=1
#        ONLY=slow,hung,budget,flood
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
bin=${1:-target/release/wasp}
lt=${LOADTEST:-target/release/wasp-loadtest}
rate=${RATE:-5000}; dur=${DURATION:-10}; only=${ONLY:-slow,hung,budget,flood}
tmp=$(mktemp -d /tmp/wasp-res.XXXXXX)
pids=()
cleanup() { kill -CONT "${pids[@]}" 2>/dev/null || true; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"; }
trap cleanup EXIT
stop_all() { kill -CONT "${pids[@]}" 2>/dev/null || true; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 100); do grep -q "wasp ready" "$1" && return 0; sleep 0.05; done; echo "not ready: $1" >&2; cat "$1" >&2; exit 1; }

# instance NAME ROUTE_TOML -> prints host:port, admin port in $last_admin
instance() {
  local p a; p=$(free_port); a=$(free_port)
  printf '[server]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\nworkers = 1\n[log]\naccess = false\n[services.hello.mock]\nroutes = [%s]\n' \
    "$p" "$a" "$2" > "$tmp/$1.toml"
  "$bin" serve --config "$tmp/$1.toml" > "$tmp/$1.log" 2>&1 &
  pids+=($!); ready "$tmp/$1.log"; echo "127.0.0.1:$p $a $!" > "$tmp/$1.addr"
}
addr() { cut -d' ' -f1 "$tmp/$1.addr"; }
admin_of() { cut -d' ' -f2 "$tmp/$1.addr"; }
pid_of() { cut -d' ' -f3 "$tmp/$1.addr"; }
served() { curl -s "http://127.0.0.1:$(admin_of "$1")/metrics" | awk '/^wasp_requests_total\{service="hello"/ {s+=$2} END {print s+0}'; }

gateway() {  # EXTRA_TOML
  local p a; p=$(free_port); a=$(free_port)
  printf '[server]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\nworkers = 1\n[log]\naccess = false\n%s\n' "$p" "$a" "$1" > "$tmp/gw.toml"
  "$bin" serve --config "$tmp/gw.toml" > "$tmp/gw.log" 2>&1 &
  pids+=($!); ready "$tmp/gw.log"; gw="127.0.0.1:$p"; gwa=$a
}
summary() { python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency"]
print(f"  {r['requests']} requests ({r['requests_per_s']:.0f}/s), errors {r['errors']}, 2xx {r['status_2xx']}, 5xx {r['status_5xx']}, "
      f"p50 {l['p50_us']/1000:.2f} ms, p99 {l['p99_us']/1000:.2f} ms")
PY
}

if [[ $only == *slow* ]]; then
  echo "== slow: one of three instances 10x slower (2 ms vs 20 ms), $rate req/s for ${dur}s"
  for pick in round_robin p2c; do
    instance f1 '{ path = "/*", body = "fast\n", delay = "2ms" }'
    instance f2 '{ path = "/*", body = "fast\n", delay = "2ms" }'
    instance s1 '{ path = "/*", body = "slow\n", delay = "20ms" }'
    gateway "[services.shop]
instances = [\"$(addr f1)\", \"$(addr f2)\", \"$(addr s1)\"]
balance = \"$pick\""
    "$lt" "http://$gw/shop/hello/x" -c 64 -R "$rate" -d "${dur}s" --quiet --json "$tmp/slow-$pick.json" > /dev/null 2>&1 || true
    a=$(served f1); b=$(served f2); c=$(served s1)
    echo "  $pick: slow instance got $c of $((a+b+c)) ($(python3 -c "print(f'{100*$c/max(1,$a+$b+$c):.1f}')") %)"
    summary "$tmp/slow-$pick.json"
    stop_all
  done
fi

if [[ $only == *hung* ]]; then
  echo "== hung: instance 2 stopped (SIGSTOP) at +3 s, resumed at +7 s; health every 500 ms; $rate req/s for ${dur}s"
  instance h1 '{ path = "/*", body = "ok\n" }'
  instance h2 '{ path = "/*", body = "ok\n" }'
  instance h3 '{ path = "/*", body = "ok\n" }'
  gateway "[services.shop]
instances = [\"$(addr h1)\", \"$(addr h2)\", \"$(addr h3)\"]
timeout = \"1s\"
[services.shop.health]
path = \"/hello/health\"
interval = \"500ms\"
timeout = \"250ms\"
unhealthy = 2
healthy = 2"
  "$lt" "http://$gw/shop/hello/x" -c 64 -R "$rate" -d "${dur}s" --timeout 3s --quiet --json "$tmp/hung.json" > /dev/null 2>&1 &
  ltp=$!
  sleep 3; t0=$(date +%s.%N); kill -STOP "$(pid_of h2)"
  sleep 4; t1=$(date +%s.%N); kill -CONT "$(pid_of h2)"
  wait "$ltp" || true
  summary "$tmp/hung.json"
  python3 - "$t0" "$t1" "$tmp/gw.log" <<'PY'
import sys, datetime, re
t0, t1 = float(sys.argv[1]), float(sys.argv[2])
def ts(line):
    m = re.match(r'(\S+Z)', line)
    return datetime.datetime.strptime(m.group(1)[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp() if m else None
out = back = None
for line in open(sys.argv[3]):
    if "instance unhealthy" in line and out is None: out = ts(line)
    if "healthy again" in line and back is None: back = ts(line)
print(f"  out {1000*(out-t0):.0f} ms after SIGSTOP" if out else "  never taken out")
print(f"  back {1000*(back-t1):.0f} ms after SIGCONT" if back else "  never back")
PY
  stop_all
fi

if [[ $only == *budget* ]]; then
  echo "== budget: both instances answer 503, retry on 503 (attempts 3, budget 20 %), $rate req/s for ${dur}s"
  instance b1 '{ path = "/*", status = 503, body = "sick\n" }'
  instance b2 '{ path = "/*", status = 503, body = "sick\n" }'
  gateway "[services.shop]
instances = [\"$(addr b1)\", \"$(addr b2)\"]
[services.shop.retry]
on = [\"503\"]
attempts = 3
budget_percent = 20
[services.shop.outlier]
consecutive_failures = 0"
  "$lt" "http://$gw/shop/hello/x" -c 64 -R "$rate" -d "${dur}s" --quiet --json "$tmp/budget.json" > /dev/null 2>&1 || true
  summary "$tmp/budget.json"
  total=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$tmp/budget.json")
  seen=$(( $(served b1) + $(served b2) ))
  echo "  the instances saw $seen requests for $total client requests ($(python3 -c "print(f'{100*($seen-$total)/max(1,$total):.1f}')") % retries)"
  curl -s "http://127.0.0.1:$gwa/metrics" | grep -E '^wasp_upstream_retries_total' | sed 's/^/  /'
  stop_all
fi

if [[ $only == *flood* ]]; then
  echo "== flood: one instance answering after 50 ms, circuit 16 + 16, 256 connections as fast as they go for ${dur}s"
  instance c1 '{ path = "/*", body = "ok\n", delay = "50ms" }'
  gateway "[services.shop]
instances = [\"$(addr c1)\"]
[services.shop.circuit]
max_connections = 16
max_pending = 16"
  "$lt" "http://$gw/shop/hello/x" -c 256 -d "${dur}s" --quiet --json "$tmp/flood.json" > /dev/null 2>&1 || true
  summary "$tmp/flood.json"
  curl -s "http://127.0.0.1:$gwa/metrics" | grep -E '^wasp_circuit_refused_total' | sed 's/^/  /'
  echo "  instance served $(served c1) (at most 16 at a time: 16 / 50 ms = 320/s)"
  stop_all
fi
