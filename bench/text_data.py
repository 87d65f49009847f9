"""Write a text-format dataset of random words for the training benchmarks: train.jsonl,
valid.jsonl and test.jsonl ({"text": ...} rows) in DIR, valid and test 8 rows each.

argv: DIR SEED WORDS_PER_ROW TRAIN_ROWS same|distinct
("same": every training row is one text, so both tools' first batch is the same.)
"""
import json, os, random, sys

d, seed, n, rows, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
os.makedirs(d, exist_ok=True)
random.seed(seed)
words = ("the a model token loss train data value function return error test memory batch layer "
         "weight gradient step rate cosine warmup adapter rank scale matrix vector sum mean log exp "
         "we you it is was will can should code file line commit branch merge review quality").split()
para = lambda: " ".join(random.choice(words) for _ in range(n)).capitalize() + "."
if mode == "same":
    t = para()
    train = [t] * rows
else:
    train = [para() for _ in range(rows)]
open(f"{d}/train.jsonl", "w").writelines(json.dumps({"text": t}) + "\n" for t in train)
for name in ("valid", "test"):  # mlx-lm wants at least a batch of 4 of each
    open(f"{d}/{name}.jsonl", "w").writelines(json.dumps({"text": para()}) + "\n" for _ in range(8))
