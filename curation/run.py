"""`python -m curation run CONFIG.yaml`: the whole curation path for one config.

map phase (per input file: read, normalize, langid, quality, perplexity; resumable per
task) -> dedup phase (all-to-all) -> token shards; then stats.json and the HTML report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import typing

import pyarrow as pa

from curation import stats as run_stats
from curation import storage
from curation.config import ConfigError, PipelineConfig, load_config
from curation.executor import connect, run_tasks
from curation.pipeline import MARKERS, REJECTED, apply_stage, build_stages, part_task_id
from curation.readers import plan_tasks, read_documents
from curation.stages.base import Stage

RUN_FILE = "_run.json"
CURATED = "curated"
PREDEDUP = "prededup"  # kept documents of the map phase, when dedup follows


class RunError(RuntimeError):
    pass


def prepare_output(fs, root: str, config: PipelineConfig) -> tuple[PipelineConfig, set[str]]:
    """Apply `run.on_existing`; returns the config to use (a resumed run keeps the fitted
    values it started with) and the ids of tasks already finished."""
    run_file = storage.join(root, RUN_FILE)
    if not fs.exists(run_file):
        return config, set()
    previous = json.loads(fs.cat_file(run_file))
    policy = config.run.on_existing
    if policy == "refuse":
        raise RunError(f"{config.run.output} already holds a run; choose another run.output "
                       "or set run.on_existing to resume or overwrite")
    if policy == "overwrite":
        fs.rm(root, recursive=True)
        return config, set()
    if previous["fingerprint"] != config.fingerprint():
        raise RunError(
            f"{config.run.output} holds a run made with a different config "
            f"({previous['fingerprint']} != {config.fingerprint()}); resuming would mix outputs. "
            "Choose another run.output or set run.on_existing: overwrite")
    fitted = PipelineConfig.model_validate(previous["config"])
    fitted = fitted.model_copy(update={"run": config.run, "ray": config.ray, "storage": config.storage})
    done = {p.rsplit("/", 1)[-1][:-5] for p in fs.glob(storage.join(root, MARKERS, "*.json"))}
    return fitted, done


def remove_stale_parts(fs, root: str, done: set[str]) -> int:
    """Delete Parquet parts of tasks that never committed their marker (an earlier run
    was interrupted), so a re-run never mixes partial outputs."""
    stale = [p for d in (CURATED, PREDEDUP, REJECTED)
             for p in fs.glob(storage.join(root, d, "**", "*.parquet"))
             if not p.rsplit("/", 1)[-1].startswith("dedup-") and part_task_id(p) not in done]
    for path in stale:
        fs.rm(path)
    return len(stale)


def fit_stages(config: PipelineConfig, tasks) -> tuple[PipelineConfig, dict]:
    """Let stages fit data-dependent settings on a sample that passed the stages before
    them; the patches become part of the config every worker receives."""
    stages = build_stages(config)
    if not any(type(s).fit is not Stage.fit for s in stages):
        return config, {}
    sample_size = config.run.fit_sample_docs
    batches, have = [], 0
    for task in tasks:
        source = next(s for s in config.sources if s.name == task.source)
        for batch in read_documents(task, source, config.storage, config.run.docs_per_batch):
            batches.append(batch)
            have += len(batch)
            if have >= sample_size:
                break
        if have >= sample_size:
            break
    sample = pa.concat_tables(batches).slice(0, sample_size)
    patches = {}
    for stage in stages:
        stage.setup()
        sample = apply_stage(stage, sample)
        patch = stage.fit(sample.filter(sample.column("reason").is_null()))
        if patch:
            section = getattr(config, stage.name).model_copy(update=patch)
            config = config.model_copy(update={stage.name: section})
            patches[stage.name] = patch
    return config, patches


def run(config: PipelineConfig) -> dict:
    started = time.time()
    connect(config.ray)
    fs, root = storage.open_fs(config.run.output, config.storage)
    fingerprint = config.fingerprint()
    config, done = prepare_output(fs, root, config)
    tasks = plan_tasks(config.sources, config.storage)
    kept_dir = PREDEDUP if config.dedup.enabled else CURATED
    if done:
        removed = remove_stale_parts(fs, root, done)
        print(f"resuming {config.run.output}: {len(done)} of {len(tasks)} input files already done"
              + (f", {removed} partial files removed" if removed else ""))
        fitted = {}
    else:
        remove_stale_parts(fs, root, done)
        config, fitted = fit_stages(config, tasks)
        storage.write_bytes_atomic(fs, storage.join(root, RUN_FILE), json.dumps(
            {"fingerprint": fingerprint, "config": config.model_dump(mode="json"), "fitted": fitted},
            indent=2).encode())
    todo = [t for t in tasks if t.task_id not in done]
    new_markers = run_tasks(todo, config, kept_dir)
    failed = [m for m in new_markers if "error" in m]
    markers = [json.loads(fs.cat_file(p)) for p in fs.glob(storage.join(root, MARKERS, "*.json"))]
    stats = run_stats.merge_all(m["stats"] for m in markers)
    stats["failed_files"] = [{"path": m["path"], "error": m["error"]} for m in failed]
    stats["tasks"] = {"total": len(tasks), "done": len(markers), "failed": len(failed)}
    if config.dedup.enabled:
        from curation.dedup_step import run_dedup_phase
        run_dedup_phase(fs, root, config, stats, source_dir=PREDEDUP, kept_dir=CURATED,
                        rejected_dir=REJECTED, redo=bool(todo))
    run_stats.reconcile(stats)
    stats["fingerprint"] = fingerprint
    stats["fitted"] = json.loads(fs.cat_file(storage.join(root, RUN_FILE)))["fitted"]
    if config.shards.enabled and not failed:
        from curation.shards import build_shards
        manifest = build_shards(storage.join(config.run.output, CURATED),
                                storage.join(config.run.output, "shards"), config)
        stats["shards"] = {split: {k: v for k, v in info.items() if k != "shards"}
                           for split, info in manifest["splits"].items()}
    stats["wall_s"] = round(time.time() - started, 1)
    storage.write_bytes_atomic(fs, storage.join(root, "stats.json"), json.dumps(stats, indent=2).encode())
    return stats


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m curation run", description=__doc__)
    parser.add_argument("config", help="pipeline YAML (see docs/configuration.md)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set run.output=/tmp/out (repeatable)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        stats = run(config)
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from curation.inspect import summarize, write_report
    summarize(config.run.output, config.storage, stats=stats)
    report = write_report(config.run.output, config.storage)
    out = config.run.output
    print(f"\ncurated documents: {storage.join(out, CURATED)}/lang=*/\n"
          f"rejected documents: {storage.join(out, REJECTED)}/\n"
          f"stats:              {storage.join(out, 'stats.json')}\n"
          f"report:             {report}")
    if "shards" in stats:
        print(f"token shards:       {storage.join(out, 'shards', 'manifest.json')}")
    if stats["failed_files"]:
        lines = "\n".join(f"  {f['error']}" for f in stats["failed_files"])
        print(f"\n{len(stats['failed_files'])} input file(s) could not be processed "
              f"(re-running resumes them):\n{lines}", file=sys.stderr)
        return 1 if config.run.fail_on_unreadable else 0
    return 0


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(v) for v in typing.get_args(annotation))
    return getattr(annotation, "__name__", None) if isinstance(annotation, type) else \
        str(annotation).replace("typing.", "").replace("curation.config.", "")


def config_doc(argv: list[str]) -> int:
    """Print docs/configuration.md: every option (path, type, default, meaning)."""
    from pydantic import BaseModel

    from curation.config import SourceConfig

    def rows(model: type[BaseModel], prefix: str):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from rows(annotation, f"{prefix}{name}.")
                continue
            default = "(required)" if field.is_required() else repr(field.get_default(call_default_factory=True))
            if len(default) > 60:
                default = default[:57] + "..."
            cells = [f"`{prefix}{name}`", f"`{_type_name(annotation)}`", f"`{default}`", field.description or ""]
            yield "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    header = "| option | type | default | meaning |\n|---|---|---|---|"
    print("# Configuration reference\n\nGenerated by `python -m curation config-doc` from "
          "`curation/config.py`, the one place where options are declared (a test keeps this file "
          "current). Relative paths are relative to the working directory.\n")
    print(header + "\n" + "\n".join(r for r in rows(PipelineConfig, "") if not r.startswith("| `sources`")))
    print("\nEach entry of `sources`:\n\n" + header + "\n" + "\n".join(rows(SourceConfig, "sources[].")))
    return 0
