# Reference side of tests/arch_parity.rs: builds tiny random models with mlx-lm's own model classes,
# saves them as Hugging Face directories, reads each back with mlx-lm's loader, and reports the
# logits and per-token log-probs that loaded model gives. One process for every model.
#
# argv[1]: a JSON spec written by the test:
#   {"out": DIR, "tokenizer_dir": DIR, "forward_ids": [[int]], "seed": int,
#    "models": [{"name", "config": {HF config.json}, "variant": "no_rope_scaling" | "no_bias" | "no_qk_norm"}],
#    "sequences": {"chat": [{"tokens": [int], "mask": [bool]}], "text": [...]}}
# Writes OUT/NAME/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json}, then
# OUT/reference.safetensors ("NAME.logits": the loaded model's logits for forward_ids, "NAME.variant":
# the same weights with the variant's feature removed) and prints one JSON line:
#   {"NAME": {"keys": [saved names], "reload_err": float, "logit_std": float,
#             "nll": {"chat": [sum, count], "text": [sum, count]}}}
# nll: sum over positions t >= 1 with mask[t] of -log_softmax(logits)[t-1, tokens[t]], in f32 logits
# and f64 sums (not mlx-lm's evaluate(), which also counts a padding target per sequence).

import json
import shutil
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm.models import llama, qwen2, qwen3
from mlx_lm.utils import load_model

ARCH = {"llama": llama, "qwen2": qwen2, "qwen3": qwen3}

spec = json.load(open(sys.argv[1]))
out = Path(spec["out"])
tok_dir = Path(spec["tokenizer_dir"])
ids = mx.array(spec["forward_ids"], dtype=mx.int32)


def build(config):
    arch = ARCH[config["model_type"]]
    return arch.Model(arch.ModelArgs.from_dict(config))


def nll(model, seqs):
    total, count = 0.0, 0
    for s in seqs:
        toks, mask = s["tokens"], s["mask"]
        logp = nn.log_softmax(model(mx.array([toks], dtype=mx.int32))[0].astype(mx.float32), axis=-1)
        pos = [t for t in range(1, len(toks)) if mask[t]]
        if not pos:
            continue
        rows = mx.array([t - 1 for t in pos])
        cols = mx.array([toks[t] for t in pos])
        total += -mx.sum(logp[rows, cols]).item()
        count += len(pos)
    return [total, count]


arrays, report = {}, {}
for i, m in enumerate(spec["models"]):
    name, config = m["name"], m["config"]
    mx.random.seed(spec["seed"] + i)
    model = build(config)
    # Random weights with a usable range: every matrix and bias ~ N(0, 0.08^2); norms 1 + N(0, 0.1^2).
    params = [
        (k, (1.0 + 0.1 * mx.random.normal(v.shape)) if "norm" in k else 0.08 * mx.random.normal(v.shape))
        for k, v in tree_flatten(model.parameters())
    ]
    model.load_weights(params, strict=True)
    mx.eval(model.parameters())

    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(d / "model.safetensors"), weights)
    (d / "config.json").write_text(json.dumps(config, indent=2))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, d / f)

    # The reference is what mlx-lm's loader makes of the directory (config parsing, sanitize, strict
    # weight matching), checked against the model that wrote it.
    loaded, _ = load_model(d, strict=True)
    logits = loaded(ids).astype(mx.float32)
    direct = model(ids).astype(mx.float32)
    reload_err = (mx.linalg.norm(logits - direct) / mx.linalg.norm(direct)).item()
    arrays[f"{name}.logits"] = logits

    # The same weights with one feature taken away: the parity test must be able to tell.
    v = m["variant"]
    if v == "no_rope_scaling":
        variant = build({**config, "rope_scaling": None})
        variant.load_weights(list(weights.items()), strict=True)
    elif v == "no_bias":
        variant = build(config)
        variant.load_weights([(k, mx.zeros_like(a) if k.endswith(".bias") else a) for k, a in weights.items()], strict=True)
    elif v == "no_qk_norm":
        variant = build(config)
        variant.load_weights(list(weights.items()), strict=True)
        for layer in variant.model.layers:
            layer.self_attn.q_norm = nn.Identity()
            layer.self_attn.k_norm = nn.Identity()
    else:
        raise SystemExit(f"unknown variant {v}")
    arrays[f"{name}.variant"] = variant(ids).astype(mx.float32)

    report[name] = {
        "keys": sorted(weights),
        "reload_err": reload_err,
        "logit_std": mx.std(logits).item(),
        "nll": {k: nll(loaded, seqs) for k, seqs in spec["sequences"].items()},
    }

mx.save_safetensors(str(out / "reference.safetensors"), arrays)
print(json.dumps(report))
