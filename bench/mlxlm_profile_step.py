"""Time the parts of one mlx-lm LoRA step, the counterpart of brain's profile_step example (same
synthetic (4, 91) batch, LoRA rank 8, scale 20 on q/k/v/o of every layer, AdamW at 1e-5 without
weight decay): forward (the loss), forward+backward (loss and gradients), the optimizer update,
each evaluated on its own, then the whole step compiled as mlx-lm's trainer compiles it (loss,
gradients and update in one `mx.compile`d function). On a GPU the model keeps its stored dtype;
on the CPU it is cast to float32, as brain computes there.

argv: MODEL [REPS]
"""
import sys
import time
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import linear_to_lora_layers
from mlx_lm.utils import load

model_dir = sys.argv[1]
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
model, _ = load(model_dir)
if mx.default_device() == mx.cpu:
    model.set_dtype(mx.float32)
model.freeze()
keys = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
linear_to_lora_layers(model, len(model.layers), {"rank": 8, "scale": 20.0, "dropout": 0.0, "keys": keys})
v = min(model.args.vocab_size, 1000)
ids = [(i * 7919) % v for i in range(4 * 92)]
batch = mx.array([ids[r * 92:(r + 1) * 92] for r in range(4)])
lengths = mx.array([[0, 91]] * 4)
opt = optim.AdamW(learning_rate=1e-5, weight_decay=0.0)
loss_and_grad = nn.value_and_grad(model, default_loss)
mx.eval(model.parameters())


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def forward():
    mx.eval(default_loss(model, batch, lengths)[0])


grads = None


def forward_backward():
    global grads
    (loss, _), grads = loss_and_grad(model, batch, lengths)
    mx.eval(loss, grads)


def update():
    opt.update(model, grads)
    mx.eval(model.trainable_parameters(), opt.state)


state = [model.state, opt.state]


@partial(mx.compile, inputs=state, outputs=state)
def step(batch, lengths):
    (loss, _), g = loss_and_grad(model, batch, lengths)
    opt.update(model, g)
    return loss


def compiled_step():
    mx.eval(step(batch, lengths), state)


parts = {"forward": forward, "forward+backward": forward_backward, "optimizer": update, "compiled step": compiled_step}
total = {k: 0.0 for k in parts}
for r in range(reps + 1):  # the first round warms up (and compiles)
    for name, f in parts.items():
        dt = timed(f)
        if r > 0:
            total[name] += dt
print(f"mlx-lm on {mx.default_device()}: " + ", ".join(f"{k} {1e3 * t / reps:.1f} ms" for k, t in total.items()))
