#!/usr/bin/env bash
# Curation benchmark. Secret scrubbing on the secrets corpus (host/curate/tests/secrets-corpus:
# recall per family, false redaction of look-alikes, MB/s on one core), then 100,000 generated
# ~1 KB examples (planted secrets, near-duplicate copies, look-alikes): scrub throughput vs a
# plain RegexSet, near-dup time at 25k/50k/100k, the whole scrub + dedup step on 2 threads; then
# detect-secrets 1.5.0 (warmed up before timing) and datasketch 1.6.5 on the same corpora, with
# ratios and recall. Release build. Output under bench/out/curate. The Python tools live in a
# virtual environment under ~/.cache/sam-brain/bench-curate-venv (created on first run).
#   N=100000 DS_SLICE=1000 DS_DOCS=100000 bench/curate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/curate
n=${N:-100000}
cargo run -q --release -p brain-curate --example scrub_corpus -- --out "$out"
cargo run -q --release -p brain-curate --example curate_bench -- --n "$n" --ds-docs "${DS_SLICE:-1000}" --out "$out"
venv=${BENCH_VENV:-$HOME/.cache/sam-brain/bench-curate-venv}
if ! "$venv/bin/python" -c 'import detect_secrets, datasketch' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "detect-secrets==1.5.0" "datasketch==1.6.5"
fi
echo
"$venv/bin/python" bench/curate_compare.py "$out"
