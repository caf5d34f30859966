"""The DeepSpeed engine: its config generated from the typed TrainConfig, then created.

One config serves CPU (gloo, torch AdamW) and GPU (NCCL, fused torch AdamW): the device
only changes which optimizer implementation runs. A user JSON (`ds_config_override`) is
merged on top, so any DeepSpeed option stays reachable without a new field here.

The learning-rate schedule is ours (a LambdaLR handed to DeepSpeed, saved in its
checkpoints) because DeepSpeed's built-in schedulers have no warmup-stable-decay.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from training.config import OptimSection, TrainConfig


def lr_factor(step: int, optim: OptimSection) -> float:
    """Learning rate at optimizer step `step`, as a fraction of the peak."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    floor = optim.min_lr_ratio
    if optim.schedule == "wsd":
        decay_start = optim.max_steps - optim.decay_steps
        if step < decay_start:
            return 1.0
        return 1.0 - (1.0 - floor) * min(1.0, (step - decay_start + 1) / max(1, optim.decay_steps))
    progress = min(1.0, (step - optim.warmup_steps) / max(1, optim.max_steps - optim.warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def reapply_schedule(engine, optim: OptimSection) -> None:
    """Set the learning rate of the next step from the schedule of *this* config: a
    restored optimizer carries the rate its previous run's schedule chose (which differs
    when, e.g., max_steps was raised to extend the run)."""
    scheduler = engine.lr_scheduler
    factor = lr_factor(scheduler.last_epoch, optim)
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base * factor


def merge(base: dict, override: dict) -> dict:
    """base with override merged in recursively (override wins)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def deepspeed_config(cfg: TrainConfig, use_gpu: bool, load_universal: bool = False) -> dict[str, Any]:
    """The DeepSpeed JSON config for cfg; `load_universal` when resuming from a checkpoint
    written by a different number of workers."""
    o, z = cfg.optim, cfg.zero
    adam: dict[str, Any] = {"lr": o.lr, "betas": list(o.betas), "eps": o.eps,
                            "weight_decay": o.weight_decay}
    if not z.offload_optimizer:  # offloaded state is stepped by DeepSpeedCPUAdam instead
        adam["torch_adam"] = True
        if use_gpu:
            adam["fused"] = True
    zero: dict[str, Any] = {"stage": z.stage}
    if z.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": use_gpu}
    if z.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": use_gpu}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": cfg.data.grad_accum,
        "gradient_clipping": o.grad_clip,
        "optimizer": {"type": "AdamW", "params": adam},
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.precision == "bf16"},
        # Dynamic loss scaling: start at 2^16, halve on overflow, grow after 1000 clean steps.
        "fp16": {"enabled": cfg.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16,
                 "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1},
        "steps_per_print": 10**9,  # progress goes through training/metrics.py
        "wall_clock_breakdown": False,
        "checkpoint": {"load_universal": load_universal},
    }
    if cfg.ds_config_override:
        config = merge(config, json.loads(Path(cfg.ds_config_override).read_text()))
    return config


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norms' gains are not decayed (as in GPT-2 / llama)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def build_engine(cfg: TrainConfig, model: torch.nn.Module, use_gpu: bool, load_universal: bool = False):
    """deepspeed.initialize on an already-initialized process group (Ray Train made it)."""
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo")
    model.activation_checkpointing = cfg.activation_checkpointing
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=param_groups(model, cfg.optim.weight_decay),
        config=deepspeed_config(cfg, use_gpu, load_universal),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, cfg.optim)),
    )
    return engine
