"""The dedup step of a run: mark duplicates among the map phase's kept documents, then
split every part file into `curated/` (kept) and `rejected/` (duplicates, with `dup_of`).

The marks come from `curation.dedup.phase.deduplicate` (all-to-all, through Ray Data).
The split runs one Ray Data row per part file; each returns its statistics delta, so
stats.json still reconciles. `_dedup.json` commits the step: a re-run with no new map
work reuses it, any new map work invalidates it.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from curation import stats as run_stats
from curation import storage
from curation.config import PipelineConfig
from curation.dedup.phase import deduplicate

DONE = "_dedup.json"
DUP_COLUMNS = ("dup_cluster_id", "dup_cluster_size", "dup_kept", "dup_of")


def _split_parts(batch: dict, marks: pa.Table, config_json: str, dirs: tuple[str, str, str]) -> dict:
    config = PipelineConfig.model_validate_json(config_json)
    fs, root = storage.open_fs(config.run.output, config.storage)
    deltas = [_split(fs, root, config, str(relative), marks, *dirs) for relative in batch["part"]]
    return {"delta": [json.dumps(d) for d in deltas]}


def _split(fs, root: str, config: PipelineConfig, relative: str, marks: pa.Table,
           source_dir: str, kept_dir: str, rejected_dir: str) -> dict:
    with fs.open(storage.join(root, source_dir, relative), "rb") as f:
        table = pq.read_table(f)
    lang = relative.split("/", 1)[0].removeprefix("lang=")
    mark = marks.take(pc.index_in(table.column("id"), value_set=marks.column("id")))
    for name in DUP_COLUMNS:
        table = table.append_column(name, mark.column(name))
    reason = mark.column("dup_reason")
    duplicate = pc.is_valid(reason)
    kept = table.filter(pc.invert(duplicate))
    dropped = table.filter(duplicate).append_column("reason", reason.filter(duplicate))
    dropped = dropped.append_column("lang", pa.array([lang] * len(dropped), pa.string()))
    if len(kept):
        storage.write_parquet_atomic(fs, storage.join(root, kept_dir, relative), kept)
    if len(dropped) and config.run.write_rejected:
        name = relative.rsplit("/", 1)[-1]
        storage.write_parquet_atomic(fs, storage.join(root, rejected_dir, f"dedup-{lang}-{name}"), dropped)
    delta = run_stats.new_stats()
    scored = table.append_column("reason", reason)
    run_stats.record_stage(delta, "dedup", scored, scored)
    run_stats.record_later_drops(delta, dropped)
    return delta


def run_dedup_phase(fs, root: str, config: PipelineConfig, stats: dict, source_dir: str,
                    kept_dir: str, rejected_dir: str, redo: bool) -> None:
    """Deduplicate `source_dir` into `kept_dir` + `rejected_dir`; merge the effect into `stats`."""
    done_path = storage.join(root, DONE)
    if redo or not fs.exists(done_path):
        for old in fs.glob(storage.join(root, kept_dir, "**", "*.parquet")) + \
                fs.glob(storage.join(root, rejected_dir, "dedup-*.parquet")):
            fs.rm(old)
        parts = sorted(p.split(f"/{source_dir}/", 1)[1]
                       for p in fs.glob(storage.join(root, source_dir, "**", "*.parquet")))
        result = {"dedup": {}, "delta": run_stats.new_stats()}
        if parts:
            urls = [storage.to_url(fs, storage.join(root, source_dir, p)) for p in parts]
            docs = ray.data.read_parquet(urls, filesystem=fs, columns=["id", "source", "text", "path", "record"])
            marks_ds, result["dedup"] = deduplicate(docs, config.dedup, [s.name for s in config.sources])
            marks = pa.concat_tables(ray.get(marks_ds.to_arrow_refs()))
            rows = ray.data.from_items([{"part": p} for p in parts], override_num_blocks=len(parts)) \
                .map_batches(_split_parts, batch_size=1, fn_kwargs={
                    "marks": marks, "config_json": config.model_dump_json(),
                    "dirs": (source_dir, kept_dir, rejected_dir)}).take_all()
            for row in rows:
                run_stats.merge(result["delta"], json.loads(row["delta"]))
        storage.write_bytes_atomic(fs, done_path, json.dumps(result).encode())
    else:
        result = json.loads(fs.cat_file(done_path))
    run_stats.merge(stats, result["delta"])
    stats["dedup"] = result["dedup"]
