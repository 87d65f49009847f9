#!/usr/bin/env bash
# llama.cpp itself, as the GGUF-export tests run it: llama-cpp-python (pinned) in a virtual
# environment kept in the user's cache folder. It compiles llama.cpp from source (about ten minutes
# on 2 cores), so later runs reuse it. Idempotent and safe to run from several test processes at
# once. Prints the path of its python on the last line.
set -euo pipefail
root="${BRAIN_LLAMA_CPP_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sam-brain/llama-cpp-py}"
pins=("llama-cpp-python==0.3.36")
stamp="$root/.pins"
want="${pins[*]}"
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9
if [ ! -x "$root/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "llama-cpp-env: building $root (${pins[*]}; compiles llama.cpp, about ten minutes)" >&2
    rm -rf "$root"
    python3 -m venv "$root" >&2
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$root/bin/pip" install -q --disable-pip-version-check --no-cache-dir "${pins[@]}" >&2
    "$root/bin/python" -c "import llama_cpp" >&2
    echo "$want" > "$stamp"
fi
echo "$root/bin/python"
