"""Dedup speed: MinHash signature throughput vs datasketch, and end-to-end scaling.

1. Signatures, one process, ~300-word real-text documents (windows of TinyStories +
   Brown), 128 permutations: ours from raw text (tokenize + shingle + hash + MinHash) vs
   `datasketch.MinHash.bulk` (default sha1_hash32, affine32) given ready-made shingles.
   Reported per wall second and per CPU second (the machine is shared: CPU time is the
   steadier number).
2. End to end: `deduplicate` on a fresh local Ray (2 CPUs) for each size: synthetic
   documents of 100-300 words drawn from the real vocabulary, 5% exact copies and 10%
   edited copies. Wall time, peak memory (PSS summed over the driver and every Ray
   process, sampled each second, so shared object-store pages count once) and the growth
   exponent of time in the number of documents.

    .venv/bin/python benchmarks/bench_dedup_speed.py [--sizes 100000 300000 1000000] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import ray

from curation.config import DedupConfig
from curation.dedup import deduplicate
from curation.dedup.minhash import signatures
from curation.dedup.shingles import shingle_hashes, shingle_texts

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def vocabulary() -> list[str]:
    text = (DATA / "tinystories/tinystories_v1_train_head_lowercased.txt").read_text(errors="replace")
    return text.split() + (DATA / "reference_en/nltk_brown_untagged.txt").read_text(errors="replace").split()


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def signature_throughput(pool: list[str], n_ours: int, n_datasketch: int) -> None:
    from datasketch import MinHash

    rng = np.random.default_rng(0)
    texts = [" ".join(pool[s:s + 300]) for s in rng.integers(0, len(pool) - 300, n_ours)]
    array = pa.array(texts)
    signatures(*shingle_hashes(array[:10], 5)[:2], 128, 1)  # compile outside the clock
    ours = timed(lambda: signatures(*shingle_hashes(array, 5)[:2], 128, 1))
    shingles = [shingle_texts(t, 5) for t in texts[:n_datasketch]]
    theirs = timed(lambda: MinHash.bulk(shingles, num_perm=128, seed=1))
    print("signature throughput, 1 process, ~300-word documents, 128 permutations")
    print(f"{'method':<46} | {'docs':>6} | {'docs/s (wall)':>13} | {'docs/s (CPU)':>12}")
    for name, n, (wall, cpu) in [("ours: text -> signature (numba, affine32)", n_ours, ours),
                                 ("datasketch MinHash.bulk (shingles given, sha1)", n_datasketch, theirs)]:
        print(f"{name:<46} | {n:6d} | {n / wall:13.0f} | {n / cpu:12.0f}")
    print(f"speed-up (CPU time): {(n_ours / ours[1]) / (n_datasketch / theirs[1]):.1f}x\n")


def synthetic_docs(batch: dict, pool: pa.Array) -> pa.Table:
    """Row i: random words; i % 20 == 2 copies row i - 2 exactly, i % 10 == 1 edits row i - 1."""
    ids = batch["id"]
    origin = ids - np.where(ids % 20 == 2, 2, np.where(ids % 10 == 1, 1, 0))
    lengths = 100 + origin * 7919 % 201
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    word_index = np.empty(offsets[-1], np.int64)
    for k, (row, o) in enumerate(zip(ids, origin)):
        rng = np.random.default_rng(o)
        words = rng.integers(0, len(pool), lengths[k])
        if row != o and row % 10 == 1:  # an edited copy: replace 1% of the words
            edits = np.random.default_rng(row).integers(0, lengths[k], max(1, lengths[k] // 100))
            words[edits] = np.random.default_rng(row + 1).integers(0, len(pool), len(edits))
        word_index[offsets[k]:offsets[k + 1]] = words
    words = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pool.take(pa.array(word_index)))
    return pa.table({"id": pa.array([f"doc{i}" for i in ids]), "source": pa.array(["synthetic"] * len(ids)),
                     "text": pc.binary_join(words, " "), "path": pa.array(["synthetic"] * len(ids)),
                     "record": pa.array(ids, pa.int64())})


class PeakMemory:
    """Peak PSS of this process and all its descendants (the local Ray), sampled each second."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(1.0):
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def end_to_end(pool: list[str], sizes: list[int]) -> None:
    vocab = pa.array(sorted(set(pool)))
    rows = []
    for n in sizes:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="bds-", dir="/tmp"))
        docs = ray.data.range(n, override_num_blocks=max(8, n // 20_000)).map_batches(
            synthetic_docs, fn_args=(vocab,), batch_format="numpy", batch_size=5000)
        with PeakMemory() as memory:
            start = time.perf_counter()
            marks, stats = deduplicate(docs, DedupConfig(), ["synthetic"])
            kept = sum(pc.sum(b["dup_kept"]).as_py() for b in marks.iter_batches(batch_format="pyarrow"))
            wall = time.perf_counter() - start
        ray.shutdown()
        rows.append((n, wall, memory.peak, kept, stats))
        print(f"  {n} docs: {wall:.1f} s, peak {memory.peak / 2**30:.2f} GiB", flush=True)
    print("\nend to end (generate + deduplicate + read marks), local Ray, 2 CPUs")
    print(f"{'docs':>8} | {'wall s':>7} | {'docs/s':>7} | {'peak GiB':>8} | {'kept':>8} | {'exact':>6} | "
          f"{'near':>6} | {'clusters':>8}")
    for n, wall, peak, kept, s in rows:
        print(f"{n:8d} | {wall:7.1f} | {n / wall:7.0f} | {peak / 2**30:8.2f} | {kept:8d} | "
              f"{s['docs_removed_exact']:6d} | {s['docs_removed_near']:6d} | {s['clusters']:8d}")
    if len(rows) > 1:
        x, y = np.log([r[0] for r in rows]), np.log([r[1] for r in rows])
        print(f"growth exponent of wall time in docs: {np.polyfit(x, y, 1)[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000])
    ap.add_argument("--signature-docs", type=int, default=20_000)
    ap.add_argument("--datasketch-docs", type=int, default=2_000)
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    pool = vocabulary()
    signature_throughput(pool, args.signature_docs, args.datasketch_docs)
    if not args.skip_e2e:
        end_to_end(pool, args.sizes)


if __name__ == "__main__":
    main()
