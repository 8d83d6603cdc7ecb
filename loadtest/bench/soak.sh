#!/usr/bin/env bash
# Soak: does normal keep-alive traffic keep its latency, and does the gateway
# keep its file descriptors, while a crowd of slow and abandoned clients leans
# on it? A gateway that never cuts a slow reader, a trickling writer, a
# half-open connection or an abandoned upload holds two sockets per attacker
# (client and upstream) for as long as the attacker likes: enough of them and
# it runs out of descriptors, and a worker busy with them adds latency to
# everyone else. This measures both.
#
#   SOLO: wasp-loadtest at a fixed rate (RATE req/s over CONNS keep-alive
#   connections, latency from when each request was due);
#   SOAK: the same traffic beside ATTACKERS connections of each kind
#   (soak.py): slow readers of an 8 MiB body (2 KiB SO_RCVBUF, 16 bytes/s or
#   nothing), slow writers (head or body a byte every 300 ms), half-open
#   connections (half a head, or nothing), abandoned 8 MB uploads (1 MB sent
#   in 64 KiB writes, then silence or close). Each is reopened when the
#   gateway cuts it; whether the gateway still holds a socket is read from
#   /proc/net/tcp, so a cut is seen even by a client that never reads.
#
#   Normal traffic is measured in windows: ROUNDS-1 solo windows of
#   DURATION/3/ROUNDS s, then ROUNDS soak windows of DURATION/ROUNDS s in
#   one unbroken attack of DURATION s, then a last solo window once every
#   attacker has left and the gateway has let go (ROUNDS=3: 2 x 20 s solo,
#   3 x 60 s soak, 1 x 20 s solo). On a shared box the host's own noise
#   comes in bursts of a second or two that spoil whichever window they land
#   in; one solo window against one soak window would hand the verdict to
#   where the bursts fell. The verdict compares the median of the soak
#   windows' p99s with the median of the solo windows' p99s; every window's
#   p99, the worst soak window and the gateway's sockets at each window's
#   end (the attack present in every soak window, absent in every solo one)
#   are printed beside it.

# Prints normal traffic p50/p99/errors solo vs soak (medians of windows, and
# every window's p99), the ratio, the attackers opened/cut (and how, how
# fast), the gateway's open fds at start, peak, end and after every attacker
# closed, and wasp_timeouts_total. PASS when median p99(soak) / median
# p99(solo) <= 1.5 and the normal traffic saw 0 errors, else FAIL and exit 1.
#
# GATEWAY=nginx runs the same soak against nginx as the gateway (one
# process, the same timeouts, request and response buffering off, as wasp
# streams both): the peer's figure on this box, to read wasp's beside.
#
# Attackers go to service `bulk`, a python3 asyncio keep-alive origin (soak.py
# origin): */big is 8 MiB, anything else 12 bytes; uploads are read and
# counted. Normal traffic goes to service `origin` (nginx if installed).
#
# Where things run (PIN=0: no pinning). LAYOUT=host (the default) is the
# closest this 2-core box gets to a gateway host at the edge: the measuring
# side (wasp-loadtest, nginx) alone on CPU 0; the gateway (one worker, at
# nice -10) on CPU 1 together with the attackers and their Python origin,
# which run on idle time only (SCHED_IDLE; ATTACK_IDLE=0: normal priority).
# The attack traffic's kernel work (loopback delivery runs in the sender's
# context) then lands on the gateway's CPU, as a NIC's interrupts would on a
# real host, and the attackers' own Python CPU, which a real host would not
# run, yields to the gateway. LAYOUT=shared (the layout before 2026-11-25):
# the gateway alone on CPU 1, everything else on CPU 0, where the attackers'
# CPU and their traffic's kernel work delay the load generator and nginx and
# show up as normal traffic latency the gateway had no part in (measured
# both ways on one box: see README "Edge hardening").
# Timeouts are shortened (header_read 5s, idle 10s, upstream 10s, pool_idle
# 5s, and write 5s when the binary knows timeouts.write). Numbers from a noisy
# 2-core box are indicative: compare binaries within one sitting.
#
# MODE=ws: the same question for WebSocket traffic. Normal traffic is
# wasp-loadtest's round-trip mode on endpoint `chat` (RATE events/s over CONNS
# connections; route `send`, reply = true, to the normal origin, so each
# round trip is client -> gateway -> HTTP POST -> reply frame), alone for
# DURATION/3 s, then for DURATION s beside (soak.py wsattack) event floods on
# endpoint `flood` (max_message_bytes 1024, max_inflight_bytes 16384,
# messages_per_second 200, $default and $error to a backend that answers
# after 3 s, limits.backend_connections 64): FLOODS connections each of
# invalid JSON, valid events for $default and oversized frames, sent as fast
# as the socket takes them, reopened when closed; and loops POSTing pushes of
# 8 KiB (above max_message_bytes: 413 expected) to /endpoints/flood/messages
# and to /connections/{a flood client's id}, plus one in-limit broadcast a
# second. Prints round-trip p50/p99/errors solo vs soak and the ratio, flood
# connections opened/closed with the close codes and error events seen, push
# statuses, gateway fds start/peak/end/after settle. Same PASS rule.
#
# Usage: loadtest/bench/soak.sh [BINARY] [DURATION_S]
#        MODE=ws loadtest/bench/soak.sh [BINARY] [DURATION_S]
#   BINARY default target/release/wasp, DURATION_S default 180
#   env: RATE=2000 CONNS=32 ATTACKERS=24 (per kind, 8 kinds) WORKERS=1 PIN=1 LAYOUT=host|shared
#        ROUNDS=3 (HTTP mode) ATTACK_IDLE=1 GATEWAY=wasp|nginx (HTTP mode)
#        SEND_UNIT=65536 (bytes per upload write; 0: the megabyte in one sendall)
#        SCHEDULER_SLICE=off|100us|... (server.scheduler_slice; default: the binary's)
#        KINDS=slow_reader,upload_close (only these attacker kinds; default all)
#        SETTLE=12 (s after the attackers closed) LOADTEST=target/release/wasp-loadtest
#        KEEP=1 (keep the temp dir with config, logs and JSON summaries)
#        MODE=http (default) or ws; for ws: FLOODS=4 (per kind, 3 kinds) PUSHERS=2
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
bin=${1:-target/release/wasp}
dur=${2:-180}
rate=${RATE:-2000}; conns=${CONNS:-32}; per_kind=${ATTACKERS:-24}
workers=${WORKERS:-1}; settle=${SETTLE:-12}; pin=${PIN:-1}; layout=${LAYOUT:-host}
lt=${LOADTEST:-target/release/wasp-loadtest}
mode=${MODE:-http}
case "$mode" in http|ws) ;; *) echo "soak.sh: MODE is http or ws" >&2; exit 2;; esac
solo=$(( dur / 3 )); [ "$solo" -ge 5 ] || solo=5
py=python3
[ -x "$bin" ] || { echo "soak.sh: no gateway binary at $bin (cargo build --release)" >&2; exit 2; }
if [ ! -x "$lt" ]; then cargo build --release -p wasp-loadtest -q; lt=target/release/wasp-loadtest; fi

case "$layout" in host|shared) ;; *) echo "soak.sh: LAYOUT is host or shared" >&2; exit 2;; esac
# meas: load generator and normal origin; gwrun: the gateway; atk: attackers and their origin.
meas=(); gwrun=(); atk=()
if [ "$pin" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  meas=(taskset -c 0); gwrun=(taskset -c 1)
  if [ "$layout" = host ]; then
    atk=(taskset -c 1)
    # The attackers' own processes (and their origin) run on idle CPU time
    # only (SCHED_IDLE): their userland is the test's, not the host's, and
    # at normal priority it holds the gateway's CPU through whole kernel
    # calls (PREEMPT_NONE) and scheduler slices, which measured more added
    # p99 than all the gateway's own work for them (README "Edge
    # hardening"). Their kernel work still lands on this CPU whenever the
    # gateway has nothing to do. ATTACK_IDLE=0: normal priority.
    if [ "${ATTACK_IDLE:-1}" = 1 ] && chrt --idle 0 true 2>/dev/null; then atk=(chrt --idle 0 taskset -c 1); fi
    if nice -n -10 true 2>/dev/null; then gwrun=(nice -n -10 taskset -c 1); fi
  else
    atk=(taskset -c 0)
  fi
fi

work=$(mktemp -d /tmp/wasp-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

read -r origin_port gw_port admin_port nginx_port < <($py "$here/soak.py" ports 4)

# The attackers' service (`bulk`) is soak.py's origin: it serves the 8 MiB
# bodies and swallows uploads, and counts them. Normal traffic goes to its own
# service (`origin`): nginx when installed (cheap: the figure to watch is the
# gateway's, not a Python origin's that the attackers keep busy on the same
# CPU), else a second soak.py origin.
"${atk[@]}" $py "$here/soak.py" origin --port "$origin_port" --slow 3 --status "$work/origin.json" 2> "$work/origin.log" &
origin=$!; pids+=($origin)
if command -v nginx >/dev/null; then
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$nginx_port reuseport; location / { return 200 'hello world\n'; } } }
NGINX
  "${meas[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2> "$work/nginx/stderr.log" &
  pids+=($!); normal_origin="nginx"
else
  "${meas[@]}" $py "$here/soak.py" origin --port "$nginx_port" --status "$work/origin2.json" 2> "$work/origin2.log" &
  pids+=($!); normal_origin="soak.py"
fi

if [ "$mode" = ws ]; then
  floods=${FLOODS:-4}; pushers=${PUSHERS:-2}; maxmsg=1024
  cfg=$work/wasp.toml
  cat > "$cfg" <<EOF
[server]
listen = "127.0.0.1:$gw_port"
admin_listen = "127.0.0.1:$admin_port"
workers = $workers

[limits]
backend_connections = 64

[timeouts]
upstream = "10s"

[log]
access = false
level = "warn"

[endpoints.chat]
path = "/ws/chat"
route_selection = "\$.action"

[endpoints.chat.routes.send]
http = ["http://127.0.0.1:$nginx_port/reply"]
reply = true

[endpoints.flood]
path = "/ws/flood"
route_selection = "\$.action"
max_message_bytes = $maxmsg
max_frame_bytes = $maxmsg
max_inflight_bytes = 16384
messages_per_second = 200

[endpoints.flood.routes."\$default"]
http = ["http://127.0.0.1:$origin_port/default/slow"]

[endpoints.flood.routes."\$error"]
http = ["http://127.0.0.1:$origin_port/error/slow"]
EOF
  "$bin" check --config "$cfg" >/dev/null
  "${gwrun[@]}" "$bin" serve --config "$cfg" > "$work/gateway.log" 2>&1 &
  gw=$!; pids+=($gw)
  $py "$here/soak.py" wait --port "$admin_port"
  fds() { $py "$here/soak.py" fds --pid "$gw" --gw-port "$gw_port" --origin-port "$origin_port"; }
  wsurl="ws://127.0.0.1:$gw_port/ws/chat"
  wsload() { "${meas[@]}" "$lt" "$wsurl" -c "$conns" -R "$rate" --quiet "$@" > /dev/null; }

  echo "soak (ws): $bin, solo ${solo}s then soak ${dur}s, $rate round trips/s over $conns connections, $floods floods x 3 kinds, $pushers pushers x 2 kinds (work dir $work)" >&2
  fds > "$work/fds-start.json"
  wsload -d 3s                                  # warm-up: fill the upstream pool
  fds > "$work/solo-start.json"
  echo "solo..." >&2
  wsload -d "${solo}s" --json "$work/solo.json"
  fds > "$work/solo-end.json"
  echo "soak..." >&2
  "${atk[@]}" $py "$here/soak.py" wsattack --gw-port "$gw_port" --gw-pid "$gw" --admin-port "$admin_port" \
    --origin-port "$origin_port" --max-message-bytes "$maxmsg" --floods "$floods" --pushers "$pushers" \
    --duration $(( dur + 3 )) --settle 5 --out "$work/attack.json" &
  att=$!; pids+=($att)
  sleep 2                                       # let the attackers start first
  wsload -d "${dur}s" --json "$work/soak.json"
  wait "$att"
  kill -0 "$gw" 2>/dev/null || { echo "soak.sh: the gateway exited during the run; log:" >&2; tail -20 "$work/gateway.log" >&2; }
  rc=0
  $py "$here/soak.py" wsreport --binary "$bin" \
    --note "$workers worker(s); $rate round trips/s over $conns connections (route send, reply = true, to $normal_origin); attackers: endpoint flood, \$default/\$error to soak.py /slow (3 s), backend_connections 64; layout $layout (gateway: ${gwrun[*]:-unpinned}; attackers: ${atk[*]:-unpinned})" \
    --solo "$work/solo.json" --soak "$work/soak.json" --attack "$work/attack.json" --origin "$work/origin.json" \
    --admin-port "$admin_port" --fds-start "$work/fds-start.json" --solo-start "$work/solo-start.json" \
    --solo-end "$work/solo-end.json" --slow-s 3 || rc=$?
  exit $rc
fi

cfg=$work/wasp.toml
cat > "$cfg" <<EOF
[server]
listen = "127.0.0.1:$gw_port"
admin_listen = "127.0.0.1:$admin_port"
workers = $workers

[timeouts]
header_read = "5s"
idle = "10s"
upstream = "10s"
pool_idle = "5s"

[log]
access = false
level = "warn"

[services.origin]
instances = ["127.0.0.1:$nginx_port"]

[services.bulk]
instances = ["127.0.0.1:$origin_port"]
EOF
# timeouts.write is new: add it only where the binary accepts it.
sed 's/^pool_idle = "5s"$/&\nwrite = "5s"/' "$cfg" > "$work/with-write.toml"
if "$bin" check --config "$work/with-write.toml" >/dev/null 2>&1; then
  mv "$work/with-write.toml" "$cfg"; write_note='write 5s'
else
  write_note='no timeouts.write in this binary'
fi
# SCHEDULER_SLICE=off|100us|...: server.scheduler_slice (binaries that have it).
if [ -n "${SCHEDULER_SLICE:-}" ]; then
  sed "s/^workers = $workers\$/&\nscheduler_slice = \"$SCHEDULER_SLICE\"/" "$cfg" > "$work/with-slice.toml"
  "$bin" check --config "$work/with-slice.toml" >/dev/null || { echo "soak.sh: SCHEDULER_SLICE=$SCHEDULER_SLICE refused" >&2; exit 2; }
  mv "$work/with-slice.toml" "$cfg"; write_note="$write_note; scheduler_slice $SCHEDULER_SLICE"
fi
"$bin" check --config "$cfg" >/dev/null

if [ "${GATEWAY:-wasp}" = nginx ]; then
  # The same soak against nginx as the gateway (one process, the same
  # timeouts, request bodies streamed like wasp's): the peer's figure for
  # this box and layout, to read wasp's beside.
  command -v nginx >/dev/null || { echo "soak.sh: GATEWAY=nginx needs nginx" >&2; exit 2; }
  mkdir -p "$work/gw-nginx"
  cat > "$work/gw-nginx/nginx.conf" <<NGINX
worker_processes 1; master_process off; daemon off; pid $work/gw-nginx/nginx.pid;
error_log $work/gw-nginx/error.log crit; worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 1000000;
  client_header_timeout 5s; client_body_timeout 5s; send_timeout 5s; keepalive_timeout 10s;
  client_max_body_size 0; proxy_request_buffering off; proxy_buffering off; proxy_http_version 1.1;
  proxy_set_header Connection ""; proxy_connect_timeout 10s; proxy_read_timeout 10s; proxy_send_timeout 5s;
  upstream origin { server 127.0.0.1:$nginx_port; keepalive 64; }
  upstream bulk { server 127.0.0.1:$origin_port; keepalive 64; }
  server { listen 127.0.0.1:$gw_port reuseport backlog=4096;
    location /origin/ { proxy_pass http://origin/; }
    location /bulk/ { proxy_pass http://bulk/; } }
  server { listen 127.0.0.1:$admin_port; location / { return 200 ''; } } }
NGINX
  "${gwrun[@]}" nginx -p "$work/gw-nginx" -c "$work/gw-nginx/nginx.conf" > "$work/gateway.log" 2>&1 &
  gw=$!; pids+=($gw); bin="nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (GATEWAY=nginx)"
  gw_timeouts="nginx as the gateway"; write_note="client_header/body 5s, send 5s, keepalive 10s, proxy read 10s, send 5s, request and response buffering off"
else
  "${gwrun[@]}" "$bin" serve --config "$cfg" > "$work/gateway.log" 2>&1 &
  gw=$!; pids+=($gw)
fi
$py "$here/soak.py" wait --port "$admin_port"
fds() { $py "$here/soak.py" fds --pid "$gw" --gw-port "$gw_port" --origin-port "$origin_port"; }
url="http://127.0.0.1:$gw_port/origin/hello"
load() { "${meas[@]}" "$lt" "$url" -c "$conns" -R "$rate" --quiet "$@" > /dev/null; }

rounds=${ROUNDS:-3}
solo_w=$(( solo / rounds )); [ "$solo_w" -ge 5 ] || solo_w=5
soak_w=$(( dur / rounds )); [ "$soak_w" -ge 5 ] || soak_w=5
echo "soak: $bin, solo ${rounds}x${solo_w}s (the last after the attack), soak ${rounds}x${soak_w}s in one unbroken attack, $rate req/s over $conns connections, $per_kind attackers per kind (work dir $work)" >&2
fds > "$work/fds-start.json"
load -d 3s                                      # warm-up: fill the upstream pool
# window PHASE N: normal traffic for SECONDS, with the gateway's CPU time and
# sockets read at both ends.
window() {
  echo "$1 window $2/$rounds..." >&2
  fds > "$work/$1-$2-start.json"
  load -d "$3s" --json "$work/$1-$2.json"
  fds > "$work/$1-$2-end.json"
}
for r in $(seq 1 $(( rounds - 1 ))); do window solo "$r" "$solo_w"; done
"${atk[@]}" $py "$here/soak.py" attack --gw-port "$gw_port" --gw-pid "$gw" --admin-port "$admin_port" \
  --origin-port "$origin_port" --origin-pid "$origin" --prefix /bulk --per-kind "$per_kind" --kinds "${KINDS:-}" \
  --send-unit "${SEND_UNIT:-65536}" --duration $(( dur + 10 * rounds + 60 )) --settle "$settle" --out "$work/attack.json" &
att=$!; pids+=($att)
sleep 2                                         # let the attackers connect first
for r in $(seq 1 "$rounds"); do
  kill -0 "$att" 2>/dev/null || { echo "soak.sh: the attackers stopped before soak window $r" >&2; exit 2; }
  window soak "$r" "$soak_w"
done
kill -0 "$att" 2>/dev/null || { echo "soak.sh: the attackers stopped before the end of the soak" >&2; exit 2; }
kill -HUP "$att"                                # end of the soak: readings with the attackers attached, then settle
wait "$att"
window solo "$rounds" "$solo_w"                 # the baseline again, once every attacker has left
kill -0 "$gw" 2>/dev/null || { echo "soak.sh: the gateway exited during the run; log:" >&2; tail -20 "$work/gateway.log" >&2; }

rc=0
$py "$here/soak.py" report --binary "$bin" \
  --note "${gw_timeouts:-timeouts: header_read 5s, idle 10s, upstream 10s, pool_idle 5s}, $write_note; $workers worker(s); $rate req/s over $conns connections; normal traffic to $normal_origin, attackers to soak.py; layout $layout (gateway: ${gwrun[*]:-unpinned}; attackers: ${atk[*]:-unpinned}); windows: solo ${rounds}x${solo_w}s, soak ${rounds}x${soak_w}s" \
  --dir "$work" --rounds "$rounds" --attack "$work/attack.json" --origin "$work/origin.json" \
  --admin-port "$admin_port" --fds-start "$work/fds-start.json" || rc=$?
exit $rc
