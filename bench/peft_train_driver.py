"""LoRA training with PyTorch + PEFT on a GPU, set up as bench/train_mlxlm_driver.py sets up mlx-lm
(the baseline of bench/cuda_train.sh): mlx-lm's text format (each row's tokens, then eos, cut to
max_seq_length; inputs are tokens[:-1], targets tokens[1:], padding masked out), LoRA on the given
projections of the top NUM_LAYERS layers with rank R and scale S (lora_alpha = R * S), dropout 0,
AdamW at a constant learning rate, the model in its stored dtype (bfloat16) with adapters in
float32 (PEFT's default). Prints one JSON object: first-step loss, trained tokens/s over the steps
after the first SKIP (CUDA-synchronized), peak CUDA memory.

argv: MODEL_DIR DATA_DIR ITERS BATCH LR NUM_LAYERS MAX_SEQ SKIP RANK SCALE
"""
import json
import sys
import time

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, data_dir = sys.argv[1], sys.argv[2]
iters, batch, lr, num_layers, max_seq, skip = (int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]),
                                               int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]))
rank, scale = int(sys.argv[9]), float(sys.argv[10])

tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda()
n_layers = model.config.num_hidden_layers
config = LoraConfig(r=rank, lora_alpha=rank * scale, lora_dropout=0.0,
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                    layers_to_transform=list(range(n_layers - num_layers, n_layers)))
model = get_peft_model(model, config)
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)

rows = []
for line in open(f"{data_dir}/train.jsonl"):
    ids = tok.encode(json.loads(line)["text"])
    if ids[-1] != tok.eos_token_id:
        ids.append(tok.eos_token_id)
    rows.append(ids[:max_seq])


def batches():
    i = 0
    while True:
        chunk = [rows[(i + j) % len(rows)] for j in range(batch)]
        i += batch
        width = max(len(r) for r in chunk)
        x = torch.zeros(batch, width, dtype=torch.long)
        mask = torch.zeros(batch, width - 1)
        for j, r in enumerate(chunk):
            x[j, :len(r)] = torch.tensor(r)
            mask[j, :len(r) - 1] = 1
        yield x.cuda(), mask.cuda()


model.train()
data = batches()
first_loss, times, toks = None, [], []
for step in range(1, iters + 1):
    x, mask = next(data)
    torch.cuda.synchronize()
    t = time.perf_counter()
    logits = model(input_ids=x[:, :-1]).logits
    ce = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten(), reduction="none")
    ntoks = mask.sum()
    loss = (ce * mask.flatten()).sum() / ntoks
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss_value = loss.item()  # synchronizes
    dt = time.perf_counter() - t
    if first_loss is None:
        first_loss = loss_value
    if step > skip:
        times.append(dt)
        toks.append(int(ntoks.item()))
print(json.dumps({
    "tool": "peft",
    "first_loss": first_loss,
    "tokens_per_second": sum(toks) / sum(times),
    "steps_measured": len(times),
    "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
    "versions": {"torch": torch.__version__, "peft": __import__("peft").__version__},
}))
