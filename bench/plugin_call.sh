#!/usr/bin/env bash
# Plugin runtime micro-benchmark (release): compile / cache-hit / instantiate times, µs per
# example of a batched filter call (target: <= 1 µs per example at batch 100+), examples/s
# pulled from a source, and the git capability + bundled git plugin on a synthetic
# 10,000-commit repository (tests/common/gen_repo.rs, as bench/collect.sh uses).
set -euo pipefail
cd "$(dirname "$0")/.."

# The trivial filter/source of tests/fault-plugins, optimized like the bundled plugins.
target=${CARGO_TARGET_DIR:-target}/bench-plugins
env -u CARGO_TARGET_DIR RUSTFLAGS= CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=true \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 cargo build -q --release --locked --target wasm32-wasip2 \
    --manifest-path tests/fault-plugins/Cargo.toml --target-dir "$target" -p healthy-filter -p healthy-source
wasm=$target/wasm32-wasip2/release

out=bench/out/plugin_call
mkdir -p "$out"
repo=$PWD/$out/repo-10000
if [ ! -d "$repo" ]; then
    rustc -O --edition 2021 tests/common/gen_repo.rs -o "$out/gen_repo"
    git init -q -b main "$repo"
    "$out/gen_repo" 10000 | git -C "$repo" fast-import --quiet
    # fast-import deltifies new blobs against older ones; `git gc` (what real repositories get)
    # stores the newest versions whole, which is what a newest-first walk wants.
    git -C "$repo" repack -adf -q
fi
BENCH_GIT_REPO=$repo cargo run -q --release -p brain --example plugin_bench -- \
    "$wasm/healthy_filter.wasm" "$wasm/healthy_source.wasm"
