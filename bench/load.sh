#!/usr/bin/env bash
# The load benchmark of BENCHMARKS.md in one command: installs wrk and nginx (Debian packages) if
# missing, builds authgate and the benchmark in release mode, and runs
#   (a) direct, (b) nginx, (c) authgate authenticated, (d) authgate public,
# then the login-flood isolation, memory and start-up with one million revocations.
# Extra arguments go to the benchmark: --duration SECONDS (10), --connections N (32), --threads N (2).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  echo "== installing wrk and nginx" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq wrk nginx-light >/dev/null
fi

cargo build --release --locked --bin authgate --example loadbench
exec target/release/examples/loadbench "$@"
