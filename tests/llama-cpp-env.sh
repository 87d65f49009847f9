#!/usr/bin/env bash
# llama.cpp itself, as the GGUF-export tests run it: llama-cpp-python (pinned) in a virtual
# environment kept in the user's cache folder. It compiles llama.cpp from source (about ten minutes
# on 2 cores), so later runs reuse it. Idempotent and safe to run from several test processes at
# once. Prints the path of its python on the last line.
set -euo pipefail
root="${BRAIN_LLAMA_CPP_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sam-brain/llama-cpp-py}"
# Without AMX: some virtual machines advertise Intel's AMX tiles but trap them, and llama.cpp built
# with -march=native then dies of SIGILL in its AMX kernels (seen on a Sapphire Rapids VM). The
# tests need llama.cpp's results, not its speed; the tag remakes an environment built with them.
if [ "$(uname -m)" = x86_64 ]; then
    no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    export CFLAGS="${CFLAGS:-} $no_amx" CXXFLAGS="${CXXFLAGS:-} $no_amx" PINNED_VENV_TAG="built without AMX"
fi
exec bash "$(dirname "$0")/pinned-venv.sh" "$root" "llama_cpp" "llama-cpp-python==0.3.36"
