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
