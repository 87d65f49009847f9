"""The Python tools people would otherwise run, on the corpus curate_bench wrote:
detect-secrets 1.5.0 on the detect-secrets slice, datasketch 1.6.5 MinHashLSH on the whole corpus.
Prints their figures beside ours (ours.json) and the ratios.

python3 bench/curate_compare.py OUT_DIR    (DS_DOCS=N limits datasketch to the first N docs)
"""
import json
import os
import re
import sys
import time

out = sys.argv[1]
ours = json.load(open(os.path.join(out, "ours.json")))

# --- secrets -------------------------------------------------------------------------------
from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

raw_path = os.path.join(out, "ds_raw.txt")
raw = open(raw_path, encoding="utf-8").read()
# The slice is its documents joined by newlines; ours is the same documents, scrubbed.
scrubbed_docs = json.load(open(os.path.join(out, "ds_scrubbed.json"), encoding="utf-8"))
truth = json.load(open(os.path.join(out, "ds_truth.json")))

t = time.perf_counter()
collection = SecretsCollection()
with default_settings():
    collection.scan_file(raw_path)
ds_secs = time.perf_counter() - t
findings = [(s.line_number, s.type, s.secret_value) for _, s in collection]

line_starts = [0]
for i, ch in enumerate(raw):
    if ch == "\n":
        line_starts.append(i + 1)


def line_of(pos):
    lo, hi = 0, len(line_starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if line_starts[mid] <= pos:
            lo = mid
        else:
            hi = mid - 1
    return lo + 1


spans = []
for p in truth:
    pos = raw.find(p["secret"])
    spans.append((line_of(pos), line_of(pos + len(p["secret"])), p))
doc_of_line = []
for d, doc in enumerate(json.loads("[" + ",".join(l for l in open(os.path.join(out, "corpus.jsonl"), encoding="utf-8").read().splitlines()[:len(scrubbed_docs)]) + "]")):
    doc_of_line.extend([d] * (doc.count("\n") + 1))
finding_lines = {f[0] for f in findings}
ds_found = sum(1 for a, b, _ in spans if any(l in finding_lines for l in range(a, b + 1)))
ours_found = sum(1 for a, _, p in spans if p["secret"] not in scrubbed_docs[doc_of_line[a - 1]])
planted_lines = {l for a, b, _ in spans for l in range(a, b + 1)}
# A finding is left when its value is still in our scrubbed version of the same document.
left = [f for f in findings if f[2] and f[2] in scrubbed_docs[doc_of_line[f[0] - 1]]]
left_planted = [f for f in left if f[0] in planted_lines]
mb = os.path.getsize(raw_path) / 1e6
ours_slice_mb_s = ours["slice_mb"] / ours["slice_scrub_s"]
print(f"detect-secrets 1.5.0: {mb:.2f} MB, {len(line_starts)} lines in {ds_secs:.1f} s = {mb / ds_secs:.3f} MB/s; "
      f"{len(findings)} findings; planted secrets found: {ds_found} of {len(truth)}")
print(f"ours (1 core):        same slice in {ours['slice_scrub_s'] * 1e3:.1f} ms = {ours_slice_mb_s:.1f} MB/s; "
      f"planted secrets redacted: {ours_found} of {len(truth)}")
print(f"  speed ratio ours / detect-secrets: {ours_slice_mb_s / (mb / ds_secs):,.0f}x")
print(f"  detect-secrets findings left unredacted by us: {len(left)} ({len(left_planted)} on planted-secret lines)")
for line, kind, value in left[:12]:
    shown = value if len(value) <= 60 else value[:57] + "..."
    print(f"    line {line}: {kind}: {shown!r}  <- {raw.splitlines()[line - 1][:70]!r}")

# --- near duplicates -----------------------------------------------------------------------
from datasketch import MinHash, MinHashLSH

docs = [json.loads(l) for l in open(os.path.join(out, "corpus.jsonl"), encoding="utf-8")]
n = min(int(os.environ.get("DS_DOCS", len(docs))), len(docs))
pairs = [tuple(map(int, l.split())) for l in open(os.path.join(out, "dup_pairs.txt")) if l.strip()]
copy_of = {c: o for c, o in pairs if c < n}
word = re.compile(r"[^\W_]+")
t = time.perf_counter()
lsh = MinHashLSH(threshold=0.7, num_perm=112, params=(14, 8))
hits, flagged, other = 0, 0, 0
for i, d in enumerate(docs[:n]):
    words = word.findall(d.lower())
    if len(words) >= 5:
        shingles = [" ".join(words[k:k + 5]).encode() for k in range(len(words) - 4)]
    else:
        shingles = [" ".join(words).encode()] if words else []
    m = MinHash(num_perm=112)
    m.update_batch(shingles)
    found = lsh.query(m)
    flagged += len(found)
    if i in copy_of and copy_of[i] in found:
        hits += 1
    other += sum(1 for f in found if copy_of.get(i) != f)
    lsh.insert(i, m)
ds_secs = time.perf_counter() - t
ds_rate = n / ds_secs
print(f"datasketch 1.6.5 MinHashLSH(112 perms, 14x8): {n} docs in {ds_secs:.1f} s = {ds_rate:,.0f} docs/s; "
      f"copies found {hits} of {len(copy_of)}; other pairs flagged {other}")
for layouts in (1, 2):
    rate = ours[f"neardup_layouts{layouts}_docs_per_s"]
    print(f"ours, {layouts} layout{'s' if layouts > 1 else ''} (1 core): {ours['docs']} docs at {rate:,.0f} docs/s "
          f"({rate / ds_rate:.1f}x); copies found {ours[f'neardup_layouts{layouts}_found']} of {ours['copies']}; "
          f"other pairs flagged {ours[f'neardup_layouts{layouts}_other_pairs']}")
if n < len(docs):
    print(f"  (datasketch ran on the first {n} docs only: DS_DOCS)")
