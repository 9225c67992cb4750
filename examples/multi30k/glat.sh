#!/usr/bin/env bash
# GLAT on Multi30k De→En, the whole recipe: AR teacher → distill → GLAT → average → evaluate.
# Each stage is skipped when its output exists, so the script can be rerun after a stop.
# MINUTES sets the training budget of each model (default 40, as in docs/benchmarks.md);
# VARIANT=glat_ctc trains the CTC variant (examples/multi30k/glat_ctc.yaml) instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=data/multi30k
MINUTES=${MINUTES:-40}
PARAGEN=${PARAGEN:-paragen}
VARIANT=${VARIANT:-glat}
RUN=runs/multi30k-${VARIANT//_/-}

[ -f $DATA/test2016.en ] || $PARAGEN prepare-data --dataset multi30k --output $DATA
[ -f $DATA/spm8k.model ] || $PARAGEN build-tokenizer --input $DATA/train.de $DATA/train.en \
    --output $DATA/spm8k --vocab-size 8000

# 1. The AR teacher (multi30k-small).
[ -f runs/multi30k-transformer/best.pt ] || $PARAGEN train \
    --config examples/multi30k/transformer.yaml task.trainer.max_minutes=$MINUTES

# 2. Distill the training set with beam 4 (resumable: rerun to continue).
$PARAGEN distill --model runs/multi30k-transformer --input $DATA/train.de \
    --output $DATA/train.distill.en --beam 4

# 3. GLAT on the distilled targets, starting from the teacher's weights.
[ -f $RUN/best.pt ] || $PARAGEN train \
    --config examples/multi30k/$VARIANT.yaml task.trainer.max_minutes=$MINUTES

# 4. Average the last 3 step checkpoints.
$PARAGEN average-checkpoints --dir $RUN --last 3 --output $RUN/average.pt

# 5. Evaluate: single pass and noisy parallel decoding over 5 lengths (CTC: 5 slot counts),
#    ranked by the teacher; for the length-predicting GLAT also one refinement pass (it hurts
#    a CTC model).
settings=("" "--task.generator.length_beam 5 task.generator.reranker=runs/multi30k-transformer/best.pt")
[ "$VARIANT" = glat ] && settings+=("--task.generator.refine_steps 1")
for ckpt in best average; do
  for options in "${settings[@]}"; do
    $PARAGEN evaluate --model $RUN/$ckpt.pt \
        --input $DATA/test2016.de --reference $DATA/test2016.en $options
  done
done
