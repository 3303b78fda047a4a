#!/usr/bin/env bash
# The release build of authgate that ships and that the benchmarks measure: profile-guided.
#
#   bench/pgo.sh [SECONDS]      -> target/pgo/authgate
#
# 1. authgate is built instrumented (rustc -Cprofile-generate);
# 2. `loadbench train` sends it a sidecar's traffic for SECONDS (8): mostly authenticated
#    requests, then public ones, some bodies, refused tokens, login, refresh and logout, checking
#    every answer;
# 3. the profile is merged with llvm-profdata (rustup's llvm-tools, installed here if missing);
# 4. authgate is built again with that profile (-Cprofile-use): LLVM lays out the hot path's code
#    together and inlines along it, which is what the L1 instruction cache needed (BENCHMARKS.md);
# 5. the result answers the same traffic once more, briefly, as a check.
#
# The two builds live in their own target directories, so `cargo build` and `cargo test` in
# target/ are untouched. `--target` keeps the flags off build scripts and proc macros.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-8}"
host="$(rustc -vV | sed -n 's/^host: //p')"
out="$PWD/target/pgo"
profiles="$out/profiles"

rustup component add llvm-tools >/dev/null 2>&1 || true
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
[ -x "$profdata" ] || { echo "llvm-profdata missing: rustup component add llvm-tools" >&2; exit 1; }

echo "== the training driver (loadbench), a plain release build" >&2
cargo build --release --locked --example loadbench
driver=target/release/examples/loadbench

echo "== authgate, instrumented" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$profiles" CARGO_TARGET_DIR="$out/instrumented" \
  cargo build --release --locked --bin authgate --target "$host"
instrumented="$out/instrumented/$host/release/authgate"

# A profile newer than the instrumented binary, the driver and this script still describes the
# code: keep it, and the build below has nothing to redo.
if [ "$out/authgate.profdata" -nt "$instrumented" ] && [ "$out/authgate.profdata" -nt "$driver" ] &&
  [ "$out/authgate.profdata" -nt "$0" ]; then
  echo "== training: the profile of this code is there already" >&2
else
  echo "== training for ${seconds} s" >&2
  rm -rf "$profiles"
  "$driver" train "$instrumented" "$seconds"
  "$profdata" merge -o "$out/authgate.profdata" "$profiles"
fi

echo "== authgate, built with the profile" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$out/authgate.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  CARGO_TARGET_DIR="$out/optimised" \
  cargo build --release --locked --bin authgate --target "$host"
cp "$out/optimised/$host/release/authgate" "$out/authgate"

echo "== check: the optimised build answers the same traffic" >&2
"$driver" train "$out/authgate" 1
echo "$out/authgate"
