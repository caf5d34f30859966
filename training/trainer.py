"""`python -m training train CONFIG.yaml [--set section.field=value ...]`: a Ray Train run.

A TorchTrainer runs training/loop.py on `scaling.num_workers` workers. Checkpoints go to
RunConfig(storage_path, name); rerunning the same command resumes from the latest one (Ray
Train finds it), and FailureConfig(max_failures) restarts a failed worker group from it.

Runs on a local Ray (started here) unless RAY_ADDRESS is set, as under `ray job submit`.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
from functools import partial
from pathlib import Path

from curation.config import ConfigError
from training.config import TrainConfig, load_train_config


def log_dir_for(cfg: TrainConfig) -> str:
    """Where rank 0 writes metrics.jsonl and TensorBoard files: beside the checkpoints
    for local storage, else under ./runs/<name> (JSONL cannot be appended on S3)."""
    storage = cfg.checkpoint.storage_path
    base = Path("runs") if "://" in storage else Path(storage)
    return str((base / cfg.checkpoint.name / "logs").resolve())


def fit(cfg: TrainConfig):
    """Run (or resume) training; returns Ray Train's Result."""
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchConfig, TorchTrainer

    from training.data import dataset_name, read_manifest, validation_batch_count, worker_dataset
    from training.loop import train_loop_per_worker

    storage = cfg.checkpoint.storage_path
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    if "://" not in cfg.data.manifest:  # workers do not share the driver's working directory
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(
            update={"manifest": str(Path(cfg.data.manifest).resolve())})})
    run_path = posixpath.join(storage, cfg.checkpoint.name)
    manifest = read_manifest(cfg.data.manifest)
    splits = ["train"] + (["validation"] if validation_batch_count(cfg, manifest) else [])
    # Factories, not datasets: Ray Train calls them at every worker-group start, so each
    # start reads from the data position of the checkpoint it resumes (training/data.py).
    datasets = {dataset_name(split, rank): partial(worker_dataset, cfg, manifest, run_path, split, rank)
                for split in splits for rank in range(cfg.scaling.num_workers)}
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": cfg.model_dump(mode="json"), "log_dir": log_dir_for(cfg)},
        datasets=datasets,
        dataset_config=ray.train.DataConfig(
            datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.scaling.num_workers,
                                               use_gpu=cfg.scaling.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=cfg.checkpoint.name, storage_path=storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
            failure_config=ray.train.FailureConfig(max_failures=cfg.failure.max_failures)),
    )
    return trainer.fit()


def ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address or "local", include_dashboard=False if not address else None)


def train_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m training train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="training YAML (see configs/train_demo.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a field, e.g. optim.lr=3e-4")
    args = parser.parse_args(argv)
    try:
        cfg = load_train_config(args.config, args.overrides)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    from training.data import read_manifest

    try:
        read_manifest(cfg.data.manifest)  # fail here, clearly, not in every worker retry
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ensure_ray()
    result = fit(cfg)
    print(f"checkpoint: {result.checkpoint.path if result.checkpoint else None}")
    print(f"metrics:    {Path(log_dir_for(cfg)) / 'metrics.jsonl'}")
    return 0


def warm_ops_command(argv: list[str]) -> int:
    """Build DeepSpeed's CPU ops once (into $TORCH_EXTENSIONS_DIR) so runs and tests load
    them instead of compiling (~40-60 s each)."""
    from deepspeed.ops.op_builder import CPUAdamBuilder, ShareMemCommBuilder

    for builder in (ShareMemCommBuilder(), CPUAdamBuilder()):
        builder.load(verbose=False)
        print(f"ready: {builder.name}")
    return 0
