#!/usr/bin/env bash
# A NAT model on Multi30k De→En, the whole recipe: AR teacher → distill → NAT → average → evaluate.
# Each stage is skipped when its output exists, so the script can be rerun after a stop.
# MINUTES sets the training budget of each model (default 40, as in docs/benchmarks.md);
# VARIANT picks the NAT model: glat (default), glat_ctc, vanilla_nat, cmlm, dat or nat_crf
# (examples/multi30k/$VARIANT.yaml). PRECISION=bf16 trains both models under bf16 autocast
# (default fp32): about 1.5× the updates on a CPU with AMX or AVX-512-BF16, nothing on others.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=data/multi30k
MINUTES=${MINUTES:-40}
PARAGEN=${PARAGEN:-paragen}
VARIANT=${VARIANT:-glat}
PRECISION=${PRECISION:-fp32}
RUN=runs/multi30k-${VARIANT//_/-}

[ -f $DATA/test2016.en ] || $PARAGEN prepare-data --dataset multi30k --output $DATA
[ -f $DATA/spm8k.model ] || $PARAGEN build-tokenizer --input $DATA/train.de $DATA/train.en \
    --output $DATA/spm8k --vocab-size 8000

# 1. The AR teacher (multi30k-small). The average of its last 3 checkpoints is the better
#    teacher (39.89 against 38.85 for the best one, docs/benchmarks.md): it is the one
#    distilled from, started from and reranked with.
TEACHER=runs/multi30k-transformer/average.pt
[ -f runs/multi30k-transformer/best.pt ] || $PARAGEN train \
    --config examples/multi30k/transformer.yaml task.trainer.max_minutes=$MINUTES env.precision=$PRECISION
[ -f $TEACHER ] || $PARAGEN average-checkpoints --dir runs/multi30k-transformer --last 3 \
    --output $TEACHER

# 2. Distill the training set with beam 4 (resumable: rerun to continue).
$PARAGEN distill --model $TEACHER --input $DATA/train.de --output $DATA/train.distill.en --beam 4

# 3. The NAT model on the distilled targets, starting from the teacher's weights.
[ -f $RUN/best.pt ] || $PARAGEN train --config examples/multi30k/$VARIANT.yaml \
    --define.teacher $TEACHER task.trainer.max_minutes=$MINUTES env.precision=$PRECISION

# 4. Average the last 3 step checkpoints.
$PARAGEN average-checkpoints --dir $RUN --last 3 --output $RUN/average.pt

# 5. Evaluate each model's decoding settings. GLAT-style: a single pass and noisy parallel
#    decoding over 5 lengths (CTC: 5 slot counts) ranked by the teacher, and for models with
#    one slot per token one refinement pass (it hurts a CTC model); CMLM: mask-predict with
#    1, 4 and 10 iterations; DA-Transformer: its three path searches.
case "$VARIANT" in
  cmlm) settings=("--task.generator.iterations 1 --task.generator.length_beam 1"
                  "--task.generator.iterations 4" "--task.generator.iterations 10") ;;
  dat) settings=("--task.generator.strategy lookahead" "--task.generator.strategy greedy"
                 "--task.generator.strategy viterbi") ;;
  *) settings=("" "--task.generator.length_beam 5 task.generator.reranker=$TEACHER")
     [ "$VARIANT" = glat_ctc ] || settings+=("--task.generator.refine_steps 1") ;;
esac
for ckpt in best average; do
  for options in "${settings[@]}"; do
    # shellcheck disable=SC2086  # options are several words
    $PARAGEN evaluate --model $RUN/$ckpt.pt \
        --input $DATA/test2016.de --reference $DATA/test2016.en $options
  done
done
