#!/usr/bin/env bash
# The load benchmark of BENCHMARKS.md in one command: installs wrk and nginx (Debian packages) if
# missing, makes the profile-guided release build of authgate (bench/pgo.sh; PGO=0 measures the
# plain `cargo build --release` instead), builds the benchmark, and runs
#   (a) direct, (b) nginx, (c) authgate authenticated, (d) authgate public,
# then the login-flood isolation, memory and start-up with one million revocations, and last the
# second configuration: nginx as the app, wrk -t1 (alone: loadbench nginx-app BINARY [PAIRS [SECONDS]]).
# Extra arguments go to the benchmark: --duration SECONDS (10), --connections N (32), --threads N (2),
# --pairs N (3: how many nginx/authgate pairs each configuration measures, each pair on processes
# started for it).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  echo "== installing wrk and nginx" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq wrk nginx-light >/dev/null
fi

if [ "${PGO:-1}" = 0 ]; then
  cargo build --release --locked --bin authgate
  authgate=target/release/authgate
else
  bench/pgo.sh
  authgate=target/pgo/authgate
fi
cargo build --release --locked --example loadbench
exec target/release/examples/loadbench --authgate "$authgate" "$@"
