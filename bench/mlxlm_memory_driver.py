"""One LoRA training step of mlx-lm (its own loader, LoRA conversion, dataset and
`tuner.trainer.train`) on one batch of MAX_LEN tokens; prints one JSON line with MLX's peak
memory and the step's seconds. For bench/real_shapes.sh.

argv: MODEL DATA_DIR MAX_LEN NUM_LAYERS GRAD_CHECKPOINT(0|1)
"""
import json, sys, time, types

import mlx.core as mx
import mlx.optimizers as optim
from mlx_lm.tuner.datasets import CacheDataset, load_dataset
from mlx_lm.tuner.trainer import TrainingArgs, train
from mlx_lm.tuner.utils import linear_to_lora_layers
from mlx_lm.utils import load

model_path, data, max_len, layers, gc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
model, tok = load(model_path)
model.freeze()
keys = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
linear_to_lora_layers(model, layers, {"rank": 8, "scale": 20.0, "dropout": 0.0, "keys": keys})
args = types.SimpleNamespace(data=data, train=True, test=False, hf_dataset=None, mask_prompt=False)
train_set, _, _ = load_dataset(args, tok)
mx.reset_peak_memory()
t0 = time.time()
train(model, optim.Adam(learning_rate=1e-5), CacheDataset(train_set), None,
      TrainingArgs(batch_size=1, iters=1, max_seq_length=max_len, grad_checkpoint=gc,
                   steps_per_report=1, steps_per_eval=10**9, steps_per_save=10**9,
                   adapter_file="/tmp/mlxlm-memory-adapters.safetensors"))
print(json.dumps({"tool": "mlx-lm", "max_len": max_len, "grad_checkpoint": gc,
                  "peak_memory_gb": mx.get_peak_memory() / 1e9, "seconds": time.time() - t0}))
