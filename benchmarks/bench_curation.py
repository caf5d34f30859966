"""Normalize + language ID + quality filters: Ray Data on all cores vs a plain loop.

Builds >= 100k documents from the C4 and TinyStories samples (repeated, split into files),
then, in one run, (a) `curation.run` through Ray Data with one actor per core and (b) the
same per-task function (`process_task`: read, stages, write Parquet) in a plain loop in
this process. Prints docs/s, MB/s and the ratio pipeline / (cores x plain loop).

    .venv/bin/python benchmarks/bench_curation.py [--docs 100000] [--files 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_inputs(directory: Path, docs: int, files: int) -> int:
    c4 = [json.loads(line)["text"] for line in (SHARED / "webcrawl/c4_en_first1000docs.jsonl").open()]
    stories = (SHARED / "tinystories/tinystories_v1_train_head_cased.txt").read_text().split("\n\n")
    pool = c4 + [s for s in stories if s.strip()]
    per_file = -(-docs // files)
    size = 0
    for f in range(files):
        with open(directory / f"part-{f:03d}.jsonl", "w") as out:
            for i in range(per_file):
                text = pool[(f * per_file + i) % len(pool)]
                size += len(text.encode())
                out.write(json.dumps({"text": text}) + "\n")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args()

    from curation import storage
    from curation.config import parse_config
    from curation.executor import connect
    from curation.pipeline import build_stages, process_task
    from curation.readers import plan_tasks
    from curation.run import run

    work = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    inputs = work / "in"
    inputs.mkdir()
    size = make_inputs(inputs, args.docs, args.files)
    section_off = {"enabled": False}

    def config(output: Path):
        return parse_config({"run": {"output": str(output), "on_existing": "overwrite"},
                             "ray": {"num_cpus": args.cores},
                             "sources": [{"name": "bench", "paths": [str(inputs)]}],
                             "perplexity": section_off, "dedup": section_off, "shards": section_off})

    # Plain loop: the very same per-task function, one process, no Ray.
    plain_cfg = config(work / "plain")
    stages = build_stages(plain_cfg)
    for stage in stages:
        stage.setup()
    fs, root = storage.open_fs(plain_cfg.run.output, plain_cfg.storage)
    start = time.perf_counter()
    docs = 0
    for task in plan_tasks(plain_cfg.sources, plain_cfg.storage):
        docs += process_task(task, plain_cfg, stages, fs, root, "curated")["stats"]["input"]["docs"]
    plain_s = time.perf_counter() - start

    pipe_cfg = config(work / "ray")
    connect(pipe_cfg.ray)
    start = time.perf_counter()
    stats = run(pipe_cfg)
    pipe_s = time.perf_counter() - start
    assert stats["input"]["docs"] == docs

    mb = size / 1e6
    print(f"\n{docs:,} documents, {mb:.1f} MB, {args.files} files, {args.cores} cores")
    print(f"{'path':<28}{'seconds':>9}{'docs/s':>10}{'MB/s':>8}")
    print(f"{'plain loop (1 process)':<28}{plain_s:>9.1f}{docs / plain_s:>10,.0f}{mb / plain_s:>8.2f}")
    print(f"{'Ray Data pipeline':<28}{pipe_s:>9.1f}{docs / pipe_s:>10,.0f}{mb / pipe_s:>8.2f}")
    print(f"ratio pipeline / ({args.cores} x plain loop) = {plain_s / pipe_s / args.cores:.2f}")
    print(f"kept {stats['kept']['docs']:,} of {docs:,}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
