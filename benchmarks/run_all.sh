#!/usr/bin/env bash
# Every benchmark, one after the other (long: tens of minutes). Each prints its own table.
# The training benchmarks read the demo's token shards: run `make demo` first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
for bench in bench_readers bench_filters bench_curation bench_perplexity bench_dedup_quality bench_dedup_speed bench_tokenize; do
  echo "== $bench"
  $PY "benchmarks/$bench.py"
done
echo "== bench_train_cpu"
$PY benchmarks/bench_train_cpu.py out/demo/curation/shards/manifest.json
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "== bench_train_gpu"
  $PY -m curation run configs/demo.yaml --set run.output=out/bench_gpu \
      --set shards.seq_len=1024 --set perplexity.enabled=false
  $PY benchmarks/bench_train_gpu.py out/bench_gpu/shards/manifest.json
else
  echo "== bench_train_gpu: skipped (no GPU)"
fi
