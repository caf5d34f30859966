"""Curated documents -> token shards + manifest.json (format: docs/token-shards.md).

The phase, in order: obtain the tokenizer; tokenize every document once (Ray Data) and
split it by hash; count tokens per (source, lang) and plan the mixture on the train split;
expand documents into their copies and pack them group by group (an explicit all-to-all);
order the rows (a seeded hash sort, or a curriculum key); stream them into fixed-size
shard files from the driver, checksumming as they go; write the manifest last, so a
directory with a manifest is complete.

Determinism: every choice is a function of document ids and seeds, rows are sorted by a
unique key before writing, and the manifest holds no times or output paths, so the same
config and inputs give byte-identical shards and manifest.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from curation import storage
from curation.config import ConfigError, PipelineConfig, ShardsConfig
from curation.hashing import mix, unit
from curation.mixture import MixturePlan, draws, plan, token_histogram
from curation.packing import (
    DIFFICULTY,
    DOC_HASH,
    GROUP,
    INPUT_IDS,
    N_TOKENS,
    PART_TOKENS,
    ROW_HASH,
    SEGMENT_IDS,
    VALIDATION,
    Encoder,
    expand_copies,
    pack_group,
)
from curation.tokenizer import SpecialIds, obtain_tokenizer, sha256, tokenizer_bytes

FORMAT, FORMAT_VERSION = "rawtext-token-shards", 1
SPLITS = ("train", "validation")
ORDER_KEY = "order_key"


def build_shards(curated_path: str, output_path: str, cfg: PipelineConfig) -> dict:
    """Tokenize, mix, pack and write the curated documents; returns the manifest."""
    fs, root = storage.open_fs(output_path, cfg.storage)
    tokenizer, tokenizer_origin = obtain_tokenizer(curated_path, cfg.tokenizer, cfg.storage)
    special = SpecialIds.of(tokenizer, cfg.tokenizer)
    tokenizer_json = tokenizer_bytes(tokenizer)
    storage.remove_tree(fs, root)  # a half-written earlier attempt must not leave stray shards
    storage.write_bytes_atomic(fs, storage.join(root, "tokenizer.json"), tokenizer_json)

    docs = _tokenize(curated_path, cfg, tokenizer_json.decode(), special).materialize()
    counts = _count(docs, lambda t: np.ones(len(t), np.int64))
    available = {split: {(s, l): n for (v, s, l), (n, _, _) in counts.items() if v == (split != "train")}
                 for split in SPLITS}
    mixture = plan(available["train"], cfg.sources, cfg.mixture, _histograms(docs, cfg.mixture.seed))
    splits, achieved = {}, {}
    for split in SPLITS:
        copies = _copies_fn(mixture if split == "train" else None, cfg.mixture.seed)
        part = docs.map_batches(_in_split, batch_format="pyarrow", fn_kwargs={"validation": split != "train"})
        splits[split], achieved[split] = _write_split(part, copies, split, fs, root, cfg.shards)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seq_len": cfg.shards.seq_len,
        "segment_ids": cfg.shards.segment_ids,
        "order": cfg.shards.order,
        "curriculum": (cfg.shards.model_dump(include={"curriculum_column", "pacing", "pacing_start"})
                       if cfg.shards.order == "curriculum" else None),
        "seed": cfg.shards.seed,
        "tokenizer": {"path": "tokenizer.json", "sha256": sha256(tokenizer_json),
                      "vocab_size": tokenizer.get_vocab_size(), "bos_id": special.bos,
                      "eos_id": special.eos, "pad_id": special.pad, "mask_id": special.mask,
                      "add_bos": cfg.tokenizer.add_bos, **tokenizer_origin},
        "splits": splits,
        "tokens_by_source": _by(achieved["train"], 0, achieved["validation"]),
        "tokens_by_lang": _by(achieved["train"], 1, achieved["validation"]),
        "mixture": {"enabled": cfg.mixture.enabled, "temperature": cfg.mixture.temperature,
                    "seed": cfg.mixture.seed, **mixture.report(achieved["train"])},
        "provenance": {
            "config_fingerprint": cfg.fingerprint(),
            "package_version": _package_version(),
            "input": {"path": curated_path,
                      "documents": {split: sum(c for (v, _, _), (_, c, _) in counts.items()
                                               if v == (split != "train")) for split in SPLITS},
                      "tokens": {split: sum(available[split].values()) for split in SPLITS}},
        },
    }
    storage.write_bytes_atomic(fs, storage.join(root, "manifest.json"),
                               json.dumps(manifest, indent=2).encode())
    return manifest


def _tokenize(curated_path: str, cfg: PipelineConfig, tokenizer_json: str, special: SpecialIds):
    """One Ray Data row per curated file, so that files are read and tokenized in parallel
    (read_parquet would pack a small data set's files into one or two blocks)."""
    fs, root = storage.open_fs(curated_path, cfg.storage)
    files = storage.list_files(fs, root, ".parquet")
    if not files:
        raise ValueError(f"no curated Parquet files under {curated_path}")
    curriculum = cfg.shards.order == "curriculum"
    return ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files)).map_batches(
        _FileEncoder, batch_size=1, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cfg.ray.workers or _cpus()),
        fn_constructor_kwargs={
            "curated_path": curated_path, "storage_cfg": cfg.storage,
            "extra_columns": [cfg.shards.curriculum_column] if curriculum else [],
            "encoder": {
                "tokenizer_json": tokenizer_json, "eos_id": special.eos,
                "bos_id": special.bos if cfg.tokenizer.add_bos else None,
                "split_seed": cfg.shards.seed, "validation_fraction": cfg.shards.validation_fraction,
                "difficulty_column": cfg.shards.curriculum_column if curriculum else None}})


class _FileEncoder:
    """Reads one curated file (its `lang` comes from the Hive partition in its path) and
    tokenizes it."""

    def __init__(self, curated_path: str, storage_cfg, extra_columns: list[str], encoder: dict):
        self.fs, _ = storage.open_fs(curated_path, storage_cfg)
        self.columns = ["id", "source", "text"] + extra_columns
        self.encode = Encoder(**encoder)

    def __call__(self, batch: pa.Table) -> pa.Table:
        path = batch.column("path")[0].as_py()
        with self.fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            missing = [c for c in self.columns if c not in parquet.schema_arrow.names]
            if missing:
                raise ValueError(f"{path}: curated file lacks columns {missing}")
            docs = parquet.read(columns=self.columns)
        lang = next((part[5:] for part in path.split("/") if part.startswith("lang=")), None)
        if lang is None:
            raise ValueError(f"{path}: not under a lang=XX partition directory")
        return self.encode(docs.append_column("lang", pa.array([lang] * len(docs), pa.string())))


def _count(docs, copies) -> dict[tuple, tuple[int, int, int]]:
    """(validation, source, lang) -> (tokens, documents, tokens after mixing)."""
    def partial(table: pa.Table) -> pa.Table:
        table = table.select([VALIDATION, "source", "lang", N_TOKENS]).append_column(
            "mixed", pa.array(table.column(N_TOKENS).to_numpy() * copies(table)))
        return table.group_by([VALIDATION, "source", "lang"]).aggregate(
            [(N_TOKENS, "sum"), (N_TOKENS, "count"), ("mixed", "sum")])

    totals: dict[tuple, tuple[int, int, int]] = {}
    for row in docs.map_batches(partial, batch_format="pyarrow").take_all():
        key = (row[VALIDATION], row["source"], row["lang"])
        new = (row[f"{N_TOKENS}_sum"], row[f"{N_TOKENS}_count"], row["mixed_sum"])
        totals[key] = tuple(a + b for a, b in zip(totals.get(key, (0, 0, 0)), new))
    return totals


def _histograms(docs, seed: int) -> dict[tuple[str, str], np.ndarray]:
    """Train tokens per (source, lang) by the mixture's hash draw (see curation.mixture)."""
    def partial(table: pa.Table) -> pa.Table:
        table = table.filter(pc.invert(table.column(VALIDATION)))
        doc_draws = draws(table.column(DOC_HASH).to_numpy(), seed)
        cells = np.array([f"{s}\t{l}" for s, l in zip(table.column("source").to_pylist(),
                                                       table.column("lang").to_pylist())], object)
        rows = [{"cell": cell, "histogram": token_histogram(doc_draws[cells == cell],
                                                            table.column(N_TOKENS).to_numpy()[cells == cell])}
                for cell in sorted(set(cells))]
        return pa.Table.from_pylist(rows, schema=pa.schema([("cell", pa.string()),
                                                            ("histogram", pa.list_(pa.float64()))]))

    totals: dict[tuple[str, str], np.ndarray] = {}
    for row in docs.map_batches(partial, batch_format="pyarrow").take_all():
        cell = tuple(row["cell"].split("\t"))
        totals[cell] = totals.get(cell, 0) + np.asarray(row["histogram"])
    return totals


def _in_split(table: pa.Table, validation: bool) -> pa.Table:
    return table.filter(pc.equal(table.column(VALIDATION), validation))


def _copies_fn(mixture: MixturePlan | None, seed: int):
    if mixture is None:  # validation: every document once, unweighted
        return lambda t: np.ones(len(t), np.int64)
    return lambda t: mixture.copies(np.asarray(t.column("source").to_pylist(), object),
                                    np.asarray(t.column("lang").to_pylist(), object),
                                    t.column(DOC_HASH).to_numpy(), seed)


def _write_split(docs, copies, split: str, fs, root: str, cfg: ShardsConfig) -> tuple[dict, dict]:
    """Pack one split and write its shards; returns its manifest entry and tokens per cell."""
    width = cfg.seq_len + 1
    counts = _count(docs, copies)
    cells = sorted((s, l) for _, s, l in counts)
    mixed = sum(m for _, _, m in counts.values())
    n_groups = max(1, round(mixed / (cfg.pack_group_rows * width)))
    curriculum = cfg.order == "curriculum"
    writer = _ShardWriter(fs, root, split, cfg, cells)
    if mixed == 0:  # an empty split (validation_fraction 0): no shards, no all-to-all on nothing
        return _split_entry([], 0), writer.tokens_by_cell()
    rows = (docs.map_batches(expand_copies, batch_format="pyarrow",
                             fn_kwargs={"copies": copies, "n_groups": n_groups, "seed": cfg.seed})
            .groupby(GROUP, num_partitions=min(n_groups, 4 * _cpus()))
            .map_groups(pack_group, batch_format="pyarrow",
                        fn_kwargs={"seq_len": cfg.seq_len, "cells": cells, "segment_ids": cfg.segment_ids,
                                   "by_difficulty": curriculum}))
    rows = _with_order_key(rows, cfg)
    with tqdm(total=mixed // width, desc=f"{split} shards", unit="row") as progress:
        for batch in rows.sort(ORDER_KEY).iter_batches(batch_format="pyarrow", batch_size=None):
            writer.add(batch)
            progress.update(len(batch))
    return _split_entry(writer.close(), mixed), writer.tokens_by_cell()


def _split_entry(shards: list[dict], mixed: int) -> dict:
    packed = sum(s["tokens"] for s in shards)
    return {"rows": sum(s["rows"] for s in shards), "tokens": packed,
            "input_tokens": int(mixed), "waste_tokens": int(mixed - packed),
            "waste_fraction": round((mixed - packed) / max(mixed, 1), 6), "shards": shards}


def _with_order_key(rows, cfg: ShardsConfig):
    """Row order as a sort key. Shuffled: a seeded hash of the row. Curriculum: each row is
    released when the competence c(t) reaches its difficulty quantile, then placed
    uniformly (by hash) between its release and the end; `sorted` is plain easy-to-hard."""
    if cfg.order == "shuffled":
        return rows.map_batches(
            lambda t: t.append_column(ORDER_KEY, pa.array(mix(t.column(ROW_HASH).to_numpy(), cfg.seed))),
            batch_format="pyarrow")
    rows = rows.materialize()
    difficulties = pa.concat_tables(ray.get(rows.select_columns([ROW_HASH, DIFFICULTY]).to_arrow_refs()))
    hashes, difficulty = difficulties.column(ROW_HASH).to_numpy(), difficulties.column(DIFFICULTY).to_numpy()
    if np.isnan(difficulty).any():
        raise ConfigError(f"shards.curriculum_column={cfg.curriculum_column!r} has nulls or NaN")
    rank = np.empty(len(hashes), np.float64)
    rank[np.lexsort((hashes, difficulty))] = np.arange(len(hashes)) / max(len(hashes), 1)
    keys = _release(rank, cfg.pacing, cfg.pacing_start)
    if cfg.pacing != "sorted":
        keys = keys + (1 - keys) * unit(mix(hashes, cfg.seed))
    by_hash = np.argsort(hashes)
    return rows.map_batches(_lookup_key, batch_format="pyarrow",
                            fn_kwargs={"hashes": hashes[by_hash], "keys": keys[by_hash]})


def _release(quantile: np.ndarray, pacing: str, start: float) -> np.ndarray:
    """Training time t in [0, 1] at which competence c(t) reaches `quantile`:
    linear c(t) = c0 + (1 - c0) t, sqrt c(t) = sqrt(c0² + (1 - c0²) t) (Platanios et al., 2019)."""
    if pacing == "sorted":
        return quantile
    if pacing == "linear":
        return np.clip((quantile - start) / max(1 - start, 1e-12), 0, 1)
    return np.clip((quantile ** 2 - start ** 2) / max(1 - start ** 2, 1e-12), 0, 1)


def _lookup_key(table: pa.Table, hashes: np.ndarray, keys: np.ndarray) -> pa.Table:
    at = np.searchsorted(hashes, table.column(ROW_HASH).to_numpy())
    return table.append_column(ORDER_KEY, pa.array(keys[at]))


class _ShardWriter:
    """Cuts the ordered row stream into shards of a fixed row count and writes each one
    atomically with its checksum; tallies the tokens per (source, lang) written."""

    def __init__(self, fs, root: str, split: str, cfg: ShardsConfig, cells: list[tuple[str, str]]):
        self.fs, self.root, self.split, self.cells = fs, root, split, cells
        row_bytes = (cfg.seq_len + 1) * 4 * (2 if cfg.segment_ids else 1)
        self.rows_per_shard = max(1, int(cfg.target_shard_mb * 2**20) // row_bytes)
        self.columns = [INPUT_IDS] + ([SEGMENT_IDS] if cfg.segment_ids else [])
        self.pending: list[pa.Table] = []
        self.shards: list[dict] = []
        self.cell_tokens = np.zeros(len(cells), np.int64)
        self.last_key = -np.inf

    def add(self, batch: pa.Table) -> None:
        keys = batch.column(ORDER_KEY).to_numpy().astype(np.float64)
        if len(keys) and (keys[0] < self.last_key or np.any(np.diff(keys) < 0)):
            raise RuntimeError("rows reached the shard writer out of order")  # would break determinism
        self.last_key = keys[-1] if len(keys) else self.last_key
        self.cell_tokens += pc.list_flatten(batch.column(PART_TOKENS)).to_numpy().reshape(-1, len(self.cells)).sum(axis=0)
        self.pending.append(batch.select(self.columns))
        while sum(map(len, self.pending)) >= self.rows_per_shard:
            table = pa.concat_tables(self.pending)
            self._write(table.slice(0, self.rows_per_shard))
            self.pending = [table.slice(self.rows_per_shard)]

    def close(self) -> list[dict]:
        rest = pa.concat_tables(self.pending) if self.pending else None
        if rest is not None and len(rest):
            self._write(rest)
        return self.shards

    def _write(self, table: pa.Table) -> None:
        relative = f"{self.split}/shard-{len(self.shards):05d}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table.combine_chunks(), sink, compression="zstd", use_dictionary=False)
        data = sink.getvalue().to_pybytes()
        storage.write_bytes_atomic(self.fs, storage.join(self.root, relative), data)
        width = table.schema.field(INPUT_IDS).type.list_size
        self.shards.append({"path": relative, "rows": len(table), "tokens": len(table) * width,
                            "sha256": hashlib.sha256(data).hexdigest()})

    def tokens_by_cell(self) -> dict[tuple[str, str], int]:
        return {cell: int(n) for cell, n in zip(self.cells, self.cell_tokens)}


def _by(train: dict, axis: int, validation: dict) -> dict[str, dict[str, int]]:
    """Tokens per source (axis 0) or language (axis 1), per split."""
    out: dict[str, dict[str, int]] = {}
    for split, cells in (("train", train), ("validation", validation)):
        for cell, n in cells.items():
            out.setdefault(cell[axis], {"train": 0, "validation": 0})[split] += n
    return dict(sorted(out.items()))


@functools.cache
def _package_version() -> str:
    try:
        return version("rawtext")
    except PackageNotFoundError:
        return "unknown"


def _cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
