"""Make real-architecture models with random weights in mlx-community's 4-bit layout, for the
speed and memory benchmarks (bench/real_shapes.sh): mlx-lm's own model classes build them
(Qwen2.5-1.5B's and Qwen3-0.6B's published shapes, 151,936-row vocabulary, tied embeddings),
weights ~ N(0, 0.02) in bfloat16 (norms 1), quantized by mlx-lm's `nn.quantize` (group 64,
4 bits, as mlx-community's -4bit repositories), saved as a Hugging Face directory with the real
Qwen3 tokenizer (same vocabulary as Qwen2.5).

argv: OUT_DIR TOKENIZER_DIR NAME... (names: qwen2.5-1.5b, qwen3-0.6b)
"""
import json
import shutil
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map_with_path
from mlx_lm.models import qwen2, qwen3

# The published shapes (bench/shapes.json, shared with bench/make_hf_shapes.py).
SHAPES = {name: (qwen2 if name.startswith("qwen2") else qwen3, config)
          for name, config in json.loads((Path(__file__).parent / "shapes.json").read_text()).items()
          if name.startswith("qwen")}

out, tok = Path(sys.argv[1]), Path(sys.argv[2])
for name in sys.argv[3:]:
    arch, config = SHAPES[name]
    d = out / f"{name}-4bit"
    if (d / "model.safetensors").exists():
        continue
    d.mkdir(parents=True, exist_ok=True)
    mx.random.seed(0)
    model = arch.Model(arch.ModelArgs.from_dict(config))

    def init(path, p):
        if "norm" in path:
            return mx.ones(p.shape, dtype=mx.bfloat16)
        return (0.02 * mx.random.normal(p.shape)).astype(mx.bfloat16)

    model.update(tree_map_with_path(init, model.parameters()))
    nn.quantize(model, group_size=64, bits=4)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(d / "model.safetensors"), weights, metadata={"format": "mlx"})
    config = dict(config, torch_dtype="bfloat16", quantization={"group_size": 64, "bits": 4})
    (d / "config.json").write_text(json.dumps(config, indent=2))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok / f, d / f)
    print(f"{d}: {len(weights)} tensors, {(d / 'model.safetensors').stat().st_size / 1e9:.2f} GB")
