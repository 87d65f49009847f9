#!/usr/bin/env bash
# Benchmarks of the MLX binding (host/mlx/examples/mlx_bench.rs, release build):
#  1. f32 matmul GFLOP/s with OpenBLAS preloaded (the default on Linux) and without it
#     (BRAIN_MLX_NO_OPENBLAS=1: the wheel's bundled reference BLAS);
#  2. cross-entropy forward + backward at N=368 tokens, H=256, V=151936 (Qwen's vocabulary):
#     the bridge's fused primitive vs composed MLX ops, for d hidden only (LoRA: the output
#     projection is frozen) and d hidden + d weight; time (best of --reps) and peak extra memory.
# Extra arguments go to the cross-entropy run (e.g. --n 368 --h 256 --v 151936 --reps 3).
# Timings on a shared 2-core machine vary with other load: run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p mlx --example mlx_bench
bin=target/release/examples/mlx_bench
echo "== matmul, OpenBLAS preloaded"
"$bin" matmul --reps 5
echo "== matmul, wheel's reference BLAS (BRAIN_MLX_NO_OPENBLAS=1)"
BRAIN_MLX_NO_OPENBLAS=1 "$bin" matmul --reps 1
echo "== cross-entropy"
"$bin" ce "$@"
