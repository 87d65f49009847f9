#!/usr/bin/env bash
# Collect → store throughput: `brain collect` (release build) over a synthetic git repository
# of COMMITS commits (default 10,000) made by tests/common/gen_repo.rs through `git fast-import`.
# Prints examples/s for a first collect into an empty store (best of RUNS, default 3) and the
# time of a second, incremental collect that finds nothing new; then the host's own pace with a
# source that costs nothing, and the store's share alone (host/examples/store_bench.rs:
# store_batch, wall and CPU time).
#
# With REPO set, also a real repository (e.g. a mirror of ripgrep): the CPU of `brain collect`
# over its history against `git log --no-merges -p --numstat` over the same commits (the floor
# for reading the same diffs), as a ratio (the target is at most 1.5).
#
#   bench/collect.sh            # 10,000 commits
#   COMMITS=50000 bench/collect.sh
#   REPO=~/src/ripgrep bench/collect.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COMMITS=${COMMITS:-10000}
RUNS=${RUNS:-3}
OUT=bench/out/collect
mkdir -p "$OUT"

cargo build --release -q -p brain --bin brain --example store_bench
BRAIN=$PWD/target/release/brain

rustc -O --edition 2021 tests/common/gen_repo.rs -o "$OUT/gen_repo"
repo=$PWD/$OUT/repo-$COMMITS
if [ ! -d "$repo" ]; then
    git init -q -b main "$repo"
    "$OUT/gen_repo" "$COMMITS" | git -C "$repo" fast-import --quiet
    # Packed as `git gc` packs real repositories (newest versions whole), as bench/plugin_call.sh.
    git -C "$repo" repack -adf -q
fi

cat > "$OUT/brain.toml" <<TOML
[store]
path = "brain.db"

[[source]]
name = "bench"
plugin = "git"
grants = { git = ["$repo"] }
config = { repos = ["$repo"] }

[plugins]
cache_dir = "cache"
TOML
cfg=$OUT/brain.toml
"$BRAIN" --config "$cfg" plugins info git > /dev/null   # compile once, into the cache

best=0
for i in $(seq "$RUNS"); do
    rm -f "$OUT"/brain.db "$OUT"/brain.db-wal "$OUT"/brain.db-shm
    # Wall time and CPU time (all threads, user + system) of the whole process.
    rate=$(python3 - "$BRAIN" "$cfg" "$OUT/report.json" <<'PY'
import json, resource, subprocess, sys, time
brain, cfg, out = sys.argv[1:4]
start = time.perf_counter()
with open(out, "w") as f:
    subprocess.run([brain, "--config", cfg, "-q", "collect", "--json"], stdout=f, check=True)
wall = time.perf_counter() - start
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = ru.ru_utime + ru.ru_stime
r = json.load(open(out))
n = r["sources"][0]["stored"]
print(f"{n / wall:.0f}", end="")
print(f"  run: {n} examples stored in {wall:.3f} s wall ({r['seconds']:.3f} s in collect, "
      f"{n / r['seconds']:.0f}/s), {cpu / n * 1e6:.0f} µs CPU per example", file=sys.stderr)
PY
)
    [ "$rate" -gt "$best" ] && best=$rate
done
start=$(date +%s.%N)
"$BRAIN" --config "$cfg" -q collect --json > "$OUT/report2.json"
end=$(date +%s.%N)
size=$(du -k "$OUT/brain.db" | cut -f1)
echo "collect → store, $COMMITS commits: best $best examples/s (wall, whole process, best of $RUNS)"
python3 -c "import sys; print(f'incremental collect (nothing new): {float(sys.argv[2]) - float(sys.argv[1]):.3f} s')" "$start" "$end"
echo "store size: ${size} KiB"

# The floor set by reading the history itself: C git over the same commits (one core). 50,000
# examples/s on 2 cores leaves 40 µs of CPU per example for everything (git, plugin, curation,
# store); git's own line counts alone cost more than that here.
python3 - "$repo" "$COMMITS" <<'PY'
import resource, subprocess, sys, time
repo, n = sys.argv[1], int(sys.argv[2])
for label, args in [("names only (--name-status)", ["--name-status"]),
                    ("line counts (--numstat)", ["--numstat"]),
                    ("line counts + patches (-p --stat)", ["-p", "--stat"])]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["git", "-C", repo, "log", "--no-merges", *args], stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"reference: git log {label}: {n / wall:.0f} commits/s wall, {cpu / n * 1e6:.0f} µs CPU per commit")
PY

# The host's own pace: a source that costs nothing (tests/fault-plugins' healthy-source, built as
# bench/plugin_call.sh builds it), FAST examples (default 200,000) through curation into a store.
FAST=${FAST:-200000}
plugins=${CARGO_TARGET_DIR:-target}/bench-plugins
env -u CARGO_TARGET_DIR RUSTFLAGS= CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=true \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 cargo build -q --release --locked --target wasm32-wasip2 \
    --manifest-path tests/fault-plugins/Cargo.toml --target-dir "$plugins" -p healthy-source
cat > "$OUT/fast.toml" <<TOML
[store]
path = "fast.db"

[[source]]
name = "fast"
plugin = "$PWD/$plugins/wasm32-wasip2/release/healthy_source.wasm"
config = { count = $FAST }

[plugins]
cache_dir = "cache"
TOML
rm -f "$OUT"/fast.db "$OUT"/fast.db-wal "$OUT"/fast.db-shm
"$BRAIN" --config "$OUT/fast.toml" -q collect --json > "$OUT/fast.json"
python3 - "$OUT/fast.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["sources"][0]
print(f"collect → store, a source that costs nothing: {s['stored']} examples in {r['seconds']:.2f} s, "
      f"{s['stored'] / r['seconds']:.0f} examples/s (curation + store into a growing store)")
PY

echo
echo "the store alone (Store::store_batch, batches of 256, 20,000 git-like examples):"
target/release/examples/store_bench 20000

if [ -n "${REPO:-}" ]; then
    real=$(cd "$REPO" && pwd)
    cat > "$OUT/real.toml" <<TOML
[store]
path = "real.db"

[[source]]
name = "real"
plugin = "git"
grants = { git = ["$real"] }
config = { repos = ["$real"] }

[plugins]
cache_dir = "cache"
TOML
    echo
    python3 - "$BRAIN" "$OUT/real.toml" "$real" "$OUT" <<'PY'
import json, os, resource, subprocess, sys
brain, cfg, repo, out = sys.argv[1:5]

def cpu_of(cmd, **kw):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

def collect():
    for f in ("real.db", "real.db-wal", "real.db-shm"):
        if os.path.exists(os.path.join(out, f)):
            os.remove(os.path.join(out, f))
    with open(os.path.join(out, "real.json"), "w") as f:
        return cpu_of([brain, "--config", cfg, "-q", "collect", "--json"], stdout=f)

ours = min(collect() for _ in range(3))
stored = json.load(open(os.path.join(out, "real.json")))["sources"][0]["stored"]
commits = int(subprocess.run(["git", "-C", repo, "rev-list", "--no-merges", "--count", "HEAD"], capture_output=True, text=True, check=True).stdout)
git = min(cpu_of(["git", "-C", repo, "log", "--no-merges", "-p", "--numstat", "HEAD"], stdout=subprocess.DEVNULL) for _ in range(3))
print(f"real repository {repo}: {commits} commits (no merges), {stored} examples stored")
print(f"  brain collect: {ours:.2f} s CPU; git log -p --numstat: {git:.2f} s CPU; ratio {ours / git:.2f} (best of 3 each)")
PY
fi
