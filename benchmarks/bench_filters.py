"""Single-core throughput of each filter stage (normalize, langid, quality) on C4.

Runs every stage's score + select on the C4 sample in one process, several rounds, and
prints the best docs/s and MB/s per stage and for the chain, by wall-clock time and by the
process's CPU time (the honest per-core cost when other work shares the machine). This is
the per-core budget that the Ray pipeline multiplies by its cores
(benchmarks/bench_curation.py).

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

    wall = {stage.name: float("inf") for stage in stages}
    cpu = dict(wall)
    for _ in range(args.rounds):
        table = pa.table({"text": texts})
        for stage in stages:
            start, start_cpu = time.perf_counter(), time.process_time()
            table = stage.score(table)
            stage.select(table)
            wall[stage.name] = min(wall[stage.name], time.perf_counter() - start)
            cpu[stage.name] = min(cpu[stage.name], time.process_time() - start_cpu)

    print(f"\n{len(texts):,} C4 documents, {megabytes:.2f} MB, best of {args.rounds} rounds, 1 core")
    print(f"{'stage':<12}{'wall ms':>9}{'docs/s':>9}{'MB/s':>7}{'cpu ms':>9}{'docs/s':>9}{'MB/s':>7}")
    wall["chain"], cpu["chain"] = sum(wall.values()), sum(cpu.values())
    for name, wall_s in wall.items():
        row = [f"{s * 1e3:>9.0f}{len(texts) / s:>9,.0f}{megabytes / s:>7.2f}" for s in (wall_s, cpu[name])]
        print(f"{name:<12}{row[0]}{row[1]}")


if __name__ == "__main__":
    main()
