"""Write the graph of one mlx-lm LoRA step's loss and gradients, unevaluated, as Graphviz DOT
(the counterpart of brain's step_graph example, for bench/step_graph.sh): mlx-lm's own loading,
LoRA conversion and loss (`default_loss`), the model cast to bfloat16, LoRA rank 8 on q/k/v/o of
the top LAYERS layers, the same synthetic (4, 91) batch.

argv: MODEL LAYERS OUT.dot
"""
import sys

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import linear_to_lora_layers
from mlx_lm.utils import load

model_dir, layers, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
model, _ = load(model_dir)
model.set_dtype(mx.bfloat16)
model.freeze()
keys = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
linear_to_lora_layers(model, layers, {"rank": 8, "scale": 20.0, "dropout": 0.0, "keys": keys})
v = min(model.args.vocab_size, 1000)
ids = [(i * 7919) % v for i in range(4 * 92)]
batch = mx.array([ids[r * 92:(r + 1) * 92] for r in range(4)])
lengths = mx.array([[0, 91]] * 4)
(loss, _), grads = nn.value_and_grad(model, default_loss)(model, batch, lengths)
leaves = [g for _, g in tree_flatten(grads)]
mx.export_to_dot(out, loss, *leaves)
print(f"{out}: {len(leaves)} gradients")
