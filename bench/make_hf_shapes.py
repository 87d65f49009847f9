"""Make real-architecture models with random weights in bfloat16 as plain Hugging Face
directories, for the GPU training benchmark (bench/cuda_train.sh) that all three tools read:
transformers builds each shape of bench/shapes.json (its own initialization: N(0, 0.02), norms 1)
and saves it; config.json is then written from shapes.json itself, so every tool reads the same
keys (transformers 5 would move rope_theta into rope_parameters). The tokenizer files come from
TOKENIZER_DIR (for the Qwen shapes the real Qwen3 tokenizer, for SmolLM2 its own).

argv: OUT_DIR NAME=TOKENIZER_DIR...   (names: smollm2-135m, qwen2.5-1.5b, qwen3-0.6b)
"""
import json
import shutil
import sys
from pathlib import Path

SHAPES = json.loads((Path(__file__).parent / "shapes.json").read_text())

out = Path(sys.argv[1])
for arg in sys.argv[2:]:
    name, tok = arg.split("=", 1)
    d = out / f"{name}-bf16"
    if (d / "model.safetensors").exists():
        continue
    import torch  # only when a model is made: an existing directory needs neither
    from transformers import AutoConfig, AutoModelForCausalLM

    d.mkdir(parents=True, exist_ok=True)
    config = dict(SHAPES[name], torch_dtype="bfloat16")
    (d / "config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # initializing 1.5B on a CPU takes a while
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(d)).to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True)
    (d / "config.json").write_text(json.dumps(config, indent=2))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(tok) / f, d / f)
    n = sum(p.numel() for p in model.parameters())
    print(f"{d}: {n / 1e6:.1f} M parameters, {(d / 'model.safetensors').stat().st_size / 1e9:.2f} GB")
