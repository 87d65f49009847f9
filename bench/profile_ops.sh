#!/usr/bin/env bash
# Where a LoRA step's time goes, per kind of op: `perf record` over profile_step (forward +
# backward of a (4, 91) batch, LoRA on q/k/v/o of every layer, fused cross-entropy) on MODEL
# (default: the real SmolLM2-135M-Instruct as the float32 directory bench/train_vs_mlxlm.sh makes
# from its GGUF, so loading dequantizes nothing), samples of MLX's CPU stream thread only — the
# thread that runs every op in order, so its samples are the step's wall time; BLAS calls it
# makes count there, their helper threads do not — grouped by symbol into kinds of op.
#
#   bench/profile_ops.sh [MODEL] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-bench/out/train/model-smollm2}
REPS=${2:-4}
command -v perf > /dev/null || { echo "needs perf (Debian: apt-get install linux-perf)"; exit 1; }
if grep -qw avx512bw /proc/cpuinfo; then CORE=SkylakeX; elif grep -qw avx2 /proc/cpuinfo; then CORE=Haswell; else CORE=; fi
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$CORE}
if [ "$M" = bench/out/train/model-smollm2 ] && [ ! -f "$M/model.safetensors" ]; then
    SMOLLM2=1 REPEAT=1 ITERS=3 SKIP=1 bash bench/train_vs_mlxlm.sh > /dev/null
fi
cargo build --release -q -p brain-train --example profile_step
OUT=bench/out/profile
mkdir -p "$OUT"
perf record -q -F 999 -o "$OUT/perf.data" target/release/examples/profile_step "$M" "$REPS" auto 2>&1 | grep Auto
perf report -i "$OUT/perf.data" --no-children --sort pid,dso,sym --stdio 2> /dev/null > "$OUT/report.txt"
python3 - "$OUT/report.txt" <<'PY'
import re, sys
from collections import defaultdict
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"\s+([\d.]+)%\s+(\d+):\S+\s+(\S+)\s+\[.\]\s+(.*)", line)
    if m:
        rows.append((float(m.group(1)), int(m.group(2)), m.group(3), m.group(4).strip()))
# MLX's stream thread: the thread with the most samples in libmlx.so.
per_tid = defaultdict(float)
for pct, tid, dso, sym in rows:
    if dso == "libmlx.so":
        per_tid[tid] += pct
stream = max(per_tid, key=per_tid.get)
KINDS = [
    ("matmul (OpenBLAS sgemm, incl. packing)", lambda d, s: "openblas" in d),
    ("fused cross-entropy (bridge)", lambda d, s: "bridge" in d and ("ce_" in s or "row_" in s or "CrossEntropy" in s)),
    ("quantized matmul (bridge)", lambda d, s: "bridge" in d and ("qmm" in s or "unpack" in s or "direct" in s)),
    ("SwiGLU (bridge)", lambda d, s: "bridge" in d and ("forward_" in s or "backward_" in s or "wiglu" in s)),
    ("exp / sigmoid (MLX, scalar)", lambda d, s: "exp<" in s or "Sigmoid" in s or "fmaf" in s or "Exp" in s),
    ("softmax / logsumexp (attention)", lambda d, s: "softmax" in s or "logsumexp" in s),
    # Not by "rms" alone: the kernel's clear_page_erms and libc's *_erms copies contain it.
    ("RMSNorm / RoPE (bridge, MLX fast)", lambda d, s: ("bridge" in d or "mlx" in d) and ("rmsnorm" in s.lower() or "rms_norm" in s.lower() or "rope" in s.lower() or "sum_squares" in s or "rotate_row" in s)),
    ("copies (transpose, contiguous, casts)", lambda d, s: "copy" in s),
    ("elementwise add / multiply / select", lambda d, s: "binary" in s or "ternary" in s or "Select" in s),
    ("reductions", lambda d, s: "reduc" in s.lower()),
    ("kernel: page faults, scheduling", lambda d, s: "kernel" in d),
    ("allocator (malloc, free)", lambda d, s: "libc" in d and ("malloc" in s or "free" in s or "memset" in s or "memcpy" in s or "memmove" in s)),
]
kinds = defaultdict(float)
total = 0.0
for pct, tid, dso, sym in rows:
    if tid != stream:
        continue
    total += pct
    for name, f in KINDS:
        if f(dso, sym):
            kinds[name] += pct
            break
    else:
        kinds["other"] += pct
print(f"\nMLX stream thread (tid {stream}): {total:.1f}% of all samples")
print(f"{'kind of op':<42} {'share of step time':>18}")
for name, pct in sorted(kinds.items(), key=lambda kv: -kv[1]):
    print(f"{name:<42} {100 * pct / total:17.1f}%")
PY
