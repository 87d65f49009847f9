"""The Python tools people would otherwise run, on the corpora the examples wrote:
detect-secrets 1.5.0 on the secrets corpus (scrub_corpus: recall per family, false flags on the
look-alikes, MB/s) and on the generated slice, datasketch 1.6.5 MinHashLSH on the whole generated
corpus. Prints their figures beside ours and the ratios. detect-secrets is timed warm, as ours is:
its plugins are loaded and run once on a small file before the timed scans.

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



def ds_scan(path):
    """Findings of detect-secrets' default plugins in one file, and the seconds the scan took."""
    collection = SecretsCollection()
    t = time.perf_counter()
    with default_settings():
        collection.scan_file(path)
    return [(s.line_number, s.type, s.secret_value) for _, s in collection], time.perf_counter() - t


# Warm-up: imports, plugin initialisation and regex compilation happen here, not in the timings.
warm = os.path.join(out, "ds_warmup.txt")
with open(warm, "w", encoding="utf-8") as f:
    f.write('password = "hunter2xyz"\nAKIAZZZZZZZZZZZZZZZZ\n')
ds_scan(warm)

# --- the secrets corpus ---------------------------------------------------------------------
sec = os.path.join(out, "secrets")
index = json.load(open(os.path.join(sec, "index.json")))
pos_findings, pos_s = ds_scan(os.path.join(sec, "positives.txt"))
neg_findings, neg_s = ds_scan(os.path.join(sec, "negatives.txt"))


def hit(findings, case):
    return any(case["first"] <= line <= case["last"] for line, _, _ in findings)


fams = {}
for c in index["positives"]:
    f = fams.setdefault(c["family"], [0, 0, 0])
    f[0] += c["ours"]
    f[1] += hit(pos_findings, c)
    f[2] += 1
n_pos, n_neg = len(index["positives"]), len(index["negatives"])
ours_found = sum(f[0] for f in fams.values())
ds_found = sum(f[1] for f in fams.values())
ours_touched = sum(c["ours"] for c in index["negatives"])
ds_touched = sum(hit(neg_findings, c) for c in index["negatives"])
ds_mb_s = index["mb"] / (pos_s + neg_s)
print(f"secrets corpus: {n_pos} secrets, {n_neg} look-alikes, {index['mb']:.3f} MB")
print(f"{'family':<20} {'ours':>12} {'detect-secrets':>16}")
for fam, (o_, d_, t_) in sorted(fams.items()):
    print(f"{fam:<20} {o_:>4}/{t_:<3} {100 * o_ / t_:5.1f}% {d_:>6}/{t_:<3} {100 * d_ / t_:5.1f}%")
print(f"{'recall':<20} {ours_found:>4}/{n_pos:<3} {100 * ours_found / n_pos:5.1f}% {ds_found:>6}/{n_pos:<3} {100 * ds_found / n_pos:5.1f}%")
print(f"{'false redaction':<20} {ours_touched:>4}/{n_neg:<3} {100 * ours_touched / n_neg:5.1f}% {ds_touched:>6}/{n_neg:<3} {100 * ds_touched / n_neg:5.1f}%")
print(f"{'MB/s (1 core, warm)':<20} {index['ours_mb_per_s']:>12.1f} {ds_mb_s:>16.3f}   ours / detect-secrets: {index['ours_mb_per_s'] / ds_mb_s:,.0f}x")
print()

# --- the generated slice --------------------------------------------------------------------
findings, ds_secs = ds_scan(raw_path)

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
print(f"detect-secrets 1.5.0 (warm): {mb:.2f} MB, {len(line_starts)} lines in {ds_secs:.1f} s = {mb / ds_secs:.3f} MB/s; "
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
