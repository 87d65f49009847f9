# Reference side of tests/ship_gguf.rs, run in the pinned reference environment (gguf, mlx-lm):
# reads GGUF files with gguf-py's own reader (not brain's), and scores the fused Hugging Face
# directories with mlx-lm's own loader and model.
#
# argv[1]: a JSON spec {"models": [{"name", "fused": DIR, "files": {"f16": PATH, "q8_0": PATH, ...},
#                                   "ids": [int]}]}
# Prints one JSON object: {NAME: {"files": {TYPE: {"metadata": {key: value}, "tensors": {name:
#   {"shape": [ne0, ne1, ...] (ggml order), "type": "Q8_0"}}, "rel_err": {name: float},
#   "rope_freqs": [float] (when the file has rope_freqs.weight)}},
#   "mlx_nll": float, "llama3_rope_periods": [float] | null}}
# Large arrays (tokens, merges, token types) are reported whole: the models are tiny.
# rel_err: RMS of (dequantized tensor - the f16 file's tensor) over RMS of the f16 tensor.
# mlx_nll: mean next-token NLL of mlx-lm's model over ids (f32 log-softmax, f64 sum).
# llama3_rope_periods: the corrected rotary periods (1/frequency) of mlx-lm's Llama3RoPE for the
# fused config, when it asks for llama3 scaling.

import json
from pathlib import Path
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from mlx_lm.utils import load_model

spec = json.load(open(sys.argv[1]))


def plain(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


report = {}
for m in spec["models"]:
    files = {}
    values = {}
    for kind, path in m["files"].items():
        r = GGUFReader(path)
        meta = {k: plain(f.contents()) for k, f in r.fields.items() if not k.startswith("GGUF.")}
        tensors = {}
        vals = {}
        for t in r.tensors:
            tensors[t.name] = {"shape": [int(d) for d in t.shape], "type": t.tensor_type.name}
            vals[t.name] = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(-1)
        values[kind] = vals
        files[kind] = {"metadata": meta, "tensors": tensors}
        if "rope_freqs.weight" in vals:
            files[kind]["rope_freqs"] = [float(x) for x in vals["rope_freqs.weight"]]
    for kind, vals in values.items():
        ref = values["f16"]
        files[kind]["rel_err"] = {
            n: float(np.sqrt(np.mean((v - ref[n]) ** 2)) / max(np.sqrt(np.mean(ref[n] ** 2)), 1e-12)) for n, v in vals.items()
        }

    model, config = load_model(Path(m["fused"]), strict=True)
    ids = mx.array([m["ids"]], dtype=mx.int32)
    logp = nn.log_softmax(model(ids)[0].astype(mx.float32), axis=-1)
    n = len(m["ids"])
    rows = mx.arange(n - 1)
    cols = mx.array(m["ids"][1:])
    nll = -float(np.sum(np.array(logp[rows, cols], dtype=np.float64))) / (n - 1)

    periods = None
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) == "llama3":
        rope = model.model.layers[0].self_attn.rope
        periods = [float(x) for x in np.array(rope._freqs)]
    report[m["name"]] = {"files": files, "mlx_nll": nll, "llama3_rope_periods": periods}

print(json.dumps(report))
