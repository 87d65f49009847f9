#!/usr/bin/env bash
# Curation benchmark: 100,000 generated ~1 KB examples (planted secrets, near-duplicate copies,
# look-alikes). Scrub throughput vs a plain RegexSet, near-dup time at 25k/50k/100k, the whole
# scrub + dedup step on 2 threads; then detect-secrets 1.5.0 and datasketch 1.6.5 on the same
# corpus, with ratios and recall. Release build. Output under bench/out/curate.
#   N=100000 DS_SLICE=1000 DS_DOCS=100000 bench/curate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/curate
n=${N:-100000}
cargo run -q --release -p brain-curate --example curate_bench -- --n "$n" --ds-docs "${DS_SLICE:-1000}" --out "$out"
if ! python3 -c 'import detect_secrets, datasketch' 2>/dev/null; then
    python3 -m pip install -q --disable-pip-version-check "detect-secrets==1.5.0" "datasketch==1.6.5"
fi
echo
python3 bench/curate_compare.py "$out"
