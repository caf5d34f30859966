"""Single-core throughput of each filter stage (normalize, langid, quality) on C4.

Runs every stage's score + select on the C4 sample in one process, several rounds, and
prints the best docs/s and MB/s per stage and for the chain. This is the per-core budget
that the Ray pipeline multiplies by its cores (benchmarks/bench_curation.py).

    .venv/bin/python benchmarks/bench_filters.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyarrow as pa

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from curation.config import LangIdConfig, NormalizeConfig, QualityConfig
    from curation.stages.langid import LangIdStage
    from curation.stages.normalize import NormalizeStage
    from curation.stages.quality import QualityStage

    with open(SHARED / "webcrawl" / "c4_en_first1000docs.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    stages = [NormalizeStage(NormalizeConfig()), LangIdStage(LangIdConfig()), QualityStage(QualityConfig())]
    for stage in stages:
        stage.setup()

    best = {stage.name: float("inf") for stage in stages}
    for _ in range(args.rounds):
        table = pa.table({"text": texts})
        for stage in stages:
            start = time.perf_counter()
            table = stage.score(table)
            stage.select(table)
            best[stage.name] = min(best[stage.name], time.perf_counter() - start)

    print(f"\n{len(texts):,} C4 documents, {megabytes:.2f} MB, best of {args.rounds} rounds, 1 core")
    print(f"{'stage':<12}{'ms':>8}{'docs/s':>10}{'MB/s':>8}")
    for name, seconds in [*best.items(), ("chain", sum(best.values()))]:
        print(f"{name:<12}{seconds * 1e3:>8.0f}{len(texts) / seconds:>10,.0f}{megabytes / seconds:>8.2f}")


if __name__ == "__main__":
    main()
