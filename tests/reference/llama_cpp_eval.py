# llama.cpp side of tests/ship_gguf.rs, run in the llama-cpp-python environment
# (tests/llama-cpp-env.sh): loads each GGUF file with llama.cpp itself and reports
#   {NAME: {TYPE: {"n_vocab": int, "nll": float, "greedy": [int], "greedy_text": str}}}
# nll: mean next-token NLL over "ids" from llama.cpp's logits (f64 log-softmax);
# greedy: up to "max_tokens" tokens generated at temperature 0 after "prompt_ids", stopping at
# the model's end-of-generation tokens.
#
# argv[1]: {"models": [{"name", "files": {TYPE: PATH}, "ids": [int], "prompt_ids": [int], "max_tokens": int}]}

import json
import sys

import numpy as np
from llama_cpp import Llama, llama_cpp

spec = json.load(open(sys.argv[1]))
report = {}
for m in spec["models"]:
    out = {}
    for kind, path in m["files"].items():
        llm = Llama(path, n_ctx=512, logits_all=True, verbose=False, seed=0)
        ids = m["ids"]
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        nll = -float(np.mean([logp[t - 1, ids[t]] for t in range(1, len(ids))]))

        llm.reset()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        greedy = []
        for tok in llm.generate(m["prompt_ids"], top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                break
            greedy.append(int(tok))
            if len(greedy) >= m["max_tokens"]:
                break
        text = llm.detokenize(greedy).decode("utf-8", errors="replace")
        out[kind] = {"n_vocab": llm.n_vocab(), "nll": nll, "greedy": greedy, "greedy_text": text}
        llm.close()
    report[m["name"]] = out
print(json.dumps(report))
