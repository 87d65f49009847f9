#!/usr/bin/env bash
# Scrub + filter + dedup through the host's curation stage (what `brain collect` runs on every
# batch) with the bundled quality, repetition and length filter plugins, on N (default 100,000)
# generated ~1 KB chat examples with planted secrets and near-duplicate copies. Release build.
# Prints each filter's cost per example (one thread), the stage without filters, and the whole
# stage: examples/s wall and µs of CPU per example (the figure to read on a busy machine).
#   N=100000 BATCH=256 bench/curation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p brain --example curation_bench
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/curation_bench --n "${N:-100000}" --batch "${BATCH:-256}"
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
