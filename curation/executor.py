"""Runs the map phase on Ray Data: one row per input task, processed by a pool of actors.

Each actor builds the stages once (models load once per worker) and runs whole tasks:
read -> every stage -> Parquet parts -> completion marker. Documents never travel through
the object store between stages, and a task is the unit of resumption (datatrove-style
markers), which Ray Data's own writers cannot give. All-to-all phases (dedup, shard
shuffles) are separate steps that read these outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import traceback

import ray
from tqdm import tqdm

from curation import storage
from curation.config import PipelineConfig, RayConfig
from curation.pipeline import build_stages, process_task
from curation.readers import ReadError, ReadTask


def connect(cfg: RayConfig) -> None:
    """Join the configured cluster ($RAY_ADDRESS under `ray job submit`) or start a private
    local Ray. address="local" matters: a bare ray.init() would join any Ray that happens
    to run on this machine."""
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, configure_logging=False)
    else:
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False,
                 configure_logging=False, log_to_driver=False)


class _TaskRunner:
    """A Ray Data actor: stages are set up once, then whole tasks are processed."""

    def __init__(self, config_json: str, root: str, kept_dir: str):
        self.config = PipelineConfig.model_validate_json(config_json)
        self.stages = build_stages(self.config)
        for stage in self.stages:
            stage.setup()
        self.fs, self.root = storage.open_fs(self.config.run.output, self.config.storage)
        self.kept_dir = kept_dir

    def __call__(self, batch: dict) -> dict:
        results = []
        for fields in zip(*(batch[f.name] for f in dataclasses.fields(ReadTask))):
            task = ReadTask(*(str(v) for v in fields))
            try:
                marker = process_task(task, self.config, self.stages, self.fs, self.root, self.kept_dir)
            except ReadError as e:
                marker = {"task_id": task.task_id, "path": task.path, "error": str(e)}
            except Exception as e:  # noqa: BLE001 - a bug or a corrupt input must not sink the other tasks
                detail = "".join(traceback.format_exception_only(type(e), e)).strip()
                marker = {"task_id": task.task_id, "path": task.path,
                          "error": f"{task.path}: unexpected {detail}"}
            results.append(json.dumps(marker))
        return {"marker": results}


def run_tasks(tasks: list[ReadTask], config: PipelineConfig, kept_dir: str) -> list[dict]:
    """Process `tasks` in parallel; returns one marker per task (with `error` if it failed)."""
    if not tasks:
        return []
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our bar counts documents, not blocks
    workers = config.ray.workers or max(1, min(len(tasks), int(ray.cluster_resources().get("CPU", 1))))
    resources = [s.resources for s in build_stages(config)]
    num_cpus = max((r.num_cpus for r in resources), default=1.0)
    memory = max((r.memory_mb for r in resources), default=0) << 20
    ds = ray.data.from_items([dataclasses.asdict(t) for t in tasks], override_num_blocks=len(tasks))
    ds = ds.map_batches(
        _TaskRunner,
        fn_constructor_args=(config.model_dump_json(), config.run.output, kept_dir),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(tasks))),
        num_cpus=num_cpus,
        memory=memory or None,
    )
    markers = []
    docs = kept = 0
    with tqdm(total=len(tasks), desc="curate", unit="file", dynamic_ncols=True) as bar:
        for row in ds.iter_rows():
            marker = json.loads(row["marker"])
            markers.append(marker)
            if "stats" in marker:
                docs += marker["stats"]["input"]["docs"]
                kept += marker["stats"]["kept"]["docs"]
            bar.set_postfix(docs=f"{docs:,}", kept=f"{kept:,}", refresh=False)
            bar.update()
    return markers
