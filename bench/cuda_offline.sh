#!/usr/bin/env bash
# bench/cuda_train.sh on a GPU machine that reaches no network and receives files in pieces (as
# the device machines this project is lent: at most 64 MiB carried per call, and a machine kept
# warm only ~30 s between calls, so its /tmp survives from one call to the next only back to back).
#
#   here:   bash bench/cuda_offline.sh pack    # writes .cuda-offline/part1 and part2 (< 60 MB each)
#   there:  bash bench/cuda_offline.sh stash   # call 1, carrying .cuda-offline/part1: keeps it in
#                                              # /tmp and makes the models (torch, transformers)
#           bash bench/cuda_offline.sh run     # call 2 right after, carrying .cuda-offline/part2:
#                                              # unpacks MLX's CUDA build and runs cuda_train.sh
#
# pack downloads MLX's CUDA wheel (mlx-cuda-13, ~90 MB: its libmlx is stripped of symbols), the
# mlx wheel for the device's Python (CUDA_PY, 3.12) and mlx-lm, builds the MLX bridge against
# the CUDA wheel's headers and brain's train and profile_step examples (release), and packs them
# with the SmolLM2 and Qwen tokenizers (run `SMOLLM2=1 bash bench/train_vs_mlxlm.sh` once first
# for SmolLM2's). The device needs python3 with torch, transformers and peft, and the nvidia-*
# CUDA libraries in that Python's site-packages (MLX's libmlx finds them beside it).
#
# run takes cuda_train.sh's environment (MODELS, TOOLS, ITERS, SKIP, REPEAT, LIMIT) and BUDGET
# (seconds for cuda_train.sh, 450); PROFILE=1 then times one step's parts of each model, brain's
# (the profile_step example, eager and compiled) beside mlx-lm's (bench/mlxlm_profile_step.py);
# results and logs go to $OUT (the device's returned folder;
# bench/out/cuda-offline elsewhere) every few seconds, so a run cut short still returns them.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:?usage: bench/cuda_offline.sh pack|stash|run}
HERE=.cuda-offline
TMP=/tmp/cuda-offline
MLX_VERSION=0.32.4
MLXLM_VERSION=0.32.2

case "$WHAT" in
pack)
    CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sam-brain/cuda-offline"
    PY=${CUDA_PY:-3.12}
    mkdir -p "$CACHE/wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY" \
        --platform manylinux_2_35_x86_64 -d "$CACHE/wheels" \
        "mlx==$MLX_VERSION" "mlx-cuda-13==$MLX_VERSION" "mlx-lm==$MLXLM_VERSION"
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/site" "$stage/bin" "$stage/tok/smollm2" "$stage/tok/qwen"
    for w in "$CACHE"/wheels/*.whl; do unzip -q -o "$w" -d "$stage/site"; done
    strip --strip-unneeded "$stage/site/mlx/lib/libmlx.so"
    # The bridge against the CUDA build's headers and library (as host/mlx/build.rs compiles it).
    g++ -std=c++20 -O3 -fPIC -shared host/mlx/src/bridge*.cpp -I"$stage/site/mlx/include" \
        -L"$stage/site/mlx/lib" -lmlx -Wl,--no-undefined -lpthread -ldl -o "$stage/bin/libbrain_mlx_bridge.so"
    cargo build --release -q -p brain-train --example train --example profile_step
    for x in train profile_step; do strip -o "$stage/bin/$x" "target/release/examples/$x"; done
    smol=${SMOLLM2_TOK:-bench/out/train/model-smollm2}
    qwen=${QWEN_TOK:-$(bash bench/qwen_tokenizer.sh)}
    for f in tokenizer.json tokenizer_config.json; do
        cp "$smol/$f" "$stage/tok/smollm2/" || { echo "no SmolLM2 tokenizer in $smol: run SMOLLM2=1 bash bench/train_vs_mlxlm.sh once, or set SMOLLM2_TOK"; exit 1; }
        cp "$qwen/$f" "$stage/tok/qwen/"
    done
    rm -rf "$HERE" && mkdir -p "$HERE/part1" "$HERE/part2"
    tar cJf "$HERE/part1/tok.tar.xz" -C "$stage" tok
    tar cf - -C "$stage" site bin | xz -T0 -6 > "$stage/payload.tar.xz"
    split -b 58000000 -d "$stage/payload.tar.xz" "$stage/payload."
    mv "$stage/payload.00" "$HERE/part1/"
    mv "$stage"/payload.0[1-9] "$HERE/part2/"
    du -sh "$HERE"/part*
    ;;
stash)
    mkdir -p "$TMP/stash" "$TMP/data"
    cp "$HERE"/part1/payload.* "$TMP/stash/"
    tar xJf "$HERE/part1/tok.tar.xz" -C "$TMP"
    python3 bench/text_data.py "$TMP/data/data" 0 160 64 same
    shapes=()
    for m in ${MODELS:-"smollm2-135m qwen2.5-1.5b"}; do
        case "$m" in smollm2*) shapes+=("${m%-4bit}=$TMP/tok/smollm2") ;; *) shapes+=("${m%-4bit}=$TMP/tok/qwen") ;; esac
    done
    python3 bench/make_hf_shapes.py "$TMP/data" "${shapes[@]}"
    ;;
run)
    ls "$TMP"/stash/payload.* > /dev/null || { echo "nothing stashed in $TMP: run 'stash' in the call just before"; exit 3; }
    mkdir -p "$TMP/unpacked"
    cat "$TMP"/stash/payload.* "$HERE"/part2/payload.* | xz -d -T0 | tar xf - -C "$TMP/unpacked"
    ln -sfn "$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])')" "$TMP/unpacked/site/nvidia"
    export PYTHONPATH=$TMP/unpacked/site LD_LIBRARY_PATH=$TMP/unpacked/site/mlx/lib PYTHONUNBUFFERED=1
    export CUDA_OUT=$TMP/data PY=python3 TRAIN=$TMP/unpacked/bin/train SMOLLM2_TOK=$TMP/tok/smollm2 QWEN_TOK=$TMP/tok/qwen
    dest=${OUT:-bench/out/cuda-offline}
    mkdir -p "$dest"
    ( while sleep 4; do cp "$TMP"/data/*.json "$TMP"/data/*.log "$dest"/ 2> /dev/null || true; done ) > /dev/null 2>&1 &
    copier=$!
    timeout "${BUDGET:-450}" bash bench/cuda_train.sh run || echo "cuda_train.sh stopped (rc $?)"
    if [ -n "${PROFILE:-}" ]; then
        # One step's parts, brain (eager, compiled) and mlx-lm (eager parts, compiled step).
        for m in ${MODELS:-"smollm2-135m qwen2.5-1.5b"}; do
            dir=$TMP/data/${m%-4bit}-bf16
            for mode in "" compiled; do timeout 120 "$TMP/unpacked/bin/profile_step" "$dir" 10 auto $mode 2>&1 | tail -1 | tee -a "$dest/profile-$m.txt"; done
            timeout 180 python3 bench/mlxlm_profile_step.py "$dir" 10 2>&1 | tail -1 | tee -a "$dest/profile-$m.txt"
        done
    fi
    kill "$copier"
    cp "$TMP"/data/*.json "$TMP"/data/*.log "$dest"/ 2> /dev/null || true
    bash bench/cuda_train.sh table
    ;;
*)
    echo "usage: bench/cuda_offline.sh pack|stash|run" >&2
    exit 2
    ;;
esac
