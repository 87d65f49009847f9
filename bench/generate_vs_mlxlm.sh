#!/usr/bin/env bash
# Generation speed on the real SmolLM2-135M-Instruct, side by side in one run: `brain generate`
# and `mlx_lm generate` (0.32.2, same MLX 0.32.4 CPU build, OpenBLAS with the same kernels) on the
# same float32 Hugging Face directory (its Q4_1 GGUF made one, as bench/train_vs_mlxlm.sh does),
# greedy, one prompt of a few hundred tokens, 128 new tokens: prompt tokens/s (prefill) and
# decoding tokens/s, best of REPEAT runs each; and the decoding bound: the bytes of weights one
# token reads ÷ the memory bandwidth measured here (a sum over 1 GiB on every core, and on one).
#
#   MODEL=dir bench/generate_vs_mlxlm.sh          # another model for both (e.g. a 4-bit one made by
#                                                 # bench/real_shapes.sh)
#   BRAIN_MODEL=x.gguf bench/generate_vs_mlxlm.sh # brain on another form of the same model (its GGUF)
#   PROMPT_REPEAT=2 MAX_TOKENS=32                 # a shorter prompt, fewer tokens
#   MLXLM=0                                       # brain and the bound only (mlx-lm decodes the 4-bit
#                                                 # 1.5B shape at ~0.1 tokens/s on a CPU)
#   BF16=1                                        # brain also on the model stored in bf16, as it
#                                                 # ships (made from MODEL): on a CPU with AVX-512
#                                                 # BF16 brain multiplies it in bf16, reading half
#                                                 # the bytes per token (mlx-lm's CPU bf16 matmul
#                                                 # is a scalar loop: not run on it)
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-3}
PY=${PY:-$(bash tests/reference-env.sh | tail -1)}
OPENBLAS=${OPENBLAS:-/usr/lib/x86_64-linux-gnu/libopenblas.so.0}
if grep -qw avx512bw /proc/cpuinfo; then CORE=SkylakeX; elif grep -qw avx2 /proc/cpuinfo; then CORE=Haswell; else CORE=; fi
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$CORE}
M=${MODEL:-bench/out/train/model-smollm2}
BM=${BRAIN_MODEL:-$M}
N=${MAX_TOKENS:-128}
if [ "$M" = bench/out/train/model-smollm2 ] && [ ! -f "$M/model.safetensors" ]; then
    SMOLLM2=1 REPEAT=1 ITERS=3 SKIP=1 bash bench/train_vs_mlxlm.sh > /dev/null
fi
cargo build -q --release -p brain
if [ -n "${BF16:-}" ]; then
    B16=$M-bf16-stored
    if [ ! -f "$B16/model.safetensors" ]; then
        mkdir -p "$B16"
        find "$M" -maxdepth 1 -type f ! -name '*.safetensors' -exec cp {} "$B16/" \;
        "$PY" -c "import mlx.core as mx, sys; w = mx.load(sys.argv[1]); mx.save_safetensors(sys.argv[2], {k: v.astype(mx.bfloat16) for k, v in w.items()})" \
            "$M/model.safetensors" "$B16/model.safetensors"
    fi
fi
prompt="$(python3 -c "print(' '.join(['Explain how a version control system records each change, who made it, and why, and how a reviewer reads a diff.'] * ${PROMPT_REPEAT:-12}))")"
for i in $(seq "$REPEAT"); do
    for bm in "$BM" ${B16:+"$B16"}; do
        target/release/brain --json generate --model "$bm" --no-adapter -p "$prompt" --max-tokens "$N" --temp 0 \
            | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"brain   prompt {r['prompt_tokens']} tok at {r['prompt_tps']:.1f} tok/s, decode {r['generation_tokens']} tok at {r['generation_tps']:.1f} tok/s, peak {r['peak_memory']:.2f} GB, {r['bf16_matrices']} matrices in bf16 ({sys.argv[1]})\")" "$bm"
    done
    [ "${MLXLM:-1}" = 0 ] && continue
    LD_PRELOAD=$OPENBLAS "$PY" -m mlx_lm generate --model "$M" --prompt "$prompt" --max-tokens "$N" --temp 0 --verbose True 2>/dev/null \
        | python3 -c "
import re, sys
t = sys.stdin.read()
p = re.search(r'Prompt: (\d+) tokens, ([\d.]+) tokens-per-sec', t); g = re.search(r'Generation: (\d+) tokens, ([\d.]+) tokens-per-sec', t); m = re.search(r'Peak memory: ([\d.]+) GB', t)
print(f'mlx-lm  prompt {p.group(1)} tok at {float(p.group(2)):.1f} tok/s, decode {g.group(1)} tok at {float(g.group(2)):.1f} tok/s, peak {float(m.group(1)):.2f} GB')"
done
"$PY" - "$M" ${B16:+"$B16"} <<'PY'
import os, sys, time
import numpy as np
import threading
a = np.ones(1 << 28, np.float32)
def rate(threads):
    # numpy's sum releases the GIL, so the threads read their parts side by side.
    parts, best = np.array_split(a, threads), 0
    for _ in range(5):
        ts = [threading.Thread(target=p.sum) for p in parts]
        t = time.perf_counter()
        for x in ts: x.start()
        for x in ts: x.join()
        best = max(best, a.nbytes / (time.perf_counter() - t))
    return best
one, every = rate(1), rate(os.cpu_count())
for m in sys.argv[1:]:
    weights = sum(os.path.getsize(os.path.join(m, f)) for f in os.listdir(m) if f.endswith(".safetensors"))
    print(f"decoding bound ({m}): {weights / 1e6:.0f} MB of weights per token at {every / 1e9:.1f} GB/s (numpy sum of 1 GiB on all {os.cpu_count()} cores, "
          f"as the kernels read) = {every / weights:.0f} tokens/s; at one core's {one / 1e9:.1f} GB/s, {one / weights:.0f} tokens/s")
PY
