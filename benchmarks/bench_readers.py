"""Reader throughput, single process: docs/s and million characters of text/s per format.

The C4 sample is repeated to about `--mb` MB and written as JSONL (plain, .gz, .zst),
Parquet and text; the Dolma WARC file is repeated as whole gzip members.

    .venv/bin/python benchmarks/bench_readers.py [--mb 100]
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from curation.config import SourceConfig, StorageConfig
from curation.readers import plan_tasks, read_documents

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "webcrawl"


def write_inputs(directory: Path, mb: int) -> dict[str, dict]:
    """Benchmark inputs: name -> SourceConfig keyword arguments."""
    c4 = (DATA / "c4_en_first1000docs.jsonl").read_bytes()
    jsonl = c4 * max(1, mb * 2**20 // len(c4))
    (directory / "c4.jsonl").write_bytes(jsonl)
    (directory / "c4.jsonl.gz").write_bytes(gzip.compress(jsonl, compresslevel=6))
    (directory / "c4.jsonl.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(jsonl))
    rows = [json.loads(line) for line in jsonl.splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), directory / "c4.parquet", compression="zstd")
    (directory / "c4.txt").write_text("\n\n".join(r["text"].replace("\n\n", "\n") for r in rows))
    warc = (DATA / "dolma_sample-0000.warc.gz").read_bytes()
    (directory / "dolma.warc.gz").write_bytes(warc * 50)
    return {
        "jsonl": {"paths": [str(directory / "c4.jsonl")]},
        "jsonl.gz": {"paths": [str(directory / "c4.jsonl.gz")]},
        "jsonl.zst": {"paths": [str(directory / "c4.jsonl.zst")]},
        "parquet": {"paths": [str(directory / "c4.parquet")]},
        "text (blank_line)": {"paths": [str(directory / "c4.txt")], "text_split": "blank_line"},
        "warc.gz (html->text)": {"paths": [str(directory / "dolma.warc.gz")]},
    }


def measure(options: dict) -> tuple[int, int, float]:
    source = SourceConfig(name="bench", **options)
    storage = StorageConfig()
    docs = chars = 0
    start = time.perf_counter()
    for task in plan_tasks([source], storage):
        for table in read_documents(task, source, storage, 2000):
            docs += len(table)
            chars += sum(len(t) for t in table.column("text").to_pylist())
    return docs, chars, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the JSONL input (MB)")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"sample data not found at {DATA} (../shared/data beside the repo)")
    with tempfile.TemporaryDirectory(prefix="bench-readers-") as tmp:
        inputs = write_inputs(Path(tmp), args.mb)
        print(f"{'format':<22}{'docs':>9}{'Mchars':>9}{'seconds':>9}{'docs/s':>10}{'Mchar/s':>8}")
        for name, options in inputs.items():
            docs, chars, seconds = measure(options)
            mchars = chars / 1e6
            print(f"{name:<22}{docs:>9}{mchars:>9.1f}{seconds:>9.2f}{docs / seconds:>10.0f}"
                  f"{mchars / seconds:>8.1f}")


if __name__ == "__main__":
    main()
