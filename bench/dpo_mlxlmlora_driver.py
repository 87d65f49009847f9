"""Run mlx-lm-lora's DPO trainer (`python -m mlx_lm_lora.train --train-mode dpo`) with a callback
that records every report; print one JSON object: first-step loss, tokens/s and it/s over the
measured steps, MLX peak memory. Arguments: SKIP, then mlx-lm-lora's CLI flags.

mlx-lm-lora 5.10.2 stops on a CPU before training: `train_dpo` calls
`mx.set_wired_limit(mx.device_info()["max_recommended_working_set_size"])`, a key only Metal
devices report (KeyError on the CPU). This driver gives `device_info()` that key (0: no wired
limit, which is what the CPU has anyway); everything else is mlx-lm-lora's own code, including
its second full model as the reference, scored again on every step.
"""
import json, sys, time, types

import mlx.core as mx

_device_info = mx.device_info


def _device_info_with_wired_limit():
    d = dict(_device_info())
    d.setdefault("max_recommended_working_set_size", 0)
    return d


mx.device_info = _device_info_with_wired_limit

import yaml  # noqa: E402
from mlx_lm.tuner.callbacks import TrainingCallback  # noqa: E402
from mlx_lm_lora import train as T  # noqa: E402


class Recorder(TrainingCallback):
    def __init__(self):
        self.train, self.val = [], []

    def on_train_loss_report(self, info):
        self.train.append(info)

    def on_val_loss_report(self, info):
        self.val.append(info)


def main():
    skip = int(sys.argv[1])
    args = vars(T.build_parser().parse_args(sys.argv[2:]))
    if args.get("config"):
        with open(args["config"]) as f:
            for k, v in yaml.load(f, Loader=T.yaml_loader).items():
                if args.get(k) is None:
                    args[k] = v
    for k, v in T.CONFIG_DEFAULTS.items():
        if args.get(k) is None:
            args[k] = v
    args = types.SimpleNamespace(**args)
    rec = Recorder()
    t0 = time.time()
    T.run(args, rec)
    wall = time.time() - t0
    steps = [r for r in rec.train if r["iteration"] > skip]
    secs = sum(1.0 / r["iterations_per_second"] for r in steps)
    toks = sum(r["tokens_per_second"] / r["iterations_per_second"] for r in steps)
    print(json.dumps({
        "tool": "mlx-lm-lora",
        "first_loss": rec.train[0]["train_loss"],
        "tokens_per_second": toks / secs,
        "step_s": secs / len(steps),
        "steps_measured": len(steps),
        "peak_memory_gb": max(r["peak_memory"] for r in rec.train),
        "wall_s": wall,
    }))


if __name__ == "__main__":
    main()
