"""Token shards -> per-worker batches through Ray Data, at an exact, resumable data position.

The global order of training rows is the manifest's shard order, then row order inside
each shard (the shard builder already shuffled them with a seeded permutation), repeated
epoch after epoch. The data position is one number, `consumed`: the sequences all workers
together have taken. From a start position, every global batch of B*W rows gives worker w
its w-th block of B rows. The trainer stores `consumed` in every checkpoint, so a resumed
run (even on another number of workers) continues at exactly that row.

Why not `streaming_split`: Ray Data hands blocks to whichever split consumer asks first,
so which rows a worker gets depends on timing, and a dataset cannot start at an arbitrary
row. Instead every worker rank gets a dataset of its own (TorchTrainer `datasets`, none
split): a list of row ranges of the shard files from the start position to the end of the
run ("segments"), mapped by a Ray Data task that reads a range and keeps this rank's rows.
The worker takes it with `get_dataset_shard` + `iter_torch_batches`, which prefetches.
Ray Train builds the datasets (`worker_dataset`) at every start of the worker group (first
start, restart after a failure, rerun of the command), from the data position of the
latest checkpoint that Ray Train registered, the one the workers are about to load. Every
row carries its position, and the worker checks it, so a disagreement fails loudly instead
of training on the wrong rows.

The cost: each rank's read tasks decode whole ranges (W times the Parquet decoding of a
split read). Token rows are small next to the compute they feed (a 124M model on one H100
eats ~2 MB/s of int32 tokens). Read tasks ask for `data.read_cpus` CPUs (default 0): the
training workers usually hold every CPU of their node, and tasks that need a CPU would
then wait forever.
"""

from __future__ import annotations

import bisect
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT = "rawtext-token-shards"
SEGMENT_BYTES = 8 << 20  # tokens read by one Ray Data task (before keeping this rank's rows)


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

    @property
    def columns(self) -> list[str]:
        return ["input_ids"] + (["segment_ids"] if self.segment_ids else [])


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


@dataclass(frozen=True)
class RankRows:
    """Which rows of the global order one worker takes: from position `start`, block
    `rank` of every `world` blocks of `batch_size` rows."""

    start: int
    batch_size: int
    rank: int
    world: int

    def mine(self, positions: np.ndarray) -> np.ndarray:
        return (positions - self.start) // self.batch_size % self.world == self.rank


def segments(split: Split, start: int, stop: int, max_rows: int) -> list[dict]:
    """Row ranges [begin, end) of the shard files that cover global positions [start, stop)
    in order (wrapping around at the end of an epoch), none longer than max_rows."""
    bounds = np.cumsum([0, *split.rows]).tolist()
    out, position = [], start
    while position < stop:
        offset = position % split.total_rows
        shard = bisect.bisect_right(bounds, offset) - 1
        begin = offset - bounds[shard]
        n = min(split.rows[shard] - begin, stop - position, max_rows)
        out.append({"path": split.paths[shard], "begin": begin, "end": begin + n,
                    "position": position})
        position += n
    return out


def read_rows(path: str, begin: int, end: int, columns: list[str]) -> pa.Table:
    """Rows [begin, end) of one shard file, reading only the row groups that hold them."""
    with fsspec.open(path, "rb") as f:
        parquet = pq.ParquetFile(f)
        groups, first_row, row = [], None, 0
        for g in range(parquet.num_row_groups):
            n = parquet.metadata.row_group(g).num_rows
            if row < end and row + n > begin:
                groups.append(g)
                first_row = row if first_row is None else first_row
            row += n
        table = parquet.read_row_groups(groups, columns=columns)
    return table.slice(begin - first_row, end - begin)


def token_matrix(table: pa.Table, name: str, width: int) -> np.ndarray:
    """A fixed_size_list<int32> column as an int32 [rows, width] array."""
    return table.column(name).combine_chunks().flatten().to_numpy().reshape(-1, width)


def read_segments(batch: dict[str, np.ndarray], rows: RankRows, columns: list[str],
                  width: int) -> dict[str, np.ndarray]:
    """Ray Data map: segment descriptors -> this rank's rows, with their global positions."""
    out: dict[str, list[np.ndarray]] = {c: [] for c in ["position", *columns]}
    for path, begin, end, position in zip(batch["path"], batch["begin"], batch["end"],
                                          batch["position"]):
        table = read_rows(str(path), int(begin), int(end), columns)
        positions = int(position) + np.arange(int(end) - int(begin), dtype=np.int64)
        keep = rows.mine(positions)
        out["position"].append(positions[keep])
        for c in columns:
            out[c].append(token_matrix(table, c, width)[keep])
    return {c: np.concatenate(parts) for c, parts in out.items()}


def rank_dataset(manifest: Manifest, split: str, rows: RankRows, stop: int,
                 read_cpus: float = 0):
    """A Ray Data dataset of this rank's rows of `split` for global positions
    [rows.start, stop), in order (the trainer runs it with preserve_order)."""
    import ray.data

    if split not in manifest.splits or not manifest.splits[split].total_rows:
        raise ValueError(f"{manifest.url}: no rows in split {split!r}")
    width = manifest.seq_len + 1
    max_rows = max(rows.batch_size * rows.world, SEGMENT_BYTES // (4 * width))
    items = segments(manifest.splits[split], rows.start, stop, max_rows)
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        read_segments, batch_size=1, batch_format="numpy", num_cpus=read_cpus,
        fn_kwargs={"rows": rows, "columns": manifest.columns, "width": width})
    # The training loop's bar reports progress; Ray Data's would repaint over it.
    dataset.context.enable_progress_bars = False
    return dataset


def dataset_name(split: str, rank: int) -> str:
    return f"{split}_rank{rank}"


def validation_batch_count(cfg, manifest: Manifest) -> int:
    """Validation batches per worker per evaluation: the same count on every worker (ZeRO-3's
    gathered forward needs it), at most eval.max_batches."""
    split = manifest.splits.get("validation")
    rows = split.total_rows if split else 0
    return min(cfg.eval.max_batches, rows // (cfg.data.batch_size * cfg.scaling.num_workers))


def worker_dataset(cfg, manifest: Manifest, run_path: str, split: str, rank: int):
    """Worker `rank`'s dataset of `split` (the trainer hands Ray Train this factory, which
    calls it at every start of the worker group). Training rows start at the data position
    of the run's latest registered checkpoint and cover twice the rest of the run: the
    second half is for batches the loss guard skips or replays after a rollback (the plan
    is only a list of row ranges; rows are read as the worker takes them). Validation rows
    are the first batches of the split."""
    from training.checkpoint import latest_state

    world, batch = cfg.scaling.num_workers, cfg.data.batch_size
    if split == "train":
        state = latest_state(run_path)
        start, step = (state.consumed, state.step) if state else (0, 0)
        micro_steps = (cfg.optim.max_steps - step) * cfg.data.grad_accum
        stop = start + 2 * max(micro_steps, 1) * batch * world  # >= 1 batch: from_items needs one
    else:
        start, stop = 0, validation_batch_count(cfg, manifest) * batch * world
    return rank_dataset(manifest, split, RankRows(start, batch, rank, world), stop,
                        cfg.data.read_cpus)
