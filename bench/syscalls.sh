#!/usr/bin/env bash
# System calls per proxied request, nginx against authgate (authenticated route), counted by
# `strace -c` attached to the serving processes while wrk runs 5 s through each. The kernel does
# most of a proxied request's work on loopback, so a call saved per request shows in CPU time.
# strace slows both down: compare the counts, not the requests/s.
#
#   bench/syscalls.sh
#
# Installs strace, wrk and nginx-light (Debian packages) when missing; builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v strace >/dev/null || ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  echo "== installing strace, wrk and nginx" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq strace wrk nginx-light >/dev/null
fi
# Two builds: built in one command with the example, authgate would get the features of the
# tests' dependencies too (tokio's test-util clock), and not be the binary users build.
cargo build --release --locked --example loadbench
cargo build --release --locked --bin authgate

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

target/release/examples/loadbench upstream >"$work/upstream.port" &
pids+=($!)
while [ ! -s "$work/upstream.port" ]; do sleep 0.05; done
upstream=$(cat "$work/upstream.port")

nginx_port=$(free_port)
mkdir -p "$work/logs"
cat >"$work/nginx.conf" <<EOF
worker_processes auto; daemon off; pid $work/nginx.pid; error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $work/body; proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fastcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  upstream app { server 127.0.0.1:$upstream; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)

gate_port=$(free_port)
cat >"$work/authgate.toml" <<EOF
[server]
listen = "127.0.0.1:$gate_port"
[upstream]
url = "http://127.0.0.1:$upstream"
[tokens]
secret = "syscalls-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
[store]
path = "$work/authgate.db"
[login_limits]
per_user = 0
per_address = 0
EOF
RUST_LOG=warn target/release/authgate run --config "$work/authgate.toml" >"$work/authgate.log" 2>&1 &
gate=$!
pids+=($gate)
until curl -sf "http://127.0.0.1:$gate_port/readyz" >/dev/null; do sleep 0.1; done
credentials='{"username":"bench","password":"a perfectly fine password"}'
curl -sf -XPOST "http://127.0.0.1:$gate_port/register" -H 'content-type: application/json' \
  -d "$credentials" >/dev/null
token=$(curl -sf -XPOST "http://127.0.0.1:$gate_port/login" -H 'content-type: application/json' \
  -d "$credentials" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
until [ -s "$work/nginx.pid" ]; do sleep 0.1; done

count() { # name pids url header
  strace -c -f -p "$2" -o "$work/$1.strace" 2>/dev/null &
  local tracer=$!
  sleep 0.5
  wrk -t2 -c32 -d5s -H "$4" "$3" >"$work/$1.wrk"
  kill -INT "$tracer"; wait "$tracer" || true
  local requests
  requests=$(grep -oP '^\s+\K\d+(?= requests)' "$work/$1.wrk")
  echo "== $1: system calls per request ($requests requests under strace)"
  awk -v n="$requests" 'NR > 2 && $NF != "total" && $4 ~ /^[0-9]+$/ && $4 / n >= 0.01 {
    printf "  %-14s %6.2f\n", $NF, $4 / n }' "$work/$1.strace" | sort -k2 -nr
}
count nginx "$(pgrep -d, -P "$(cat "$work/nginx.pid")")" "http://127.0.0.1:$nginx_port/x" "X-Unused: 1"
count authgate "$gate" "http://127.0.0.1:$gate_port/x" "Authorization: Bearer $token"
