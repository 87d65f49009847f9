#!/usr/bin/env bash
# Training memory and speed on real model shapes, 4-bit like mlx-community's: Qwen2.5-1.5B and
# Qwen3-0.6B built by mlx-lm's own classes with random weights (bench/make_shapes.py; the real
# Qwen3 tokenizer, 151,936-row vocabulary), quantized by mlx-lm (group 64, 4 bits).
#
#   bench/real_shapes.sh memory   # LoRA (q/k/v/o of the top 16 layers, rank 8) on the 1.5B shape,
#                                 # batch 1, sequences of 512 / 1,024 / 2,048 tokens: brain with
#                                 # per-block gradient checkpointing (MLX peak, peak RSS), mlx-lm's
#                                 # own trainer at MLXLM_LENS (default 512; each of its steps takes
#                                 # many minutes on a CPU: MLX's CPU quantized matmul is a scalar loop)
#   bench/real_shapes.sh speed    # LoRA updates on the 0.6B shape, batch SPEED_BATCH (4) x SPEED_LEN
#                                 # (128) tokens, ITERS (6) updates, the first SKIP (1) left out:
#                                 # brain on the 4-bit model (--no-bf16-matmul: f32 products), mlx-lm on
#                                 # its f32 copy (and on the 4-bit model with MLXLM_4BIT=1), REPEAT (2)
#                                 # alternating runs; BF16=1 adds brain --bf16-matmul (AVX-512 BF16
#                                 # products of the packed tiles: brain's default for this bf16 model)
#
# Both tools run MLX 0.32.4's CPU build with OpenBLAS and the same kernels (see train_vs_mlxlm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-memory}
OUT=bench/out/shapes
mkdir -p "$OUT"
PY=${PY:-$(bash tests/reference-env.sh | tail -1)}
OPENBLAS=${OPENBLAS:-/usr/lib/x86_64-linux-gnu/libopenblas.so.0}
if grep -qw avx512bw /proc/cpuinfo; then CORE=SkylakeX; elif grep -qw avx2 /proc/cpuinfo; then CORE=Haswell; else CORE=; fi
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$CORE}

TOK=$(bash bench/qwen_tokenizer.sh)
"$PY" bench/make_shapes.py "$OUT" "$TOK" qwen2.5-1.5b qwen3-0.6b
if [ "$(wc -l < "$OUT/data/valid.jsonl" 2>/dev/null || echo 0)" -lt 8 ]; then
    python3 bench/text_data.py "$OUT/data" 1 2600 8 distinct
fi
cargo build --release -q -p brain-train --example train
BIN=$PWD/target/release/examples
rss() { grep -o "Maximum resident set size (kbytes): [0-9]*" "$1" | awk '{printf "%.2f", $6 / 1048576}'; }

if [ "$WHAT" = memory ]; then
    M=$OUT/qwen2.5-1.5b-4bit
    printf "%-8s %-28s %10s %9s %12s\n" tokens tool "MLX peak" "peak RSS" "s/update"
    for L in 512 1024 2048; do
        /usr/bin/time -v "$BIN/train" --model "$M" --data "$OUT/data" --iters 2 --batch-size 1 --num-layers 16 \
            --max-seq-length "$L" --grad-checkpoint --val-batches 1 --steps-per-report 1 --steps-per-eval 100000 \
            --save-every 100000 --bench-skip 1 --adapter-path "$OUT/brain-adapters-$L" \
            > "$OUT/brain-$L.json" 2> "$OUT/brain-$L.log" || { tail "$OUT/brain-$L.log"; exit 1; }
        python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(f\"{sys.argv[2]:<8} {'sam-brain (grad checkpoint)':<28} {r['peak_memory_gb']:8.2f}GB {sys.argv[3]:>7}GB {(int(sys.argv[2]) - 1) / r['tokens_per_second']:12.1f}\")" \
            "$OUT/brain-$L.json" "$L" "$(rss "$OUT/brain-$L.log")"
    done
    for L in ${MLXLM_LENS:-512}; do
        LD_PRELOAD=$OPENBLAS /usr/bin/time -v "$PY" bench/mlxlm_memory_driver.py "$M" "$OUT/data" "$L" 16 0 \
            > "$OUT/mlxlm-$L.json" 2> "$OUT/mlxlm-$L.log" || { tail "$OUT/mlxlm-$L.log"; exit 1; }
        python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(f\"{sys.argv[2]:<8} {'mlx-lm 0.32.2':<28} {r['peak_memory_gb']:8.2f}GB {sys.argv[3]:>7}GB {r['seconds']:12.1f}\")" \
            "$OUT/mlxlm-$L.json" "$L" "$(rss "$OUT/mlxlm-$L.log")"
    done
elif [ "$WHAT" = speed ]; then
    # brain on the 4-bit model (packed, the bridge's kernel); mlx-lm on its float32 copy (its
    # fastest CPU path: the same OpenBLAS) and, with MLXLM_4BIT=1, on the 4-bit model itself
    # (MLX's CPU quantized matmul: many minutes per update).
    M=$OUT/qwen3-0.6b-4bit
    F=$OUT/qwen3-0.6b-f32
    [ -f "$F/model.safetensors" ] || "$PY" -m mlx_lm convert --hf-path "$M" --mlx-path "$F" -d --dtype float32 > /dev/null
    L=${SPEED_LEN:-128}
    SKIP=${SKIP:-1}
    COMMON=(--data "$OUT/data" --batch-size "${SPEED_BATCH:-4}" --learning-rate 1e-5 --num-layers 16
            --max-seq-length "$L" --steps-per-report 1 --steps-per-eval 100000 --save-every 100000)
    runs=("sam-brain 4-bit:ours:$M" "mlx-lm f32 copy:mlxlm:$F")
    [ -n "${BF16:-}" ] && runs=("sam-brain 4-bit:ours:$M" "sam-brain 4-bit bf16:ours16:$M" "mlx-lm f32 copy:mlxlm:$F")
    [ -n "${MLXLM_4BIT:-}" ] && runs+=("mlx-lm 4-bit:mlxlm:$M")
    for i in $(seq "${REPEAT:-2}"); do
        for r in "${runs[@]}"; do
            IFS=: read -r name tool model <<< "$r"
            log="$OUT/speed-$tool-$(basename "$model")-$i"
            if [ "$tool" = ours ] || [ "$tool" = ours16 ]; then
                extra=(--no-bf16-matmul); [ "$tool" = ours16 ] && extra=(--bf16-matmul)
                /usr/bin/time -v "$BIN/train" --model "$model" "${COMMON[@]}" --iters "${ITERS:-6}" --val-batches 1 \
                    --adapter-path "$OUT/speed-adapters" --bench-skip "$SKIP" "${extra[@]}" > "$log.json" 2> "$log.log" || { tail "$log.log"; exit 1; }
            else
                LD_PRELOAD=$OPENBLAS /usr/bin/time -v "$PY" bench/train_mlxlm_driver.py "$SKIP" --train --model "$model" "${COMMON[@]}" \
                    --iters "${ITERS:-6}" --val-batches 1 -c bench/lora_qkvo.yaml --adapter-path "$OUT/speed-adapters" \
                    > "$log.json" 2> "$log.log" || { tail "$log.log"; exit 1; }
            fi
            python3 - "$log" "$name" "$i" <<'PY'
import json, re, sys
log, name, i = sys.argv[1:]
r = json.loads(open(log + ".json").read().strip().splitlines()[-1])
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(log + ".log").read()).group(1)) / 1048576
print(f"run {i}  {name:<16} {r['tokens_per_second']:8.1f} tokens/s  {r['tokens_per_cpu_second']:7.1f} tokens/CPU-s  "
      f"MLX peak {r['peak_memory_gb']:.2f} GB  RSS {rss:.2f} GB  first loss {r['first_loss']:.4f}  validation {r['val_loss_before']:.4f}")
PY
        done
    done
fi
