#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: the same binary and load give the same
# count to within a few percent whatever else the machine does, so a change to the hot path can be
# judged in one run where requests/s vary by ±20 %. User space only (authgate and its libraries).
#
#   bench/instructions.sh [auth|public|nginx|assertion] [path/to/authgate]
#
# `assertion` is `auth` with the signed identity on (an Ed25519 key from `authgate keygen`): the
# difference is what an assertion costs per request.
# `nginx` counts nginx (one worker, the load benchmark's configuration) proxying the authenticated
# route's very request, bearer token included. CACHE_SIM=1 also simulates the caches and branch
# predictors and prints their misses per request; DUMP_INSTR=1 prints how much code a request runs.
# APP=nginx puts the second configuration's app behind the proxy (nginx answering itself) instead
# of loadbench's Rust upstream: its answers carry `Connection: keep-alive`, as many apps' do.
# Installs valgrind and wrk (and nginx for its mode or app) when missing; builds the release binary unless
# one is given. Prints the total per request and the 25 functions that cost the most.
set -euo pipefail
cd "$(dirname "$0")/.."
route=${1:-auth}
binary=${2:-}

if ! command -v valgrind >/dev/null || ! command -v wrk >/dev/null ||
  { { [ "$route" = nginx ] || [ "${APP:-}" = nginx ]; } && ! command -v nginx >/dev/null; }; then
  echo "== installing valgrind, wrk and nginx" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq valgrind wrk nginx-light >/dev/null
fi
callgrind=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no)
if [ -n "${CACHE_SIM:-}" ]; then callgrind+=(--cache-sim=yes --branch-sim=yes); fi
# DUMP_INSTR=1: costs per instruction, to count the code a request runs (and kept with
# KEEP_PROFILE, to see which bytes of a function those are).
if [ -n "${DUMP_INSTR:-}" ]; then callgrind+=(--dump-instr=yes); fi
cargo build --release --locked --example loadbench
if [ -z "$binary" ]; then
  cargo build --release --locked --bin authgate
  binary=target/release/authgate
fi

work=$(mktemp -d)
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
[ -n "${KEEP_PROFILE:-}" ] && trap 'kill -9 "${pids[@]}" 2>/dev/null; cp "$work"/callgrind.*.* "$KEEP_PROFILE"; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# nginx's configuration as $work/$1.conf: one process, its files under $work/$1, and $2 for the
# servers and upstreams of its http block.
nginx_conf() {
  mkdir "$work/$1"
  cat >"$work/$1.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
error_log $work/$1/error.log warn;
pid $work/$1/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/$1/body; proxy_temp_path $work/$1/proxy;
  fastcgi_temp_path $work/$1/fastcgi; uwsgi_temp_path $work/$1/uwsgi; scgi_temp_path $work/$1/scgi;
  $2
}
NGINX
}

if [ "${APP:-}" = nginx ]; then
  # The second configuration's app: nginx answering itself, with the headers nginx sends
  # (Server, Date, Content-Type, Content-Length, Connection: keep-alive).
  app_port=$(free_port)
  nginx_conf app "server { listen 127.0.0.1:$app_port; location / { return 200 \"ok\\n\"; } }"
  nginx -c "$work/app.conf" -p "$work/app" >"$work/app.log" 2>&1 &
  pids+=($!)
  echo "$app_port" >"$work/upstream.port"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$app_port/" >/dev/null && break; sleep 0.05; done
else
  target/release/examples/loadbench upstream >"$work/upstream.port" &
  pids+=($!)
  while [ ! -s "$work/upstream.port" ]; do sleep 0.05; done
fi
port=$(free_port)
cat >"$work/authgate.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
workers = 1
[upstream]
url = "http://127.0.0.1:$(cat "$work/upstream.port")"
[tokens]
secret = "instructions-secret-0123456789-abcdefghijklmnopqrstuv"
[store]
path = "$work/authgate.db"
[passwords]
memory_kib = 1024
iterations = 1
[login_limits]
per_user = 0
per_address = 0
[[routes]]
path = "/public/**"
access = "public"
EOF
if [ "$route" = assertion ]; then
  "$binary" keygen >"$work/assertion-key.pem"
  cat >>"$work/authgate.toml" <<EOF
[identity]
assertion_header = "X-Auth-Assertion"
assertion_audience = "bench-app"
[[identity.assertion_keys]]
kid = "bench"
private_key_file = "$work/assertion-key.pem"
EOF
fi
# For nginx, authgate runs outside valgrind, only to issue the token that the request carries.
if [ "$route" = nginx ]; then
  RUST_LOG=warn "$binary" run --config "$work/authgate.toml" >"$work/authgate.log" 2>&1 &
else
  RUST_LOG=warn "${callgrind[@]}" --callgrind-out-file="$work/callgrind.%p" \
    "$binary" run --config "$work/authgate.toml" >"$work/authgate.log" 2>&1 &
fi
vg=$!
pids+=($vg)
base="http://127.0.0.1:$port"
for _ in $(seq 600); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.2; done
creds='{"username":"bench","password":"a perfectly fine password"}'
curl -sf -XPOST -H 'Content-Type: application/json' -d "$creds" "$base/register" >/dev/null
token=$(curl -sf -XPOST -H 'Content-Type: application/json' -d "$creds" "$base/login" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
headers=(); url="$base/public/x"
if [ "$route" != public ]; then headers=(-H "Authorization: Bearer $token"); url="$base/api/x"; fi
if [ "$route" = nginx ]; then
  nginx_port=$(free_port)
  nginx_conf nginx "upstream app { server 127.0.0.1:$(cat "$work/upstream.port"); keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
  "${callgrind[@]}" --callgrind-out-file="$work/callgrind.%p" \
    nginx -c "$work/nginx.conf" -p "$work/nginx" >"$work/nginx.log" 2>&1 &
  vg=$!
  pids+=($vg)
  url="http://127.0.0.1:$nginx_port/api/x"
  for _ in $(seq 600); do curl -sf "$url" >/dev/null && break; sleep 0.2; done
fi

wrk -t1 -c8 -d2s "${headers[@]}" "$url" >/dev/null # warm up: token remembered, pool filled
callgrind_control -z "$vg" >/dev/null
out=$(wrk -t1 -c8 -d10s "${headers[@]}" "$url")
callgrind_control -d "$vg" >/dev/null
sleep 1
requests=$(echo "$out" | awk '/requests in/ {print $1}')
if echo "$out" | grep -q "Non-2xx"; then echo "unexpected answers: $out" >&2; exit 1; fi
profile=$(ls -t "$work"/callgrind.*.* | head -1)

python3 - "$profile" "$requests" "$route" <<'EOF'
import collections, re, sys
path, requests, route = sys.argv[1], int(sys.argv[2]), sys.argv[3]
own = collections.Counter()
function, after_call, positions, obj = None, False, 1, None
by_address = collections.Counter()  # with DUMP_INSTR: (object, address) -> instructions run
for line in open(path):
    if line.startswith("positions:"):
        positions = len(line.split()) - 1  # "line", or "instr line" with DUMP_INSTR
    elif line.startswith("ob="):
        obj = line[3:].strip()
    elif line.startswith("fn="):
        function = line[3:].strip()
    elif line.startswith("calls="):
        after_call = True
    elif line[:1].isdigit() or line[:1] in "+-*":
        parts = line.split()
        if len(parts) > positions:
            if not after_call:
                own[function] += int(parts[positions])
                if positions > 1 and parts[0].startswith("0x"):
                    by_address[obj, int(parts[0], 16)] += int(parts[positions])
            after_call = False
total = sum(own.values())
print(f"{route} route: {requests} requests, {total / requests:,.0f} instructions per request")
if by_address:
    # The code a request runs: 64-byte lines holding an instruction that runs for (nearly) every
    # request. An L1 instruction cache smaller than this is refilled for each request.
    hot = {(o, a // 64) for (o, a), n in by_address.items() if n >= requests / 2}
    print(f"code run per request: {len(hot)} cache lines, {len(hot) * 64 / 1024:.1f} KiB")
events = []
for line in open(path):
    if line.startswith("events:"):
        events = line.split()[1:]
    if line.startswith("summary:") and len(events) > 1:
        counts = dict(zip(events, map(int, line.split()[1:])))
        names = {"I1mr": "L1 instruction cache misses", "D1mr": "L1 data read misses",
                 "Bcm": "mispredicted conditional branches", "Bim": "mispredicted indirect jumps"}
        print(", ".join(f"{counts[e] / requests:,.0f} {n}" for e, n in names.items() if e in counts))
for function, cost in own.most_common(25):
    name = re.sub(r"<[^<>]*>", "<>", re.sub(r"<[^<>]*>", "<>", function))
    print(f"{cost / requests:8,.0f}  {name[:110]}")
EOF
