#!/usr/bin/env bash
# System combination by reranking on Multi30k De→En: candidates of five decoding settings of the
# AR teacher and GLAT+CTC, features from two AR checkpoints and the GLAT+CTC model's CTC
# likelihood; weights tuned on valid, applied to
# test2016; sacreBLEU of each system and of the reranked output to
# benchmarks/results/rerank_multi30k.json. Needs runs/multi30k-transformer and
# runs/multi30k-glat-ctc (examples/multi30k/glat.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
P=${PARAGEN:-paragen}
T=runs/multi30k-transformer
CTC=runs/multi30k-glat-ctc/average.pt
R=runs/rerank
mkdir -p $R
SYSTEMS="ar-beam4 ar-best-beam4 ar-greedy ctc-npd5 ctc"
for split in valid test2016; do
  in=data/multi30k/$split.de; o=$R/$split
  [ -s $o.ar-beam4.en ] || $P generate --model $T/average.pt --input $in --beam 4 --output $o.ar-beam4.en
  [ -s $o.ar-best-beam4.en ] || $P generate --model $T/best.pt --input $in --beam 4 --output $o.ar-best-beam4.en
  [ -s $o.ar-greedy.en ] || $P generate --model $T/average.pt --input $in --beam 1 --output $o.ar-greedy.en
  [ -s $o.ctc.en ] || $P generate --model $CTC --input $in --output $o.ctc.en
  [ -s $o.ctc-npd5.en ] || $P generate --model $CTC --input $in --output $o.ctc-npd5.en \
      --task.generator.length_beam 5 task.generator.reranker=$T/average.pt
done
candidates() { for s in $SYSTEMS; do echo -n "$R/$1.$s.en "; done; }
MODELS="ar=$T/average.pt ar_best=$T/best.pt ctc=$CTC"
# "rerank": every feature; "rerank-models": only the models' scores and the length ratio
# (4 weights instead of 10, less room to fit valid's noise)
for variant in rerank rerank-models; do
  features=""
  [ $variant = rerank ] || features="--features model: length_ratio"
  # shellcheck disable=SC2046,SC2086
  $P rerank --source data/multi30k/valid.de --candidates $(candidates valid) --model $MODELS \
    $features --reference data/multi30k/valid.en --save-weights $R/$variant.weights.json \
    > $R/valid.$variant.en
  # shellcheck disable=SC2046,SC2086
  $P rerank --source data/multi30k/test2016.de --candidates $(candidates test2016) \
    --model $MODELS $features --weights $R/$variant.weights.json > $R/test2016.$variant.en
done
python - "$R" "$SYSTEMS" <<'PY'
import json, sys
import sacrebleu
folder, systems = sys.argv[1], sys.argv[2].split() + ["rerank", "rerank-models"]
result = {"command": "bash benchmarks/rerank_multi30k.sh",
          "weights": {v: json.load(open(f"{folder}/{v}.weights.json"))
                      for v in ("rerank", "rerank-models")}}
for split in ("valid", "test2016"):
    refs = [open(f"data/multi30k/{split}.en", encoding="utf-8").read().splitlines()]
    result[split] = {s: round(sacrebleu.corpus_bleu(open(f"{folder}/{split}.{s}.en",
                     encoding="utf-8").read().splitlines(), refs).score, 2) for s in systems}
json.dump(result, open("benchmarks/results/rerank_multi30k.json", "w"), indent=1)
print(json.dumps(result, indent=1))
PY
