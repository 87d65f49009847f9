#!/usr/bin/env bash
# Data-parallel training on this machine (2 cores), side by side in one run: `brain train` as one
# process and as two ranks of `brain launch -n 2` (MLX's ring over loopback), same model, data,
# seed and global batch — trained tokens/s of each (with 2 cores shared by 2 ranks this is a
# correctness figure, not a speed-up) — and the all-reduce of one update's gradients for the
# adapter of a Qwen2.5-1.5B-shaped model at rank 8 (q/k/v/o of 16 layers, mlx-lm's default
# depth: 1,245,184 f32 in 128 tensors; and of all 28 layers: 2,179,072 in 224).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p brain
cargo build -q --release -p brain-train --example allreduce_bench
brain="$PWD/target/release/brain"
bench="$PWD/target/release/examples/allreduce_bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
"$brain" model init-tiny model --hidden 256 --layers 4 --heads 4 --kv-heads 2 --intermediate 768 --tokenizer-vocab 1024 -q > /dev/null
python3 - <<'PY'
import json, os, random
random.seed(0)
words = "the build runs tests on every commit and the reviewer reads each diff before it lands".split()
os.makedirs("data", exist_ok=True)
for split, n in [("train", 64), ("valid", 8)]:
    with open(f"data/{split}.jsonl", "w") as f:
        for i in range(n):
            q = " ".join(random.choice(words) for _ in range(random.randint(8, 24)))
            a = " ".join(random.choice(words) for _ in range(random.randint(16, 48)))
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
PY
args=(train --model model --data data --iters 12 --batch-size 8 --seed 1 --learning-rate 1e-4 --steps-per-eval 1000 --no-register -q)
echo "| ranks | trained tokens | train seconds | tokens/s | final loss |"
echo "|---|---|---|---|---|"
"$brain" --json "${args[@]}" --adapter-path one > one.json
python3 -c "import json; r=json.load(open('one.json')); print(f\"| 1 | {r['trained_tokens']} | {r['train_seconds']:.2f} | {r['tokens_per_second']:.0f} | {r['final_train_loss']:.5f} |\")"
"$brain" launch -n 2 -q -- --json "${args[@]}" --adapter-path two | sed -n 's/^\[rank 0\] //p' > two.json
python3 -c "import json; r=json.load(open('two.json')); print(f\"| 2 | {r['trained_tokens']} | {r['train_seconds']:.2f} | {r['tokens_per_second']:.0f} | {r['final_train_loss']:.5f} |\")"
echo
echo "| gradients | ranks | one all_sum per tensor | flattened (what training does) |"
echo "|---|---|---|---|"
ports=$(python3 -c "
import socket
s=[socket.socket() for _ in range(2)]
[x.bind(('127.0.0.1',0)) for x in s]
print(' '.join(str(x.getsockname()[1]) for x in s))")
set -- $ports
echo "[[\"127.0.0.1:$1\"], [\"127.0.0.1:$2\"]]" > ring.json
for shape in "1245184 128" "2179072 224"; do
    set -- $shape
    MLX_RANK=1 MLX_HOSTFILE=ring.json "$bench" --floats "$1" --tensors "$2" --reps 30 &
    MLX_RANK=0 MLX_HOSTFILE=ring.json "$bench" --floats "$1" --tensors "$2" --reps 30
    wait
done
