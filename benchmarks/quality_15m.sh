#!/usr/bin/env bash
# The quality run (docs/training.md, "Quality run"): llama2.c's 15M preset trained on the
# TinyStories sample, its validation loss, perplexity and bits per byte, and samples.
#
#   benchmarks/quality_15m.sh            # ~30 min on 2 CPU cores; rerun resumes training
#   FRESH=1 benchmarks/quality_15m.sh    # delete the previous training run first
#
# Outputs under out/quality_15m/: curation.log, train.log (+ train.out), results.json,
# samples.txt, the shards (curation/shards/), the run (train/tinystories_15m/, with
# logs/curves.png).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=out/quality_15m
CURATION=${CURATION:-configs/quality_15m_curation.yaml}
TRAIN=${TRAIN:-configs/train_15m.yaml}
RAW=../shared/data/tinystories/tinystories_v1_train_head_lowercased.txt
if [ ! -f "$RAW" ]; then
  echo "error: $RAW not found (the sample data is expected in ../shared/data)" >&2
  exit 2
fi
mkdir -p "$OUT/input"

echo "== 1/6 one JSONL record per story"
# A story ends with a single newline; its paragraphs are separated by blank lines.
$PY - "$RAW" "$OUT/input/tinystories_v1_train_head_lowercased.stories.jsonl" <<'EOF'
import json, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
stories = [s.strip() for s in re.split(r"(?<!\n)\n(?!\n)", text) if s.strip()]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.writelines(json.dumps({"text": s}) + "\n" for s in stories)
print(f"{len(stories)} stories -> {sys.argv[2]}")
EOF

echo "== 2/6 curation -> token shards"
$PY -m curation run "$CURATION" 2>&1 | tee "$OUT/curation.log"
$PY -m curation verify "$OUT/curation/shards"

echo "== 3/6 train the 15M preset (Ray Train + DeepSpeed, CPU)"
run_dir=$($PY - "$TRAIN" <<'EOF'
import sys
from training.config import load_train_config
c = load_train_config(sys.argv[1]).checkpoint
print(f"{c.storage_path}/{c.name}")
EOF
)
if [ "${FRESH:-0}" = 1 ]; then rm -rf "$run_dir"; fi
start=$(date +%s)
# stdout (the final `checkpoint:` and `metrics:` lines) to train.out; stderr (Ray, progress
# bars, which end without a newline) to the console and train.log
$PY -m training train "$TRAIN" 2>&1 >"$OUT/train.out" | tee "$OUT/train.log"
end=$(date +%s)
cat "$OUT/train.out"
checkpoint=$(sed -n 's/^checkpoint: //p' "$OUT/train.out" | tail -1)
metrics=$(sed -n 's/^metrics: *//p' "$OUT/train.out" | tail -1)
if [ -z "$checkpoint" ] || [ "$checkpoint" = None ] || [ -z "$metrics" ]; then
  echo "error: training did not report a checkpoint and metrics (see $OUT/train.out and $OUT/train.log)" >&2
  exit 1
fi

echo "== 4/6 training curves"
$PY -m training plot "$(dirname "$metrics")" || true

echo "== 5/6 validation loss, perplexity, bits per byte"
$PY benchmarks/bits_per_byte.py "$OUT/curation/shards/manifest.json" "$metrics" \
    --config "$TRAIN" --checkpoint "$checkpoint" --json "$OUT/results.json"
$PY - "$metrics" "$TRAIN" "$((end - start))" "$OUT/results.json" <<'EOF'
import json, statistics, sys
from training.config import load_train_config
metrics, config, wall, results = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cfg = load_train_config(config)
records = {}
for line in open(metrics):
    if line.strip():
        r = json.loads(line)
        records[r["step"]] = {**records.get(r["step"], {}), **r}
steps = max(records)
seq_len = json.load(open(cfg.data.manifest))["seq_len"]
tokens = steps * cfg.data.batch_size * cfg.data.grad_accum * cfg.scaling.num_workers * seq_len
rates = [r["tokens_per_s"] for r in records.values() if "tokens_per_s" in r]
out = {"steps": steps, "tokens_seen": tokens,
       "tokens_per_s_median_window": statistics.median(rates),
       "train_command_wall_s": wall, "tokens_per_s_end_to_end": tokens / wall,
       "skipped_steps": records[steps].get("skipped_steps", 0)}
for k, v in out.items():
    print(f"{k:<28} {v:.1f}" if isinstance(v, float) else f"{k:<28} {v}")
print("(end to end: the train command's wall time, with Ray start-up, evaluations and "
      "checkpoints; a rerun that resumed only counts its own part)")
data = json.load(open(results))
data.update(out)
json.dump(data, open(results, "w"), indent=1)
EOF

echo "== 6/6 samples (the training text is lowercased, so is the prompt)"
$PY -m training generate "$checkpoint" --tokenizer "$OUT/curation/shards" \
    --prompt "once upon a time" --num-samples 3 --max-new-tokens 200 | tee "$OUT/samples.txt"

echo
echo "results:    $OUT/results.json"
echo "curves:     $(dirname "$metrics")/curves.png"
echo "checkpoint: $checkpoint"
