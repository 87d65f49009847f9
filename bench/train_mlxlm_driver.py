"""Run mlx-lm's LoRA trainer (the code path of `python -m mlx_lm lora --train`) with a callback
that records every report, then print one JSON object: first-step loss, validation loss before
training, tokens/s over the measured steps, MLX peak memory. Arguments: mlx-lm's CLI flags.

Only the argument handling of `mlx_lm.lora.main`/`run` is repeated here, because `run` replaces
any callback it is given; loading, data, LoRA conversion and training are mlx-lm's own functions.
"""
import json, sys, time, types

import mlx.core as mx
import numpy as np
import yaml
from mlx_lm import lora as L
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.tuner.datasets import load_dataset
from mlx_lm.utils import load


class Recorder(TrainingCallback):
    def __init__(self):
        self.train, self.val = [], []

    def on_train_loss_report(self, info):
        info["cpu"] = time.process_time()
        self.train.append(info)

    def on_val_loss_report(self, info):
        self.val.append(info)


def main():
    skip = int(sys.argv[1])  # warm-up steps left out of tokens/s
    args = vars(L.build_parser().parse_args(sys.argv[2:]))
    if args.get("config"):
        with open(args["config"]) as f:
            for k, v in yaml.load(f, L.yaml_loader).items():
                if args.get(k) is None:
                    args[k] = v
    for k, v in L.CONFIG_DEFAULTS.items():
        if args.get(k) is None:
            args[k] = v
    args = types.SimpleNamespace(**args)
    np.random.seed(args.seed)
    model, tok = load(args.model)
    train_set, valid_set, _ = load_dataset(args, tok)
    rec = Recorder()
    t0 = time.time()
    L.train_model(args, model, train_set, valid_set, rec)
    wall = time.time() - t0
    steps = [r for r in rec.train if r["iteration"] > skip]
    toks = sum(r["tokens_per_second"] / r["iterations_per_second"] for r in steps)  # tokens per step
    secs = sum(1.0 / r["iterations_per_second"] for r in steps)
    print(json.dumps({
        "tool": "mlx-lm",
        "first_loss": rec.train[0]["train_loss"],
        "val_loss_before": rec.val[0]["val_loss"] if rec.val else None,
        "tokens_per_second": toks / secs,
        "tokens_per_cpu_second": toks / (rec.train[-1]["cpu"] - next(r["cpu"] for r in rec.train if r["iteration"] == skip)),
        "steps_measured": len(steps),
        "peak_memory_gb": max(r["peak_memory"] for r in rec.train),
        "wall_s": wall,
    }))


if __name__ == "__main__":
    main()
