#!/usr/bin/env bash
# LoRA SFT on a CUDA GPU: brain (MLX's CUDA build through the bridge) vs mlx-lm (the same MLX
# build) vs PyTorch + PEFT, on the same models, data and hyperparameters as the CPU comparison's
# SmolLM2 run (bench/train_vs_mlxlm.sh): LoRA rank 8, scale 20, dropout 0 on q/k/v/o of the top
# 16 layers, batch 4, text rows of ~167 tokens (max 512), AdamW at 1e-5; tokens/s over the updates
# after the first SKIP (MLX's CUDA backend compiles its kernels during the first few), REPEAT runs
# per tool, the tools alternating.
#
# Models: real architectures with random weights in bfloat16 (bench/make_hf_shapes.py; all three
# tools read the same directory, so their first-step losses should agree closely), and with a
# -4bit suffix the same quantized by mlx-lm (group 64, 4 bits, as mlx-community's; brain and
# mlx-lm only: PEFT has no such format).
#
#   bench/cuda_train.sh              # run, then print the table
#   bench/cuda_train.sh run|table    # one of the two (the table reads every result in CUDA_OUT)
#
# Environment: MODELS ("smollm2-135m qwen2.5-1.5b"; also qwen2.5-0.5b, qwen3-0.6b), TOOLS ("brain
# brain_eager mlxlm peft"; brain: as shipped, which compiles its step on a GPU; brain_eager: with
# --no-compile; mlxlm_eager: mlx-lm with MLX_DISABLE_COMPILE=1, its step not compiled), REPEAT (2),
# ITERS (40), SKIP (5), LIMIT (1800 s per run); PY: a python with mlx[cuda13]==0.32.4, mlx-lm==0.32.2, torch, peft and
# transformers; TRAIN: brain's train example built against MLX's CUDA wheel (built here with
# MLX_CUDA=1 when unset); SMOLLM2_TOK and QWEN_TOK: tokenizer folders (default: the SmolLM2
# directory bench/train_vs_mlxlm.sh makes from the GGUF, and bench/qwen_tokenizer.sh's);
# CUDA_OUT (bench/out/cuda): models, data and results.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
OUT=${CUDA_OUT:-bench/out/cuda}
mkdir -p "$OUT"
MODELS=${MODELS:-"smollm2-135m qwen2.5-1.5b"}
TOOLS=${TOOLS:-"brain brain_eager mlxlm peft"}
REPEAT=${REPEAT:-2}
ITERS=${ITERS:-40}
SKIP=${SKIP:-5}
LIMIT=${LIMIT:-1800}  # seconds one training run may take
PY=${PY:-python3}

if [ "$WHAT" != table ]; then
    if [ -z "${TRAIN:-}" ]; then
        # Against PY's own MLX (the CUDA wheel in site-packages, whose libmlx finds the nvidia-*
        # libraries beside it), in a target folder of its own so the CPU build stays.
        MLX_DIR=$("$PY" -m mlx --cmake-dir) MLX_CUDA=1 CARGO_TARGET_DIR=target/cuda \
            cargo build --release -q -p brain-train --example train
        TRAIN=$PWD/target/cuda/release/examples/train
    fi
    SMOLLM2_TOK=${SMOLLM2_TOK:-bench/out/train/model-smollm2}
    [ -f "$SMOLLM2_TOK/tokenizer.json" ] || { echo "no SmolLM2 tokenizer in $SMOLLM2_TOK: run SMOLLM2=1 bench/train_vs_mlxlm.sh once, or set SMOLLM2_TOK"; exit 1; }
    QWEN_TOK=${QWEN_TOK:-$(bash bench/qwen_tokenizer.sh)}
    python3 bench/text_data.py "$OUT/data" 0 160 64 same
    shapes=()
    for m in $MODELS; do
        base=${m%-4bit}
        case "$base" in smollm2*) tok=$SMOLLM2_TOK ;; *) tok=$QWEN_TOK ;; esac
        shapes+=("$base=$tok")
    done
    "$PY" bench/make_hf_shapes.py "$OUT" "${shapes[@]}"
    for m in $MODELS; do
        if [ "$m" != "${m%-4bit}" ] && [ ! -f "$OUT/$m/model.safetensors" ]; then
            "$PY" -m mlx_lm convert --hf-path "$OUT/${m%-4bit}-bf16" --mlx-path "$OUT/$m" -q --q-group-size 64 --q-bits 4 > /dev/null
        fi
    done
    for i in $(seq "$REPEAT"); do
        for m in $MODELS; do
            dir=$OUT/$m; [ "$m" = "${m%-4bit}" ] && dir=$OUT/$m-bf16
            COMMON=(--model "$dir" --data "$OUT/data" --iters "$ITERS" --batch-size 4 --learning-rate 1e-5 --num-layers 16
                    --max-seq-length 512 --steps-per-report 1 --steps-per-eval 100000 --save-every 100000)
            for tool in $TOOLS; do
                log=$OUT/$tool-$m-$i
                case "$tool" in
                    brain) timeout "$LIMIT" "$TRAIN" "${COMMON[@]}" --val-batches 0 --adapter-path "$OUT/adapters-brain" --bench-skip "$SKIP" \
                               > "$log.json" 2> "$log.log" ;;
                    brain_eager) timeout "$LIMIT" "$TRAIN" "${COMMON[@]}" --no-compile --val-batches 0 --adapter-path "$OUT/adapters-brain" \
                               --bench-skip "$SKIP" > "$log.json" 2> "$log.log" ;;
                    mlxlm) timeout "$LIMIT" "$PY" bench/train_mlxlm_driver.py "$SKIP" --train "${COMMON[@]}" --val-batches 1 -c bench/lora_qkvo.yaml \
                               --adapter-path "$OUT/adapters-mlxlm" > "$log.json" 2> "$log.log" ;;
                    mlxlm_eager) MLX_DISABLE_COMPILE=1 timeout "$LIMIT" "$PY" bench/train_mlxlm_driver.py "$SKIP" --train "${COMMON[@]}" \
                               --val-batches 1 -c bench/lora_qkvo.yaml --adapter-path "$OUT/adapters-mlxlm" > "$log.json" 2> "$log.log" ;;
                    peft) [ "$m" != "${m%-4bit}" ] && continue
                          timeout "$LIMIT" "$PY" bench/peft_train_driver.py "$dir" "$OUT/data" "$ITERS" 4 1e-5 16 512 "$SKIP" 8 20 \
                               > "$log.json" 2> "$log.log" ;;
                esac || { echo "$tool on $m failed (run $i):"; tail -5 "$log.log"; rm -f "$log.json"; continue; }
                echo "run $i $m $tool: $(tail -1 "$log.json")"
            done
        done
    done
fi

[ "$WHAT" = run ] && exit 0
python3 - "$OUT" <<'PY'
import glob, json, os, re, sys
out = sys.argv[1]
runs = {}
for f in sorted(glob.glob(f"{out}/*-*-[0-9]*.json")):
    m = re.match(r"(brain_eager|brain|mlxlm_eager|mlxlm|peft)-(.+)-(\d+)\.json$", os.path.basename(f))
    lines = open(f).read().strip().splitlines()
    if m and lines:
        runs.setdefault(m.group(2), {}).setdefault(m.group(1), []).append(json.loads(lines[-1]))
names = {"brain": "sam-brain", "brain_eager": "sam-brain --no-compile", "mlxlm": "mlx-lm 0.32.2", "mlxlm_eager": "mlx-lm, no compile", "peft": "PyTorch + PEFT"}
print(f"\n{'model':<18} {'tool':<20} {'tokens/s (best)':>16} {'vs best other':>14} {'peak GB':>8} {'first loss':>11}  every run")
for model, tools in runs.items():
    best = {t: max(r, key=lambda x: x["tokens_per_second"]) for t, r in tools.items()}
    for t in ("brain", "brain_eager", "mlxlm", "mlxlm_eager", "peft"):
        if t not in best:
            continue
        b = best[t]
        others = [best[o]["tokens_per_second"] for o in best if not o.startswith("brain")]
        ratio = f"{b['tokens_per_second'] / max(others):.2f}x" if others and t.startswith("brain") else ""
        every = ", ".join(f"{x['tokens_per_second']:.0f}" for x in tools[t])
        print(f"{model:<18} {names[t]:<20} {b['tokens_per_second']:16.0f} {ratio:>14} {b['peak_memory_gb']:8.2f} {b['first_loss']:11.5f}  {every}")
PY
