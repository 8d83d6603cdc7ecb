#!/usr/bin/env bash
# The gateway CPU a JWT costs per request on the cache-hit path (every
# request after a token's first on a worker), side by side in one
# ../shared/bench/http_peers.py run: wasp with an open service, wasp with
# `auth = { jwt = … }` (the token in the query, since wrk sends no custom
# headers; the filter reads the header or the query the same way) and
# nginx/haproxy for scale. Each wasp has one worker on CPU 1; the keys and
# the token come from a real OAuth2 server (tests/peers/oauth2.mjs, which
# .ci/run installs), up for the whole run.
# Usage: loadtest/bench/jwt.sh [rounds] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}; secs=${2:-8}
cargo build --release -q --bin wasp
export WASP_TEST_NODE_MODULES=${WASP_TEST_NODE_MODULES:-$HOME/.cache/wasp/node/node_modules}
idp_log=$(mktemp)
exec 3< <(sleep 100000)   # the peer exits when its stdin closes
taskset -c 0 node tests/peers/oauth2.mjs 0 <&3 > "$idp_log" 2>&1 &
idp=$!
trap 'kill $idp 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^ready' "$idp_log" && break; sleep 0.1; done
port=$(awk '/^ready/ {print $2}' "$idp_log")
token=$(curl -s -X POST "http://127.0.0.1:$port/test/token" -H 'content-type: application/json' \
  -d '{"alg":"RS256","claims":{"sub":"bench","aud":"bench","scope":"read"},"expires_in":86400}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
dir=$(mktemp -d)
for kind in open jwt; do
  if [ $kind = open ]; then p=18097; a=19997; auth=''; else p=18098; a=19998;
    auth="auth = { jwt = { jwks_url = \"http://127.0.0.1:$port/jwks\", issuer = \"http://127.0.0.1:$port\", audience = \"bench\", query = \"access_token\" }, scopes = [\"read\"] }"; fi
  cat > "$dir/$kind.toml" <<TOML
[server]
listen = "127.0.0.1:$p"
admin_listen = "127.0.0.1:$a"
workers = 1
[log]
access = false
[services.origin]
instances = ["127.0.0.1:18080"]
$auth
TOML
done
bin=$PWD/target/release/wasp
python3 ../shared/bench/http_peers.py --rounds "$rounds" --dur "$secs" --only nginx,haproxy,wasp-open,wasp-jwt \
  --extra "wasp-open|18097|/origin/|$bin serve --config $dir/open.toml" \
  --extra "wasp-jwt|18098|/origin/?access_token=$token|$bin serve --config $dir/jwt.toml"
