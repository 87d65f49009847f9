#!/usr/bin/env bash
# DPO cost, on the same tiny Qwen2 models as bench/train_vs_mlxlm.sh (hidden 256, 4 layers, 4
# heads / 2 KV heads, MLP 1024, tied; vocabulary 151,936 and 1,024), CPU, f32, OpenBLAS.
#
# 1. Step cost, ours: one batch of 4 synthetic preference pairs (8 rows: chosen, rejected; LoRA
#    rank 8 / scale 20 on q/k/v/o of all layers), timed alternately: an SFT step on exactly those
#    rows and loss mask, a DPO step with the cached reference (the trainer's), and a DPO step
#    that scores the reference again every step (no cache). Target: DPO ≤ ~1.2× SFT.
# 2. End to end vs mlx-lm-lora's DPO (which loads a second full model as the reference and scores
#    it every step) on the same model and data: 64 pairs, batch 4, LoRA rank 8 / scale 20 on all
#    seven linear layers (mlx-lm-lora's only choice), beta 0.1, sigmoid, lr 1e-5. mlx-lm-lora
#    5.10.2 crashes on a CPU (KeyError reading the Metal-only device_info key
#    "max_recommended_working_set_size"); bench/dpo_mlxlmlora_driver.py supplies that key and
#    otherwise runs its code unchanged. Needs `pip install --no-deps mlx-lm-lora==5.10.2` next to
#    mlx-lm 0.32.2 (LORA_PY picks the Python; skipped with a note when it is missing).
#
#   bench/dpo_vs_sft.sh
#   VOCABS=1024 STEPS=20 bench/dpo_vs_sft.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/dpo
mkdir -p "$OUT"
VOCABS=${VOCABS:-"151936 1024"}
STEPS=${STEPS:-10}
ITERS=${ITERS:-12}
# End to end, both tools: total trained tokens over total time of every step (SKIP=N leaves the
# first N steps out of mlx-lm-lora's figure only; ours always includes its reference pass).
SKIP=${SKIP:-0}
LORA_PY=${LORA_PY:-python3}
OPENBLAS=${OPENBLAS:-/usr/lib/x86_64-linux-gnu/libopenblas.so.0}

cargo build --release -q -p brain-train --example dpo_bench --example init_tiny
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/examples
DATA=$OUT/pairs
M0=$OUT/model-1024
[ -f "$M0/model.safetensors" ] || "$BIN/init_tiny" "$M0" --hidden 256 --layers 4 --heads 4 --kv-heads 2 \
    --intermediate 1024 --tokenizer-vocab 1024 --vocab 1024 > /dev/null
"$BIN/dpo_bench" --model "$M0" --write-data "$DATA" --n 64 --words 40
cat > "$OUT/lora.yaml" <<'YAML'
lora_parameters:
  rank: 8
  scale: 20.0
  dropout: 0.0
YAML
HAVE_LORA=1
"$LORA_PY" -c "import mlx_lm_lora" 2>/dev/null || { HAVE_LORA=0; echo "note: $LORA_PY has no mlx_lm_lora; skipping the mlx-lm-lora comparison"; }

rss() { awk '/Maximum resident/ {printf "%.2f", $NF/1048576}' "$1"; }
for V in $VOCABS; do
    M=$OUT/model-$V
    [ -f "$M/model.safetensors" ] || "$BIN/init_tiny" "$M" --hidden 256 --layers 4 --heads 4 --kv-heads 2 \
        --intermediate 1024 --tokenizer-vocab 1024 --vocab "$V" > /dev/null
    "$BIN/dpo_bench" --model "$M" --pairs 4 --words 60 --steps "$STEPS" --warmup 2 > "$OUT/step-$V.json"
    /usr/bin/time -v "$BIN/dpo_bench" --model "$M" --data "$DATA" --iters "$ITERS" --pairs 4 \
        --all-linear --max-seq-length 512 2> "$OUT/ours-$V.log" | tail -1 > "$OUT/ours-$V.json" || { cat "$OUT/ours-$V.log"; exit 1; }
    if [ "$HAVE_LORA" = 1 ]; then
        rm -rf "$OUT/lora-$V"
        LD_PRELOAD=$OPENBLAS /usr/bin/time -v "$LORA_PY" bench/dpo_mlxlmlora_driver.py "$SKIP" --train --train-mode dpo \
            --model "$M" --data "$DATA" --iters "$ITERS" --batch-size 4 --learning-rate 1e-5 --num-layers -1 \
            --max-seq-length 512 --steps-per-report 1 --steps-per-eval 100000 --save-every 100000 --val-batches 1 \
            --beta 0.1 -c "$OUT/lora.yaml" --adapter-path "$OUT/lora-$V" 2> "$OUT/lora-$V.log" \
            | tail -1 > "$OUT/lora-$V.json" || { tail -20 "$OUT/lora-$V.log"; echo "mlx-lm-lora failed (log: $OUT/lora-$V.log)"; echo '{}' > "$OUT/lora-$V.json"; }
    else
        echo '{}' > "$OUT/lora-$V.json"; : > "$OUT/lora-$V.log"
    fi
    python3 - "$V" "$OUT" "$(rss "$OUT/ours-$V.log")" "$(rss "$OUT/lora-$V.log")" <<'PY'
import json, sys
v, out, rss_ours, rss_lora = sys.argv[1:5]
s = json.load(open(f"{out}/step-{v}.json"))
print(f"\nvocab {v}: one step on {s['pairs']} pairs = {s['rows']} rows x {s['row_len']} tokens, {s['trained_tokens']} trained tokens")
print(f"  {'':24} {'wall (median)':>13} {'tokens/s':>9} {'vs SFT':>7} {'CPU (mean)':>11} {'vs SFT':>7}")
print(f"  {'SFT step':<24} {s['sft_step_s']*1000:10.1f} ms {s['sft_tokens_per_second']:9.1f} {'':>7} {s['sft_cpu_s']*1000:8.1f} ms")
print(f"  {'DPO step (cached ref)':<24} {s['dpo_step_s']*1000:10.1f} ms {s['dpo_tokens_per_second']:9.1f} {s['dpo_over_sft']:6.3f}x {s['dpo_cpu_s']*1000:8.1f} ms {s['dpo_over_sft_cpu']:6.3f}x"
      + ("" if min(s['dpo_over_sft'], s['dpo_over_sft_cpu']) <= 1.2 else "  <-- over 1.2x"))
print(f"  {'DPO step (no ref cache)':<24} {s['dpo_nocache_step_s']*1000:10.1f} ms {'':>9} {s['nocache_over_sft']:6.3f}x {s['nocache_cpu_s']*1000:8.1f} ms {s['nocache_over_sft_cpu']:6.3f}x")
print(f"  reference, once per pair batch: {s['reference_once_s']*1000:.1f} ms (first call, incl. warm-up)")
a = json.load(open(f"{out}/ours-{v}.json"))
b = json.load(open(f"{out}/lora-{v}.json"))
print(f"  end to end, 64 pairs, batch 4, LoRA on all linear layers:")
print(f"  {'tool':<12} {'tokens/s':>9} {'step ms':>8} {'MLX peak':>9} {'peak RSS':>9} {'first loss':>10}")
print(f"  {'sam-brain':<12} {a['tokens_per_second']:9.1f} {a['step_s']*1000:8.1f} {a['peak_memory_gb']:8.3f}G {rss_ours:>8}G {a['first_loss']:10.5f}")
if b:
    print(f"  {'mlx-lm-lora':<12} {b['tokens_per_second']:9.1f} {b['step_s']*1000:8.1f} {b['peak_memory_gb']:8.3f}G {rss_lora:>8}G {b['first_loss']:10.5f}")
    print(f"  ratio (ours / theirs): tokens/s {a['tokens_per_second']/b['tokens_per_second']:.2f}x, step time {a['step_s']/b['step_s']:.2f}x, MLX peak {a['peak_memory_gb']/b['peak_memory_gb']:.2f}x")
else:
    print("  mlx-lm-lora: not run")
PY
done
