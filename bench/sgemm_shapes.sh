#!/usr/bin/env bash
# Where a SmolLM2 LoRA step's GEMM time goes, per kind and per shape: every cblas_sgemm call of
# the training run bench/train_vs_mlxlm.sh measures (SMOLLM2=1: q/k/v/o of the top 16 layers,
# batch 4, rows of ~166 tokens) is timed by an LD_PRELOAD shim (bench/sgemm_shapes.c). Runs of
# ITERS_A and ITERS_B updates are differenced, so loading, the first step and validation cancel;
# figures are per update. Each run is made twice, alternating: with the C-heap policy MLX is
# loaded with (host/mlx/src/heap.rs) and with glibc's defaults (BRAIN_MLX_DEFAULT_HEAP=1), with
# page faults and system time per update from /usr/bin/time.
#
#   bench/sgemm_shapes.sh            # REPEAT=1 ITERS_A=3 ITERS_B=8
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/sgemm
mkdir -p "$OUT"
A=${ITERS_A:-3} B=${ITERS_B:-8} REPEAT=${REPEAT:-1}
M=bench/out/train/model-smollm2
if grep -qw avx512bw /proc/cpuinfo; then CORE=SkylakeX; elif grep -qw avx2 /proc/cpuinfo; then CORE=Haswell; else CORE=; fi
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$CORE}
[ -f "$M/model.safetensors" ] || SMOLLM2=1 REPEAT=1 ITERS=3 SKIP=1 bash bench/train_vs_mlxlm.sh > /dev/null
cargo build --release -q -p brain-train --example train
gcc -O2 -shared -fPIC bench/sgemm_shapes.c -o "$OUT/sgemm_shapes.so" -ldl -lpthread
[ -d bench/out/train/data ] || python3 bench/text_data.py bench/out/train/data 0 160 64 same
for r in $(seq "$REPEAT"); do
    for heap in kept default; do
        for it in "$A" "$B"; do
            rm -rf "$OUT/adapter"
            env $([ $heap = default ] && echo BRAIN_MLX_DEFAULT_HEAP=1) SGEMM_SHAPES_OUT="$OUT/$heap-$it-$r.txt" \
                LD_PRELOAD="$PWD/$OUT/sgemm_shapes.so" /usr/bin/time -f "%e %U %S %R" -o "$OUT/$heap-$it-$r.time" \
                target/release/examples/train --model "$M" --data bench/out/train/data --iters "$it" --batch-size 4 \
                --learning-rate 1e-5 --num-layers 16 --max-seq-length 512 --steps-per-report 1 --steps-per-eval 100000 \
                --save-every 100000 --val-batches 0 --adapter-path "$OUT/adapter" --bench-skip 1 2> /dev/null | tail -1 > "$OUT/$heap-$it-$r.json"
        done
    done
done
python3 - "$OUT" "$A" "$B" "$REPEAT" <<'PY'
import json, sys
from collections import defaultdict
out, a, b, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
steps = b - a
def load(path):
    rows = [l.split() for l in open(path)]
    per_thread = defaultdict(float)
    for r in rows:
        per_thread[r[5]] += float(r[7])
    main = max(per_thread, key=per_thread.get)  # MLX's stream thread: it runs every big GEMM
    d = defaultdict(lambda: [0, 0.0])
    for r in rows:
        key = (int(r[0]) - 111, int(r[1]) - 111, int(r[2]), int(r[3]), int(r[4]), r[5] == main)
        d[key][0] += int(r[6]); d[key][1] += float(r[7])
    return d
def kind(m, n, k):
    if min(m, n, k) <= 16: return "LoRA (rank 8)"
    if 64 in (n, k) or (m < 600 and n < 600 and k < 600): return "attention (per KV head)"
    if 4096 in (n, k): return "output matrix (fused CE)"
    return "layers' projections"
print(f"per update, difference of {b}- and {a}-update runs; GFLOP/s of the calls themselves")
for r in range(1, reps + 1):
    for heap in ("kept", "default"):
        da, db = load(f"{out}/{heap}-{a}-{r}.txt"), load(f"{out}/{heap}-{b}-{r}.txt")
        ta, tb = (open(f"{out}/{heap}-{x}-{r}.time").read().split() for x in (a, b))
        wall = (float(tb[0]) - float(ta[0])) / steps
        faults = (int(tb[3]) - int(ta[3])) / steps
        sys_s = (float(tb[2]) - float(ta[2])) / steps
        tps = json.load(open(f"{out}/{heap}-{b}-{r}.json"))["tokens_per_second"]
        print(f"\nheap {heap:8} run {r}: {tps:.1f} tokens/s; per update {wall:.2f} s wall, {faults:,.0f} page faults, {sys_s:.2f} s system time")
        kinds = defaultdict(lambda: [0.0, 0.0])
        shapes = []
        for key, (c, ns) in db.items():
            c0, ns0 = da.get(key, (0, 0.0))
            dc, dns = (c - c0) / steps, (ns - ns0) / steps
            if dc <= 0: continue
            ta_, tb_, m, n, k, main = key
            f = 2.0 * m * n * k * dc
            name = kind(m, n, k) + ("" if main else ", other threads")
            kinds[name][0] += dns; kinds[name][1] += f
            if main: shapes.append((dns, ta_, tb_, m, n, k, dc, f))
        main_ms = sum(v[0] for k, v in kinds.items() if "other" not in k) / 1e6
        for name, (ns, f) in sorted(kinds.items(), key=lambda x: -x[1][0]):
            print(f"  {name:42} {ns / 1e6:7.1f} ms {f / ns:7.1f} GFLOP/s {f / 1e9:7.1f} GFLOP")
        print(f"  {'sgemm on the stream thread':42} {main_ms:7.1f} ms = {100 * main_ms / 1e3 / wall:.0f}% of the update's wall time")
        if heap == "kept" and r == 1:
            print("  largest shapes on the stream thread (trans_a trans_b M N K: calls, ms, GFLOP/s):")
            for ns, ta_, tb_, m, n, k, dc, f in sorted(shapes, reverse=True)[:8]:
                print(f"    {ta_} {tb_} {m:5} {n:5} {k:5}: {dc:5.0f} calls {ns / 1e6:6.1f} ms {f / ns:6.1f}")
PY
