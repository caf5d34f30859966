"""Checkpoints: DeepSpeed state + consolidated weights + the data position, kept by Ray Train.

A checkpoint directory holds
  <tag>/...                 DeepSpeed's state (each rank writes its own shard files)
  latest                    DeepSpeed's pointer to <tag>
  model.pt, model_config.json   consolidated plain PyTorch weights (training/model.py's
                            `save_model`), what export and generate read
  tokenizer.json, tokenizer_config.json   the shards' tokenizer and its special tokens
  train_state.json          step, sequences consumed, world size, manifest

Every rank writes its files into its own local directory and reports it with
`ray.train.report(checkpoint=...)`; Ray Train uploads them into one checkpoint directory
under RunConfig(storage_path, name) (local or s3://) and keeps the last N. Rerunning the
same command finds the latest one with `ray.train.get_checkpoint()`.

A checkpoint written by W workers is loaded by a different number of workers through a
DeepSpeed universal checkpoint (`ds_to_universal`), converted on load.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from training.export import write_tokenizer
from training.model import save_model

STATE_FILE = "train_state.json"


@dataclass
class TrainState:
    step: int  # optimizer steps done
    consumed: int  # training sequences consumed by all workers together (the data position)
    world_size: int
    manifest: str
    skipped_steps: int = 0  # micro-batches skipped by the loss guard so far
    rollbacks: int = 0  # reloads of the last checkpoint by the loss guard so far


def tag_for(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(engine, state: TrainState, tokenizer_path: str, tokenizer_entry: dict,
                    directory: Path) -> None:
    """Write this rank's part of a checkpoint of `engine` at `state` into directory
    (collective: every rank calls it)."""
    engine.save_checkpoint(str(directory), tag=tag_for(state.step))
    model = engine.module
    if engine.zero_optimization_partition_weights():  # ZeRO-3: gather the full weights
        weights = engine._zero3_consolidated_16bit_state_dict()
    else:
        weights = model.state_dict()
    if engine.global_rank == 0:
        save_model(weights, model.config, directory)
        write_tokenizer(tokenizer_path, tokenizer_entry, directory)
        (directory / STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n")


def read_state(directory: Path) -> TrainState:
    return TrainState(**json.loads((directory / STATE_FILE).read_text()))


def latest_checkpoint(run_path: str, filesystem=None):
    """The latest checkpoint Ray Train registered for the run stored at run_path (the one
    a starting worker group gets from `ray.train.get_checkpoint()`); None before the first."""
    import ray.train

    try:
        return ray.train.Result.from_path(run_path, storage_filesystem=filesystem).checkpoint
    except RuntimeError:  # no run there yet
        return None


def latest_state(run_path: str) -> TrainState | None:
    """The TrainState of latest_checkpoint(run_path), read in place."""
    checkpoint = latest_checkpoint(run_path)
    if checkpoint is None:
        return None
    with checkpoint.filesystem.open_input_stream(posixpath.join(checkpoint.path, STATE_FILE)) as f:
        return TrainState(**json.loads(f.read()))


def needs_universal(state: TrainState, world_size: int) -> bool:
    return state.world_size != world_size


def to_universal(directory: Path, state: TrainState) -> str:
    """Convert the DeepSpeed state in directory to a universal checkpoint beside it;
    returns the tag to load."""
    from deepspeed.checkpoint.ds_to_universal import main as ds_to_universal

    tag = tag_for(state.step)
    universal = f"{tag}_universal"
    if not (directory / universal).is_dir():
        ds_to_universal(argparse.Namespace(
            input_folder=str(directory / tag), output_folder=str(directory / universal),
            num_extract_workers=1, num_merge_workers=1, keep_temp_folder=False, strict=True,
            inject_missing_state=True))
    return universal


def restore(engine, directory: Path, state: TrainState) -> None:
    """Load the DeepSpeed state saved at `state` (universal when the world size changed)."""
    tag = to_universal(directory, state) if needs_universal(state, engine.world_size) else tag_for(state.step)
    path, _ = engine.load_checkpoint(str(directory), tag=tag)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {directory}/{tag}")


def fetch(checkpoint) -> Path:
    """A private local copy of a Ray checkpoint (never write into the stored one)."""
    local = Path(tempfile.mkdtemp(prefix="rt-ckpt-"))
    checkpoint.to_directory(str(local))
    return local


def report(metrics: dict, directory: Path | None) -> None:
    """ray.train.report from every rank, with this rank's checkpoint files if any; the
    local copy is deleted once Ray has persisted it."""
    import ray.train

    checkpoint = ray.train.Checkpoint.from_directory(str(directory)) if directory else None
    ray.train.report(metrics, checkpoint=checkpoint)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)

