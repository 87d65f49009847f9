#!/usr/bin/env bash
# LoRA training throughput, ours vs mlx-lm, on the same tiny Qwen2 model, data and
# hyperparameters (CPU, f32, OpenBLAS for both).
#
# Model: hidden 256, 4 layers, 4 heads (2 KV heads), MLP 1024, tied embeddings; once with a
# Qwen-size vocabulary (151,936 rows) and once with a small one (1,024). Data: text format,
# every training row cut to max_seq_length 92 (batch 4 x 91 trained tokens, no padding, so both
# tools train exactly the same tokens — mlx-lm 0.32 counts one padding target per padded row,
# ml-explore/mlx-lm#1697). All training rows are the same text, so both tools' first batch is the
# same and first-step losses must agree; validation loss before training must agree too.
# LoRA rank 8, scale 20, dropout 0 on q/k/v/o of all layers, lr 1e-5, batch 4.
#
#   bench/train_vs_mlxlm.sh                 # both vocabularies
#   ITERS=30 VOCABS="151936" bench/train_vs_mlxlm.sh
#   SMOLLM2=1 bench/train_vs_mlxlm.sh       # the real SmolLM2-135M-Instruct (its Q4_1 GGUF made a
#                                           # Hugging Face directory first: mlx-lm reads no GGUF),
#                                           # q/k/v/o of the top 16 layers, sequences up to 512
#   SMOLLM2=1 BF16=1 bench/train_vs_mlxlm.sh  # adds brain --bf16-matmul (AVX-512 BF16 products);
#                                           # every tool then reads the weights rounded to bf16
#                                           # (stored f32), as the model ships, so all see one model
#
# Both tools get OpenBLAS with the same kernels: brain chooses them by the CPU's instruction
# sets (OPENBLAS_CORETYPE, see host/mlx/src/sys.rs) and mlx-lm is given the same choice, since
# OpenBLAS on its own takes its oldest kernels on a CPU it does not recognize.
#
# Prints a table: tokens/s (trained tokens per second of training time, the first SKIP steps
# left out; best of REPEAT runs per tool, the tools alternating, since other work on the machine
# only ever slows a run down), tokens per CPU-second of the process over the same steps (less
# sensitive to a busy machine), MLX peak memory, process peak RSS, first-step loss, validation
# loss before training.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/train
mkdir -p "$OUT"
VOCABS=${VOCABS:-"151936 1024"}
[ -n "${SMOLLM2:-}" ] && VOCABS=smollm2
SKIP=${SKIP:-2}
REPEAT=${REPEAT:-3}
OPENBLAS=${OPENBLAS:-/usr/lib/x86_64-linux-gnu/libopenblas.so.0}
PY=${PY:-$(bash tests/reference-env.sh | tail -1)}
"$PY" -c "import mlx_lm" 2>/dev/null || { echo "needs python3 with mlx-lm (pip install 'mlx[cpu]==0.32.4' 'mlx-lm==0.32.2')"; exit 1; }
if grep -qw avx512bw /proc/cpuinfo; then CORE=SkylakeX; elif grep -qw avx2 /proc/cpuinfo; then CORE=Haswell; else CORE=; fi
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$CORE}

cargo build --release -q -p brain-train --example train --example init_tiny
BIN=$PWD/target/release/examples
if [ -n "${SMOLLM2:-}" ]; then
    # The matmul rate the FLOP limit is computed from, measured in this run (f32 1024^3, OpenBLAS
    # with the kernels both tools get); again after the runs, and the higher of the two is used.
    cargo build --release -q -p mlx --example mlx_bench
    matmul_rate() { target/release/examples/mlx_bench matmul --reps 10 | sed -n 's/^matmul f32 1024x1024x1024: .*, \([0-9.]*\) GFLOP\/s.*/\1/p'; }
    RATE_BEFORE=$(matmul_rate)
    # With BF16: the bridge's bf16-product kernel at 1024^3 too (brain --bf16-matmul's own limit).
    bf16_rate() { target/release/examples/mlx_bench bf16 --reps 10 | sed -n 's/^bf16 1024x1024x1024: x@W^T f32 [0-9.]* ms ([0-9]* GFLOP\/s), bf16 [0-9.]* ms (\([0-9]*\)).*/\1/p'; }
    [ -n "${BF16:-}" ] && RATE16_BEFORE=$(bf16_rate)
fi

# Data: one training text (repeated), eight validation texts; all longer than 92 tokens.
DATA=$OUT/data
python3 bench/text_data.py "$DATA" 0 160 64 same

printf "\n%-8s %-10s %10s %8s %11s %8s %10s %9s %11s %11s\n" vocab tool "tokens/s" ratio "tok/CPU-s" ratio "MLX peak" "peak RSS" "first loss" "val before"
for V in $VOCABS; do
    IT=${ITERS:-$(case "$V" in smollm2) echo 10 ;; 151936) echo 20 ;; *) echo 50 ;; esac)}
    M=$OUT/model-$V
    LAYERS=-1 MAXLEN=92
    if [ "$V" = smollm2 ]; then
        M=$OUT/model-smollm2 LAYERS=16 MAXLEN=512
        if [ ! -f "$M/model.safetensors" ]; then
            gguf="${XDG_CACHE_HOME:-$HOME/.cache}/sam-brain/models/SmolLM2-135M-Instruct.Q4_1.gguf"
            [ -f "$gguf" ] || cargo test -q -p brain-train --test gguf real_smollm2 > /dev/null
            cargo build -q --release -p brain
            "$BIN/train" --model "$gguf" --data "$DATA" --iters 1 --batch-size 1 --num-layers 1 --adapter-path "$OUT/seed-adapter" > /dev/null
            target/release/brain fuse --model "$gguf" --adapter "$OUT/seed-adapter" --out "$M" --dequantize --dtype float32 -q
        fi
        if [ -n "${BF16:-}" ]; then
            B16=$OUT/model-smollm2-bf16
            if [ ! -f "$B16/model.safetensors" ]; then
                mkdir -p "$B16" && cp "$M"/{config.json,tokenizer.json,tokenizer_config.json} "$B16"/
                "$PY" -c "import mlx.core as mx, sys; w = mx.load(sys.argv[1]); mx.save_safetensors(sys.argv[2], {k: v.astype(mx.bfloat16).astype(mx.float32) for k, v in w.items()})" \
                    "$M/model.safetensors" "$B16/model.safetensors"
            fi
            M=$B16
        fi
    elif [ ! -f "$M/model.safetensors" ]; then
        "$BIN/init_tiny" "$M" --hidden 256 --layers 4 --heads 4 --kv-heads 2 --intermediate 1024 --tokenizer-vocab 1024 --vocab "$V" > /dev/null
    fi
    COMMON=(--model "$M" --data "$DATA" --iters "$IT" --batch-size 4 --learning-rate 1e-5 --num-layers "$LAYERS"
            --max-seq-length "$MAXLEN" --steps-per-report 1 --steps-per-eval 100000 --save-every 100000)
    for i in $(seq "$REPEAT"); do
        rm -rf "$OUT/ours-$V" "$OUT/mlxlm-$V" "$OUT/ours16-$V"
        rm -f "$OUT/ours16-$V-$i.json"
        /usr/bin/time -v "$BIN/train" "${COMMON[@]}" --val-batches 0 --adapter-path "$OUT/ours-$V" \
            --bench-skip "$SKIP" 2> "$OUT/ours-$V-$i.log" | tail -1 > "$OUT/ours-$V-$i.json" || { cat "$OUT/ours-$V-$i.log"; exit 1; }
        if [ -n "${BF16:-}" ]; then
            /usr/bin/time -v "$BIN/train" "${COMMON[@]}" --val-batches 0 --adapter-path "$OUT/ours16-$V" --bf16-matmul \
                --bench-skip "$SKIP" 2> "$OUT/ours16-$V-$i.log" | tail -1 > "$OUT/ours16-$V-$i.json" || { cat "$OUT/ours16-$V-$i.log"; exit 1; }
        fi
        LD_PRELOAD=$OPENBLAS /usr/bin/time -v "$PY" bench/train_mlxlm_driver.py "$SKIP" --train "${COMMON[@]}" \
            --val-batches -1 -c bench/lora_qkvo.yaml --adapter-path "$OUT/mlxlm-$V" 2> "$OUT/mlxlm-$V-$i.log" \
            | tail -1 > "$OUT/mlxlm-$V-$i.json" || { cat "$OUT/mlxlm-$V-$i.log"; exit 1; }
    done
    RATE=
    RATE16=
    if [ "$V" = smollm2 ]; then RATE=$(printf "%s\n%s\n" "$RATE_BEFORE" "$(matmul_rate)" | sort -g | tail -1); fi
    if [ "$V" = smollm2 ] && [ -n "${BF16:-}" ]; then RATE16=$(printf "%s\n%s\n" "$RATE16_BEFORE" "$(bf16_rate)" | sort -g | tail -1); fi
    python3 - "$V" "$OUT" "$REPEAT" "$M" "$LAYERS" "$RATE" "$RATE16" <<'PY'
import json, re, sys
v, out, n, model, layers, rate, rate16 = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
def best(tool):
    runs = []
    for i in range(1, n + 1):
        x = json.load(open(f"{out}/{tool}-{v}-{i}.json"))
        x["rss"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{out}/{tool}-{v}-{i}.log").read()).group(1)) / 1048576
        runs.append(x)
    b = max(runs, key=lambda x: x["tokens_per_second"])
    b["all"] = [round(x["tokens_per_second"], 1) for x in runs]
    return b
import os
a, b = best("ours"), best("mlxlm")
a16 = best("ours16") if os.path.exists(f"{out}/ours16-{v}-1.json") else None
rows = [a] + ([a16] if a16 else []) + [b]
if a16:
    a16["tool"] = "sam-brain bf16"
for x in rows:
    ratio = "" if x is b else f"{x['tokens_per_second'] / b['tokens_per_second']:.2f}x"
    ratio_c = "" if x is b else f"{x['tokens_per_cpu_second'] / b['tokens_per_cpu_second']:.2f}x"
    print(f"{v:<8} {x['tool']:<10} {x['tokens_per_second']:10.1f} {ratio:>8} {x['tokens_per_cpu_second']:11.1f} {ratio_c:>8} "
          f"{x['peak_memory_gb']:8.3f}GB {x['rss']:>7.2f}GB {x['first_loss']:11.5f} {x['val_loss_before']:11.5f}")
d1, d2 = abs(a["first_loss"] - b["first_loss"]), abs(a["val_loss_before"] - b["val_loss_before"])
why = "  (expected here: mlx-lm pads rows of 167 to 192 and counts one pad target per row, mlx-lm#1697)" if v == "smollm2" else ""
print(f"{'':8} losses agree: first step |Δ| {d1:.1e}, validation |Δ| {d2:.1e}" + ("" if max(d1, d2) < 1e-3 else "  <-- DISAGREE" + why))
print(f"{'':8} tokens/s of every run: sam-brain {a['all']}, " + (f"sam-brain bf16 {a16['all']}, " if a16 else "") + f"mlx-lm {b['all']}")
if rate:
    # FLOPs of the matmuls of one trained token (attention scores left out): forward through every
    # layer and the output matrix, backward (input gradients only: the base is frozen) through
    # the adapted layers and the output matrix.
    c = json.load(open(f"{model}/config.json"))
    h, inter, nl, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    kvd = c["num_key_value_heads"] * hd
    qd = c["num_attention_heads"] * hd
    layer = h * qd + 2 * h * kvd + qd * h + 3 * h * inter
    flop = 2 * (nl * layer + vocab * h) + 2 * (layers * layer + vocab * h)
    limit = float(rate) * 1e9 / flop
    print(f"{'':8} FLOP limit: {flop / 1e6:.0f} MFLOP per trained token at {float(rate):.0f} GFLOP/s (f32 1024^3 matmul, measured in this run) = {limit:.0f} tokens/s; "
          f"sam-brain {100 * a['tokens_per_second'] / limit:.0f}%, " + (f"sam-brain bf16 {100 * a16['tokens_per_second'] / limit:.0f}%, " if a16 else "") + f"mlx-lm {100 * b['tokens_per_second'] / limit:.0f}%")
    if a16 and rate16:
        limit16 = float(rate16) * 1e9 / flop
        print(f"{'':8} bf16 FLOP limit: at {float(rate16):.0f} GFLOP/s (the bridge's bf16-product kernel at 1024^3, this run) = {limit16:.0f} tokens/s; "
              f"sam-brain bf16 {100 * a16['tokens_per_second'] / limit16:.0f}%")
PY
done
