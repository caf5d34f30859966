#!/usr/bin/env bash
# The whole path on the sample data: raw text -> curated Parquet -> token shards -> a small
# model -> generated samples. `make demo` runs it after setup; it takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=out/demo
if [ ! -d ../shared/data ]; then
  echo "error: the sample data is expected in ../shared/data beside this checkout" >&2
  exit 2
fi

echo "== 1/5 reference language model for perplexity (KenLM, reference_en)"
$PY -m curation build-lm --lang en --out "$OUT/lm" ../shared/data/reference_en

echo "== 2/5 curation: read, normalize, langid, quality, perplexity, dedup, mixture, shards"
$PY -m curation run configs/demo.yaml

echo "== 3/5 check the token shards against their manifest"
$PY -m curation verify "$OUT/curation/shards"

echo "== 4/5 train a small model on the shards (Ray Train + DeepSpeed, CPU)"
rm -rf "$OUT/train"   # the demo trains from scratch; a real run resumes by rerunning
$PY -m training train configs/train_demo.yaml | tee "$OUT/train.log"
checkpoint=$(sed -n 's/^checkpoint: //p' "$OUT/train.log" | tail -1)
$PY -m training plot "$(sed -n 's/^metrics: *//p' "$OUT/train.log" | tail -1 | xargs dirname)" || true

echo "== 5/5 samples from the trained model"
$PY -m training generate "$checkpoint" --tokenizer "$OUT/curation/shards" \
    --prompt "Once upon a time" --num-samples 3 --max-new-tokens 60

echo
echo "report:      $OUT/curation/report.html"
echo "curated:     $OUT/curation/curated/"
echo "shards:      $OUT/curation/shards/manifest.json"
echo "checkpoint:  $checkpoint"
