"""Token shards -> per-worker batches, at an exact, resumable data position.

The global order of training rows is the manifest's shard order, then row order inside
each shard (the shard builder already shuffled them with a seeded permutation), repeated
epoch after epoch. With W workers and B rows per worker per micro-step, micro-step g of
the whole run covers global rows [g*B*W, (g+1)*B*W) and worker w takes the w-th block of
B. So the position is one number, the count of sequences consumed; the trainer stores it
in every checkpoint and a resumed run (even on another number of workers) continues at
exactly that row.

Why each worker reads its own stream instead of Ray Data's `streaming_split`: Ray Data
hands blocks to whichever split consumer asks first, so which rows a worker gets depends
on timing, and a dataset cannot start at an arbitrary row. Each worker instead reads the
shard files in order with pyarrow, starting at the shard that holds its position, with a
background thread reading `prefetch_batches` blocks ahead, and keeps its rows of each
global batch. (A Ray Data read inside the worker was tried first: its file-listing and
read tasks need CPUs that the training workers already hold, so on a fully booked cluster
it waits forever.) The cost: every worker decodes all rows (W times the Parquet decoding
of a split read). Token rows are small next to the compute they feed (a 124M model on one
H100 eats ~2 MB/s of int32 tokens), so this is cheap; it is the price of exact,
worker-count-independent positions.
"""

from __future__ import annotations

import bisect
import json
import posixpath
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

FORMAT = "rawtext-token-shards"


@dataclass(frozen=True)
class Split:
    paths: list[str]  # absolute (local or s3://), in reading order
    rows: list[int]  # rows per shard, same order

    @property
    def total_rows(self) -> int:
        return sum(self.rows)


@dataclass(frozen=True)
class Manifest:
    url: str
    seq_len: int
    segment_ids: bool
    tokenizer: dict
    tokenizer_path: str
    splits: dict[str, Split]


def read_manifest(url: str) -> Manifest:
    """Load and check a shard manifest (docs/token-shards.md); shard paths become absolute."""
    try:
        with fsspec.open(url, "r") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"token shard manifest not found: {url}") from None
    if data.get("format") != FORMAT or data.get("format_version") != 1:
        raise ValueError(f"{url}: not a version 1 {FORMAT} manifest "
                         f"(format={data.get('format')!r}, version={data.get('format_version')!r})")
    root = posixpath.dirname(url) if "://" in url else str(Path(url).resolve().parent)
    splits = {
        name: Split([posixpath.join(root, s["path"]) for s in split["shards"]],
                    [int(s["rows"]) for s in split["shards"]])
        for name, split in data["splits"].items()
    }
    if not splits.get("train") or not splits["train"].total_rows:
        raise ValueError(f"{url}: the manifest has no training rows")
    return Manifest(url, int(data["seq_len"]), bool(data.get("segment_ids", False)),
                    data["tokenizer"], posixpath.join(root, data["tokenizer"]["path"]), splits)


def _column_matrix(table: pa.Table, name: str, width: int) -> np.ndarray:
    """A fixed_size_list<int32> column as an int64 [rows, width] array (torch embeddings
    index with int64)."""
    flat = table.column(name).combine_chunks().flatten().to_numpy()
    return flat.reshape(-1, width).astype(np.int64)


class ShardStream:
    """This worker's batches, from global position `start` (sequences consumed by all
    workers together) onwards; `position` is where the next global batch starts.

    Yields dicts of int64 tensors: `input_ids` [B, seq_len+1] and, when the shards carry
    them, `segment_ids`. Training streams repeat the data forever (epochs); a validation
    stream (`repeat=False`) stops at the last full global batch.
    """

    def __init__(self, manifest: Manifest, split: str, batch_size: int, rank: int, world: int,
                 start: int = 0, repeat: bool = True, prefetch_batches: int = 4):
        if split not in manifest.splits or not manifest.splits[split].total_rows:
            raise ValueError(f"{manifest.url}: no rows in split {split!r}")
        self.manifest, self.split = manifest, manifest.splits[split]
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.position, self.repeat = start, repeat
        self.prefetch_batches = prefetch_batches
        self.columns = ["input_ids"] + (["segment_ids"] if manifest.segment_ids else [])

    def _files(self) -> Iterator[pa.Table]:
        """Arrow record batches in global order from self.position, wrapping around epochs."""
        offset = self.position % self.split.total_rows
        first = bisect.bisect_right(np.cumsum(self.split.rows).tolist(), offset)
        skip = offset - sum(self.split.rows[:first])
        while True:
            for path in self.split.paths[first:]:
                with fsspec.open(path, "rb") as f:
                    for batch in pq.ParquetFile(f).iter_batches(columns=self.columns):
                        if skip >= batch.num_rows:
                            skip -= batch.num_rows
                            continue
                        yield pa.Table.from_batches([batch]).slice(skip)
                        skip = 0
            if not self.repeat:
                return
            first = 0

    def _blocks(self) -> Iterator[pa.Table]:
        """_files, read ahead by a background thread (`prefetch_batches` blocks)."""
        done = object()
        ahead: queue.Queue = queue.Queue(maxsize=max(1, self.prefetch_batches))
        stop = threading.Event()

        def read() -> None:
            try:
                for block in self._files():
                    while not stop.is_set():
                        try:
                            ahead.put(block, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ahead.put(done)
            except BaseException as e:  # surfaced in the consumer, never lost
                ahead.put(e)

        threading.Thread(target=read, daemon=True, name="shard-prefetch").start()
        try:
            while (block := ahead.get()) is not done:
                if isinstance(block, BaseException):
                    raise block
                yield block
        finally:
            stop.set()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        width = self.manifest.seq_len + 1
        global_batch = self.batch_size * self.world
        pending: list[pa.Table] = []
        pending_rows = 0
        for block in self._blocks():
            pending.append(block)
            pending_rows += block.num_rows
            if pending_rows < global_batch:
                continue
            table = pa.concat_tables(pending)
            while table.num_rows >= global_batch:
                mine = table.slice(self.rank * self.batch_size, self.batch_size)
                table = table.slice(global_batch)
                self.position += global_batch
                yield {c: torch.from_numpy(_column_matrix(mine, c, width)) for c in self.columns}
            pending, pending_rows = [table], table.num_rows
