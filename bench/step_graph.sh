#!/usr/bin/env bash
# The ops of one LoRA step (loss and gradients), brain vs mlx-lm, counted by primitive from each
# tool's unevaluated graph (MLX's export_to_dot): the model in bfloat16 as on a GPU, brain with
# the ops a GPU runs (BRAIN_MLX_COMPOSED_*: MLX's RMSNorm, RoPE, attention, composed SwiGLU; the
# composed cross-entropy), LoRA rank 8 on q/k/v/o of the top LAYERS blocks, a (4, 91) batch. What
# one tool does more often than the other is where to look when it is slower on a GPU (BENCHMARKS.md,
# "LoRA SFT on a CUDA GPU").
#
#   bench/step_graph.sh [MODEL] [LAYERS]   # default: a tiny random Qwen2 (q/k/v biases, as
#                                          # Qwen2.5), 4 blocks, LoRA on the top 2
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/graph
mkdir -p "$OUT"
PY=${PY:-$(bash tests/reference-env.sh | tail -1)}
cargo build --release -q -p brain-train --example step_graph --example init_tiny
M=${1:-$OUT/tiny-qwen2}
LAYERS=${2:-2}
if [ "$M" = "$OUT/tiny-qwen2" ] && [ ! -f "$M/model.safetensors" ]; then
    target/release/examples/init_tiny "$M" --hidden 256 --layers 4 --heads 4 --kv-heads 2 --intermediate 1024 \
        --tokenizer-vocab 1024 --vocab 1024 > /dev/null
fi
BRAIN_MLX_COMPOSED_RMSNORM=1 BRAIN_MLX_COMPOSED_ROPE=1 BRAIN_MLX_COMPOSED_ATTENTION=1 BRAIN_MLX_COMPOSED_SWIGLU=1 \
    target/release/examples/step_graph "$M" "$LAYERS" "$OUT/brain.dot" composed
"$PY" bench/mlxlm_step_graph.py "$M" "$LAYERS" "$OUT/mlxlm.dot"
python3 - "$OUT/brain.dot" "$OUT/mlxlm.dot" <<'PY'
import collections, re, sys
def ops(path):
    return collections.Counter(re.findall(r'\[label ="([^"]+)", shape=rectangle\]', open(path).read()))
a, b = ops(sys.argv[1]), ops(sys.argv[2])
print(f"{'op':<32} {'sam-brain':>10} {'mlx-lm':>8}")
for op in sorted(set(a) | set(b), key=lambda o: -(a[o] + b[o])):
    mark = "" if a[op] == b[op] else "  <"
    print(f"{op:<32} {a[op]:>10} {b[op]:>8}{mark}")
print(f"{'all ops':<32} {sum(a.values()):>10} {sum(b.values()):>8}")
PY
# brain's matrix products by dtype and shape (print_graph's text; Python's MLX has no such view)
python3 - "$OUT/brain.txt" <<'PY'
import collections, re, sys
kinds = collections.Counter()
for line in open(sys.argv[1]):
    if line.startswith(("Matmul ", "AddMM ")):
        ins = re.findall(r"\[\(([^)]*)\), (\w+)\]", line)
        kinds[(line.split()[0], " x ".join(f"{d}({s})" for s, d in ins[:-1]), ins[-1][1])] += 1
print(f"\nsam-brain's matrix products: op, inputs -> output dtype")
for (op, ins, out), n in sorted(kinds.items(), key=lambda kv: -kv[1]):
    print(f"{n:4} {op:<7} {ins} -> {out}")
PY
