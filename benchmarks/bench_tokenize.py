"""Tokenization + packing throughput and packing waste on the sample data, repeated to at
least --min-tokens tokens (default 50M).

Three measurements:
  encode   the tokenizer stage (`Encoder`) on one core, in this process
  pack     mixture expansion + packing (`expand_copies`, `pack_group`) on one core
  build    `build_shards` end to end under a local Ray with --cpus workers (read, tokenize,
           count, group/pack all-to-all, sort, write shards + manifest)

    python benchmarks/bench_tokenize.py [--min-tokens 50000000] [--cpus 2]

Timings are wall clock: on a shared machine they move with the neighbours' load.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one core per tokenizer, before it is imported

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pds
import ray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation.config import parse_config
from curation.packing import Encoder, expand_copies, pack_group
from curation.shards import build_shards
from curation.tokenizer import SpecialIds, sample_texts, train_bpe
from tests.curated_sample import sample_documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--min-tokens", type=int, default=50_000_000)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tok-", dir="/tmp"))
    cfg = parse_config({
        "sources": [{"name": n, "paths": ["-"]} for n in ("tinystories", "c4", "ud")],
        "tokenizer": {"vocab_size": args.vocab_size, "sample_docs": 5000},
        "mixture": {"enabled": False},
        "shards": {"seq_len": args.seq_len, "validation_fraction": 0.01},
    })

    docs = pa.Table.from_pylist(sample_documents(Path(args.data)))
    sample = work / "sample"
    pds.write_dataset(docs, sample, format="parquet", partitioning=["lang"], partitioning_flavor="hive")
    tokenizer = train_bpe(sample_texts(str(sample), cfg.tokenizer.sample_docs, cfg.storage), cfg.tokenizer)
    cfg.tokenizer.path = str(work / "tokenizer.json")
    tokenizer.save(cfg.tokenizer.path)
    special = SpecialIds.of(tokenizer, cfg.tokenizer)

    encoder = Encoder(tokenizer.to_str(), special.eos, None, 0, 0.0, None)
    started = time.perf_counter()
    encoded = encoder(docs)
    encode_s = time.perf_counter() - started
    sample_tokens = int(pa.compute.sum(encoded.column("n_tokens")).as_py())

    width = args.seq_len + 1
    started = time.perf_counter()
    expanded = expand_copies(encoded, lambda t: np.ones(len(t), np.int64), 1, 0)
    packed = pack_group(expanded, args.seq_len, sorted({(s, l) for s, l in zip(
        docs.column("source").to_pylist(), docs.column("lang").to_pylist())}), False, False)
    pack_s = time.perf_counter() - started

    repeats = -(-args.min_tokens // sample_tokens)
    curated = work / "curated"
    for copy in range(repeats):  # distinct ids, so every copy is its own document
        pds.write_dataset(docs.set_column(docs.schema.get_field_index("id"), "id",
                                          pa.array([f"{i}-r{copy}" for i in docs.column("id").to_pylist()])),
                          curated, format="parquet", partitioning=["lang"], partitioning_flavor="hive",
                          basename_template=f"part-{copy:04d}-{{i}}.parquet", existing_data_behavior="overwrite_or_ignore")
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False, _temp_dir=tempfile.mkdtemp(prefix="rt-bench-", dir="/tmp"))
    started = time.perf_counter()
    manifest = build_shards(str(curated), str(work / "shards"), cfg)
    build_s = time.perf_counter() - started
    ray.shutdown()
    total = sum(manifest["provenance"]["input"]["tokens"].values())
    waste = sum(s["waste_tokens"] for s in manifest["splits"].values())

    print(f"\nsample: {len(docs)} documents, {sample_tokens:,} tokens (vocab {args.vocab_size}); "
          f"build input: x{repeats} = {total:,} tokens, seq_len {args.seq_len}")
    print(f"{'step':<8} {'tokens':>14} {'seconds':>9} {'cores':>6} {'tokens/s/core':>15}")
    for step, tokens, seconds, cores in (("encode", sample_tokens, encode_s, 1),
                                         ("pack", len(packed) * width, pack_s, 1),
                                         ("build", total, build_s, args.cpus)):
        print(f"{step:<8} {tokens:>14,} {seconds:>9.2f} {cores:>6} {tokens / seconds / cores:>15,.0f}")
    print(f"packing waste: {waste:,} of {total:,} tokens = {waste / total:.4%} "
          f"(pack_group_rows {cfg.shards.pack_group_rows})")
    print(f"work dir (delete when done): {work}")


if __name__ == "__main__":
    main()
