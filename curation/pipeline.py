"""The map phase, without Ray: documents of one input task through every stage.

`build_stages` turns the config into the ordered stage list; `apply_stage` runs one stage
on the live rows of a batch and merges the result back; `process_task` reads a task,
runs all stages batch by batch and writes the task's Parquet parts plus its completion
marker. The executor (curation.executor) decides where and how many of these run.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pyarrow as pa
import pyarrow.compute as pc

from curation import stats as run_stats
from curation import storage
from curation.config import PipelineConfig
from curation.readers import ReadTask, read_documents
from curation.stages.base import Stage

MARKERS = "_tasks"
REJECTED = "rejected"


def build_stages(config: PipelineConfig) -> list[Stage]:
    """The enabled stages, in pipeline order. Imports are local: a disabled stage's
    heavy dependencies are never loaded."""
    stages: list[Stage] = []
    if config.normalize.enabled:
        from curation.stages.normalize import NormalizeStage
        stages.append(NormalizeStage(config.normalize))
    if config.langid.enabled:
        from curation.stages.langid import LangIdStage
        stages.append(LangIdStage(config.langid))
    if config.quality.enabled:
        from curation.stages.quality import QualityStage
        stages.append(QualityStage(config.quality))
    if config.perplexity.enabled:
        from curation.stages.perplexity import PerplexityStage
        stages.append(PerplexityStage(config.perplexity))
    return stages


def _with_columns(table: pa.Table, columns: dict[str, pa.DataType]) -> pa.Table:
    for name, dtype in columns.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), dtype))
    return table


def apply_stage(stage: Stage, table: pa.Table, stats: dict | None = None) -> pa.Table:
    """Score and select the live rows (reason is null); dropped rows pass untouched, with
    null values in the stage's columns so that every batch keeps one schema."""
    live_mask = pc.is_null(table.column("reason"))
    live = table.filter(live_mask)
    dead = table.filter(pc.invert(live_mask))
    scored = stage.score(live) if len(live) else _with_columns(live, stage.writes)
    for name, dtype in stage.writes.items():
        column = scored.column(name)
        if column.type != dtype:
            scored = scored.set_column(scored.schema.get_field_index(name), name, column.cast(dtype))
    reasons = stage.select(scored) if len(scored) else pa.array([], pa.string())
    scored = scored.set_column(scored.schema.get_field_index("reason"), "reason", reasons)
    if stats is not None:
        run_stats.record_stage(stats, stage.name, live, scored)
    dead = _with_columns(dead, stage.writes).select(scored.column_names).cast(scored.schema)
    return pa.concat_tables([scored, dead])


def run_stages(stages: list[Stage], table: pa.Table, stats: dict | None = None) -> pa.Table:
    if stats is not None:
        run_stats.record_input(stats, table)
        run_stats.record_stage(stats, "read", table, table)
    for stage in stages:
        table = apply_stage(stage, table, stats)
    if stats is not None:
        run_stats.record_final(stats, table)
    return table


class TaskWriter:
    """Writes one task's kept rows (partitioned by language) and dropped rows as Parquet
    parts named after the task, rolling over at `target_bytes`."""

    def __init__(self, fs, output: str, kept_dir: str, task_id: str, write_rejected: bool,
                 target_bytes: int):
        self.fs, self.output, self.kept_dir, self.task_id = fs, output, kept_dir, task_id
        self.write_rejected = write_rejected
        self.target_bytes = target_bytes
        self.pending: dict[str, list[pa.Table]] = defaultdict(list)
        self.parts = 0
        self.files: list[str] = []

    def add(self, table: pa.Table) -> None:
        dropped = pc.is_valid(table.column("reason"))
        kept = table.filter(pc.invert(dropped)).drop_columns(["reason"])
        if "lang" in kept.column_names:
            for lang in pc.unique(kept.column("lang").fill_null("unknown")).to_pylist():
                rows = kept.filter(pc.equal(kept.column("lang").fill_null("unknown"), lang))
                self._buffer(f"{self.kept_dir}/lang={lang}", rows.drop_columns(["lang"]))
        else:
            self._buffer(f"{self.kept_dir}/lang=unknown", kept)
        if self.write_rejected:
            self._buffer(REJECTED, table.filter(dropped))

    def _buffer(self, directory: str, rows: pa.Table) -> None:
        if not len(rows):
            return
        self.pending[directory].append(rows)
        if sum(t.nbytes for t in self.pending[directory]) >= self.target_bytes:
            self._flush(directory)

    def _flush(self, directory: str) -> None:
        table = pa.concat_tables(self.pending.pop(directory))
        relative = f"{directory}/{self.task_id}-{self.parts:04d}.parquet"
        self.parts += 1
        storage.write_parquet_atomic(self.fs, storage.join(self.output, relative), table)
        self.files.append(relative)

    def close(self) -> list[str]:
        for directory in list(self.pending):
            self._flush(directory)
        return self.files


def process_task(task: ReadTask, config: PipelineConfig, stages: list[Stage], fs, root: str,
                 kept_dir: str) -> dict:
    """Run one input task to completion; returns its marker (stats and files written).

    Outputs are committed in order: parts first, the marker last. A task without a marker
    is unfinished, and its parts are deleted before it is run again (`stale_parts`).
    """
    stats = run_stats.new_stats()
    source = next(s for s in config.sources if s.name == task.source)
    writer = TaskWriter(fs, root, kept_dir, task.task_id,
                        config.run.write_rejected, config.run.target_part_mb << 20)
    for batch in read_documents(task, source, config.storage, config.run.docs_per_batch):
        writer.add(run_stages(stages, batch, stats))
    marker = {"task_id": task.task_id, "path": task.path, "source": task.source,
              "files": writer.close(), "stats": stats}
    storage.write_bytes_atomic(fs, storage.join(root, MARKERS, f"{task.task_id}.json"),
                               json.dumps(marker).encode())
    return marker


def part_task_id(relative_path: str) -> str:
    """`curated/lang=en/c4-3fa2-0001.parquet` -> `c4-3fa2`."""
    return relative_path.rsplit("/", 1)[-1].rsplit("-", 1)[0]
