#!/usr/bin/env bash
# Every benchmark, one after the other (long: tens of minutes). Each prints its own table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
for bench in bench_readers bench_filters bench_curation bench_perplexity bench_dedup_quality bench_dedup_speed bench_tokenize bench_train_cpu; do
  if [ -f "benchmarks/$bench.py" ]; then
    echo "== $bench"
    $PY "benchmarks/$bench.py"
  fi
done
