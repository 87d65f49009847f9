#!/usr/bin/env bash
# A virtual environment with pinned packages, kept at ROOT so later runs reuse it: made (or remade
# when the pins change) under a lock, so several test processes may ask at once. Prints the path of
# its python on the last line. Used by reference-env.sh and llama-cpp-env.sh.
#   pinned-venv.sh ROOT "module, module" PIN...   (the modules are imported as a check)
set -euo pipefail
root="$1"
imports="$2"
shift 2
# PINNED_VENV_TAG: how it was built, beside the pins (a change remakes it).
want="$*${PINNED_VENV_TAG:+ ($PINNED_VENV_TAG)}"
stamp="$root/.pins"
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9
if [ ! -x "$root/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "$(basename "$root"): creating $root ($want)" >&2
    rm -rf "$root"
    python3 -m venv "$root" >&2
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$root/bin/pip" install -q --disable-pip-version-check --no-cache-dir "$@" >&2
    "$root/bin/python" -c "import $imports" >&2
    echo "$want" > "$stamp"
fi
echo "$root/bin/python"
