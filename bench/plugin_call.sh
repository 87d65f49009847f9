#!/usr/bin/env bash
# Plugin runtime micro-benchmark: compile / cache-hit / instantiate times and µs per example of
# a batched filter call (target: <= 1 µs per example at batch 100+). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}/fault-plugins
env -u CARGO_TARGET_DIR RUSTFLAGS= cargo build -q --release --locked --target wasm32-wasip2 \
    --manifest-path tests/fault-plugins/Cargo.toml --target-dir "$target" -p healthy-filter -p healthy-source
wasm=$target/wasm32-wasip2/release
cargo run -q --release -p brain --example plugin_bench -- "$wasm/healthy_filter.wasm" "$wasm/healthy_source.wasm"

# The git capability and the bundled git plugin on a synthetic 10,000-commit repository
# (tests/common/gen_repo.rs, as bench/collect.sh uses).
out=bench/out/plugin_call
mkdir -p "$out"
repo=$PWD/$out/repo-10000
if [ ! -d "$repo" ]; then
    rustc -O --edition 2021 tests/common/gen_repo.rs -o "$out/gen_repo"
    git init -q -b main "$repo"
    "$out/gen_repo" 10000 | git -C "$repo" fast-import --quiet
fi
BENCH_GIT_REPO=$repo cargo run -q --release -p brain --example plugin_bench -- "$wasm/healthy_filter.wasm"
