"""The DeepSpeed engine from the typed config: the generated JSON, the LR schedules, and
real engines (one gloo process) stepping in each precision / ZeRO / offload combination."""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.distributed as dist

from training.config import TrainConfig
from training.engine import build_engine, deepspeed_config, lr_factor
from training.model import Transformer, model_config
from training.objectives import make_objective


def config(**sections) -> TrainConfig:
    return TrainConfig.model_validate({"data": {"batch_size": 4}, **sections})


def test_generated_deepspeed_config_follows_the_typed_config(tmp_path):
    cfg = config(zero={"stage": 3, "offload_optimizer": True, "offload_params": True},
                 precision="fp16", optim={"grad_clip": 0.5}, data={"batch_size": 4, "grad_accum": 3})
    ds = deepspeed_config(cfg, use_gpu=True)
    assert ds["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": True},
                                       "offload_param": {"device": "cpu", "pin_memory": True}}
    assert ds["fp16"]["enabled"] and ds["fp16"]["loss_scale"] == 0  # dynamic loss scaling
    assert not ds["bf16"]["enabled"]
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (4, 3)
    assert ds["gradient_clipping"] == 0.5
    assert "torch_adam" not in ds["optimizer"]["params"]  # offloaded: DeepSpeedCPUAdam steps it

    gpu = deepspeed_config(config(), use_gpu=True)["optimizer"]["params"]
    cpu = deepspeed_config(config(), use_gpu=False)["optimizer"]["params"]
    assert gpu["torch_adam"] and gpu["fused"] and cpu["torch_adam"] and "fused" not in cpu

    override = tmp_path / "ds.json"
    override.write_text(json.dumps({"zero_optimization": {"overlap_comm": True}, "steps_per_print": 5}))
    merged = deepspeed_config(config(ds_config_override=str(override)), use_gpu=False)
    assert merged["zero_optimization"] == {"stage": 2, "overlap_comm": True}
    assert merged["steps_per_print"] == 5


def test_offload_options_are_checked():
    with pytest.raises(ValueError, match="offload_params needs stage 3"):
        config(zero={"stage": 2, "offload_params": True})
    with pytest.raises(ValueError, match="offload_optimizer needs stage 1, 2 or 3"):
        config(zero={"stage": 0, "offload_optimizer": True})


def test_schedules():
    cosine = config(optim={"warmup_steps": 10, "max_steps": 110, "min_lr_ratio": 0.1}).optim
    assert lr_factor(0, cosine) == pytest.approx(0.1) and lr_factor(9, cosine) == 1.0
    assert lr_factor(60, cosine) == pytest.approx(0.55)  # half-way down the cosine
    assert lr_factor(110, cosine) == pytest.approx(0.1)
    wsd = config(optim={"schedule": "wsd", "warmup_steps": 10, "decay_steps": 20,
                        "max_steps": 100, "min_lr_ratio": 0.0}).optim
    assert [lr_factor(s, wsd) for s in (10, 79)] == [1.0, 1.0]
    assert lr_factor(89, wsd) == pytest.approx(0.5) and lr_factor(99, wsd) == 0.0
    with pytest.raises(ValueError, match="exceed max_steps"):
        config(optim={"schedule": "wsd", "warmup_steps": 10, "decay_steps": 95, "max_steps": 100})


@pytest.fixture(scope="module")
def process_group():
    """A one-process gloo group, as Ray Train makes for each worker."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
           "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        dist.init_process_group("gloo", rank=0, world_size=1)
        yield
        dist.destroy_process_group()


@pytest.mark.parametrize("precision,zero,checkpointing", [
    ("fp32", {"stage": 0}, False),
    ("bf16", {"stage": 1, "offload_optimizer": True}, False),
    ("bf16", {"stage": 2}, True),
    ("bf16", {"stage": 3, "offload_optimizer": True, "offload_params": True}, False),
])
def test_engine_steps_reduce_the_loss(process_group, precision, zero, checkpointing):
    """One repeated batch: each configuration must fit it (the loss falls), so its
    optimizer, precision, partitioning and recomputation are really wired."""
    cfg = config(precision=precision, zero=zero, activation_checkpointing=checkpointing,
                 optim={"lr": 1e-2, "warmup_steps": 0, "max_steps": 10})
    torch.manual_seed(0)
    model = Transformer(model_config(None, vocab_size=64, dim=32, n_layers=2, n_heads=2, max_seq_len=16))
    engine = build_engine(cfg, model, use_gpu=False)
    objective = make_objective("causal_lm")
    batch = objective.prepare(torch.randint(64, (4, 17), generator=torch.Generator().manual_seed(1)))
    losses = []
    for _ in range(8):
        loss = objective.loss(engine(batch.inputs, attn_mask=batch.attn_mask, is_causal=batch.is_causal),
                              batch.targets)
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
    dtype = next(engine.module.parameters()).dtype
    assert dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
