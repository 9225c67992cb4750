#!/usr/bin/env bash
# The decoding-speed grid on a GPU, in one short run (batch 1 and batched, fp32 and bf16,
# for the trained AR and GLAT models), plus test2016 BLEU in both precisions as a sanity check.
#
#   bash benchmarks/gpu_bench.sh pack AR_DIR NAT_DIR   # here: half-size copies into .gpu/
#   bash benchmarks/gpu_bench.sh run OUT_DIR            # on the GPU machine, from the repo root
#   DEVICE=cpu LIMIT=8 TEST=/tmp/x/tiny bash benchmarks/gpu_bench.sh run /tmp/x   # dry run here
#       (TEST names a .de/.en pair; the default is the packed test2016)
#
# Why pack: only .gpu/ (models and test set) has to be copied to the GPU host with the source
# tree, and two fp32 checkpoints are 46 MB each; stored as fp16 they are half that (speed does
# not depend on the weights' values, and the BLEU printed here shows what the rounding costs).
# `run` needs only python3 with torch, sentencepiece, sacrebleu, pyyaml and tqdm: no install.
set -euo pipefail
PACK=.gpu
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-500}
TEST=${TEST:-$PACK/test2016}

pack_model() {  # NAME SOURCE_DIR: an fp16 copy of SOURCE_DIR/best.pt and its tokenizer
    mkdir -p "$PACK/$1"
    python -m paragen.cli average-checkpoints --inputs "$2/best.pt" --dtype fp16 \
        --output "$PACK/$1/best.pt"
    cp "$2/tokenizer.model" "$PACK/$1/"
}

pack() {
    rm -rf "$PACK"
    pack_model ar "$1"
    pack_model nat "$2"
    cp data/multi30k/test2016.de data/multi30k/test2016.en "$PACK/"
    du -sh "$PACK"
}

run() {
    local out=$1
    mkdir -p "$out"
    export PYTHONUNBUFFERED=1
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
    fi
    python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__)" \
        | tee -a "$out/gpu.txt"
    # Same protocol and test sentences as the CPU grid (docs/benchmarks.md): 500 sentences,
    # batch 1 in input order, batched at 4,096 padded source tokens, plus one large batch.
    python3 -m paragen.cli bench --model "$PACK/ar" --model "$PACK/nat" \
        --input "$TEST.de" --limit "$LIMIT" --threads 1 --device "$DEVICE" \
        --precision fp32 bf16 --max-tokens 4096 16384 --output "$out/decode_speed_gpu.json" \
        2>&1 | grep -v " | INFO | " | tee "$out/bench.log"
    for model in ar nat; do
        for precision in fp32 bf16; do
            echo "== $model $precision"
            python3 -m paragen.cli evaluate --model "$PACK/$model" --input "$TEST.de" \
                --reference "$TEST.en" "env.device=$DEVICE" "env.precision=$precision" \
                2>&1 | grep -E "bleu|chrf" || true
        done
    done | tee "$out/bleu.log"
}

"$@"
