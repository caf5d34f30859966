"""The training configuration: one YAML file, validated into typed sections.

Every option is declared here with its default and meaning. The DeepSpeed config is
generated from it (training/engine.py); `ds_config_override` can still change any
DeepSpeed key. Unknown keys are errors that name the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from curation.config import Section, read_yaml_config


class ModelSection(Section):
    preset: str | None = Field("260K", description="Preset of training.model.PRESETS (260K, 15M, "
                               "42M, 110M, gpt2-124M); null starts from ModelConfig's defaults.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="ModelConfig fields replacing the preset's, e.g. "
        "{dim: 64, n_layers: 2}. vocab_size and max_seq_len default to the shards' tokenizer "
        "and seq_len.")


class ObjectiveSection(Section):
    name: Literal["causal_lm", "prefix_lm", "masked_lm"] = Field(
        "causal_lm", description="Training objective (training/objectives.py).")
    mask_prob: float = Field(0.15, gt=0, lt=1, description="masked_lm: share of positions masked.")
    prefix_fraction: float | None = Field(
        None, gt=0, lt=1, description="prefix_lm: fixed prefix share of each row; null draws it "
        "uniformly per row.")
    document_masking: bool = Field(
        True, description="When the shards carry segment_ids, attention never crosses a document "
        "boundary.")


class DataSection(Section):
    manifest: str = Field("out/demo/curation/shards/manifest.json",
                          description="Token shard manifest.json (local path or s3://).")
    batch_size: int = Field(8, ge=1, description="Sequences per worker per micro-step.")
    grad_accum: int = Field(1, ge=1, description="Micro-steps accumulated per optimizer step.")
    seed: int = Field(1234, description="Seeds model init and the objectives' random masking.")
    prefetch_batches: int = Field(4, ge=0, description="Batches Ray Data prepares ahead of the "
                                  "step (iter_torch_batches).")
    read_cpus: float = Field(0, ge=0, description="CPUs each Ray Data read task reserves. 0: reads "
                             "run beside training workers that hold every CPU of their node.")


class OptimSection(Section):
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate / peak.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decoupled weight decay.")
    schedule: Literal["cosine", "wsd"] = Field(
        "cosine", description="`cosine`: linear warmup then cosine decay to min_lr over the run. "
        "`wsd`: warmup, stable at lr, linear decay over the last `decay_steps`.")
    warmup_steps: int = Field(100, ge=0, description="Linear warmup steps.")
    decay_steps: int = Field(0, ge=0, description="wsd: length of the final decay.")
    max_steps: int = Field(1000, ge=1, description="Optimizer steps of the whole run.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm; 0 disables.")


class ZeroSection(Section):
    stage: Literal[0, 1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    offload_optimizer: bool = Field(False, description="Keep optimizer state on the CPU "
                                    "(DeepSpeedCPUAdam).")
    offload_params: bool = Field(False, description="Stage 3 only: keep parameters on the CPU.")

    @model_validator(mode="after")
    def _offload_needs_stage(self) -> ZeroSection:
        if self.offload_params and self.stage != 3:
            raise ValueError("offload_params needs stage 3")
        if self.offload_optimizer and self.stage == 0:
            raise ValueError("offload_optimizer needs stage 1, 2 or 3")
        return self


class CheckpointSection(Section):
    storage_path: str = Field("out/train", description="Where runs live (local path or s3://); "
                              "a run's checkpoints go under storage_path/name.")
    name: str = Field("run", description="Run name. Rerunning with the same name and storage "
                      "resumes from its latest checkpoint.")
    every: int = Field(200, ge=1, description="Checkpoint every N optimizer steps (and at the end).")
    keep: int = Field(3, ge=1, description="Keep the last N checkpoints.")


class EvalSection(Section):
    every: int = Field(200, ge=1, description="Validation loss every N optimizer steps (and at the end).")
    max_batches: int = Field(20, ge=1, description="Validation batches per worker per evaluation.")


class ScalingSection(Section):
    num_workers: int = Field(1, ge=1, description="Ray Train workers (one per GPU on GPU).")
    use_gpu: bool = Field(False, description="One GPU per worker, NCCL; else CPU and gloo.")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs reserved by each worker.")
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per worker; default: cpus_per_worker.")


class FailureSection(Section):
    max_failures: int = Field(3, ge=0, description="Worker-group restarts from the last checkpoint "
                              "before the run fails.")
    crash_at_step: int | None = Field(
        None, description="Testing only: rank 1 (or 0 with one worker) exits the process once "
        "at this step, so the restart path can be exercised.")


class GuardSection(Section):
    spike_factor: float = Field(
        3.0, gt=1, description="A step whose loss exceeds this factor times the running mean is "
        "bad (as is a NaN/inf loss or gradient norm); its update is skipped.")
    max_bad_steps: int = Field(
        5, ge=1, description="After this many consecutive bad steps, roll back to the last checkpoint.")
    warmup_steps: int = Field(20, ge=0, description="Steps before the spike test applies (the "
                              "loss falls fast at first).")


class MetricsSection(Section):
    log_every: int = Field(10, ge=1, description="Write metrics every N optimizer steps.")
    peak_flops: float | None = Field(
        None, gt=0, description="Peak FLOP/s of one device for MFU; default: detected "
        "(see training/metrics.py).")
    tensorboard: bool = Field(True, description="Also write TensorBoard event files.")


class TrainConfig(Section):
    model: ModelSection = ModelSection()
    objective: ObjectiveSection = ObjectiveSection()
    data: DataSection = DataSection()
    optim: OptimSection = OptimSection()
    precision: Literal["bf16", "fp16", "fp32"] = Field(
        "bf16", description="bf16, fp16 (dynamic loss scaling) or fp32 weights/compute.")
    zero: ZeroSection = ZeroSection()
    activation_checkpointing: bool = Field(False, description="Recompute block activations in backward.")
    ds_config_override: str | None = Field(
        None, description="JSON file merged (recursively) on top of the generated DeepSpeed config.")
    checkpoint: CheckpointSection = CheckpointSection()
    eval: EvalSection = EvalSection()
    scaling: ScalingSection = ScalingSection()
    failure: FailureSection = FailureSection()
    guard: GuardSection = GuardSection()
    metrics: MetricsSection = MetricsSection()

    @model_validator(mode="after")
    def _schedule_fits(self) -> TrainConfig:
        o = self.optim
        if o.warmup_steps + (o.decay_steps if o.schedule == "wsd" else 0) > o.max_steps:
            raise ValueError("optim: warmup_steps (+ decay_steps for wsd) exceed max_steps")
        return self


def load_train_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML file, apply `section.field=value` overrides, validate."""
    return read_yaml_config(TrainConfig, path, overrides)
