#!/usr/bin/env bash
# The pinned reference environment the parity tests compare brain with: mlx-lm (its model classes
# and per-token log-probs), transformers (apply_chat_template), gguf (GGUF files). Kept in the user's
# cache folder so later runs reuse it; idempotent and safe to run from several test processes at once.
# Prints the path of its python on the last line.
set -euo pipefail
root="${BRAIN_REFERENCE_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sam-brain/reference-py}"
exec bash "$(dirname "$0")/pinned-venv.sh" "$root" "mlx_lm, transformers, gguf" \
    "mlx[cpu]==0.32.4" "mlx-lm==0.32.2" "transformers==5.24.0" "gguf==0.19.0"
