"""Our dedup vs datatrove's MinHash deduplication on the same synthetic documents.

datatrove is not a project dependency: install it in a separate venv
(`python -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install datatrove`). This script
writes the documents of `bench_dedup_speed.synthetic_docs` to JSONL, runs `deduplicate`
(exact + near, verification on) with the project's Python, then datatrove's four MinHash
steps (signatures, buckets, clusters, filter; 5-grams, the same bands x rows, 2 workers)
with the other venv's Python, and compares wall times and the removed sets.

    .venv/bin/python benchmarks/bench_dedup_datatrove.py [--docs 100000] [--datatrove-python /tmp/dtvenv/bin/python]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATATROVE_RUN = """
import sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

if __name__ == "__main__":  # datatrove's workers re-import this file

    work, bands, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # sha1: the xxhash wheel that pip picks today rejects the str shingles datatrove passes
    cfg = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows, seed=1,
                        hash_config=HashConfig(hash_fc="sha1"))
    logs = work + "/logs"
    signatures = LocalPipelineExecutor([JsonlReader(work + "/input"), MinhashDedupSignature(work + "/sigs", config=cfg)],
                                       tasks=2, workers=2, logging_dir=logs + "/1")
    buckets = LocalPipelineExecutor([MinhashDedupBuckets(work + "/sigs", work + "/buckets", config=cfg)],
                                    tasks=bands, workers=2, logging_dir=logs + "/2", depends=signatures)
    clusters = LocalPipelineExecutor([MinhashDedupCluster(work + "/buckets", work + "/remove", config=cfg)],
                                     tasks=1, logging_dir=logs + "/3", depends=buckets)
    filtered = LocalPipelineExecutor([JsonlReader(work + "/input"),
                                      MinhashDedupFilter(work + "/remove", exclusion_writer=JsonlWriter(work + "/removed")),
                                      JsonlWriter(work + "/kept")], tasks=2, workers=2, logging_dir=logs + "/4", depends=clusters)
    start = time.perf_counter()
    filtered.run()
    print(time.perf_counter() - start)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--datatrove-python", default="/tmp/dtvenv/bin/python")
    args = ap.parse_args()

    import numpy as np
    import pyarrow as pa
    import ray

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_dedup_speed import synthetic_docs, vocabulary

    from curation.config import DedupConfig
    from curation.dedup import deduplicate
    from curation.dedup.phase import lsh_params

    work = Path(tempfile.mkdtemp(prefix="bdt-", dir="/tmp"))
    (work / "input").mkdir()
    table = synthetic_docs({"id": np.arange(args.docs)}, pa.array(sorted(set(vocabulary()))))
    for part in range(2):
        with gzip.open(work / "input" / f"part{part}.jsonl.gz", "wt") as f:
            for row in table.slice(part * args.docs // 2, args.docs // 2).select(["id", "text"]).to_pylist():
                f.write(json.dumps(row) + "\n")

    cfg = DedupConfig()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="bdt-ray-", dir="/tmp"))
    start = time.perf_counter()
    marks, _ = deduplicate(ray.data.from_arrow(table), cfg, ["synthetic"])
    ours_removed = set(marks.filter(expr="dup_kept == False").to_pandas()["id"])
    ours_wall = time.perf_counter() - start
    ray.shutdown()

    bands, rows = lsh_params(cfg)
    script = work / "run_datatrove.py"
    script.write_text(DATATROVE_RUN)
    run = subprocess.run([args.datatrove_python, str(script), str(work), str(bands), str(rows)],
                         capture_output=True, text=True, check=False)
    if run.returncode:
        sys.exit(f"datatrove failed:\n{run.stderr[-3000:]}")
    theirs_wall = float(run.stdout.strip().splitlines()[-1])
    theirs_removed = set()
    for path in (work / "removed").glob("*"):
        with gzip.open(path, "rt") as f:
            theirs_removed |= {json.loads(line)["id"] for line in f}

    both = ours_removed & theirs_removed
    print(f"{args.docs} synthetic documents, 5-grams, b={bands} r={rows}, 2 CPUs")
    print(f"{'':<28} | {'wall s':>7} | {'removed':>8}")
    print(f"{'ours (exact + near, verify)':<28} | {ours_wall:7.1f} | {len(ours_removed):8d}")
    print(f"{'datatrove MinHash':<28} | {theirs_wall:7.1f} | {len(theirs_removed):8d}")
    print(f"removed by both: {len(both)}; only ours: {len(ours_removed - theirs_removed)}; "
          f"only datatrove: {len(theirs_removed - ours_removed)}; "
          f"agreement (Jaccard of removed sets): {len(both) / max(len(ours_removed | theirs_removed), 1):.4f}")


if __name__ == "__main__":
    main()
