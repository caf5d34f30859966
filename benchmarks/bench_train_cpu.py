"""Tokens/s of the Ray Train + DeepSpeed path (1 worker) vs a plain PyTorch loop, same
model, batch, precision (fp32) and data, on CPU. Target ratio >= 0.85.

    python benchmarks/bench_train_cpu.py MANIFEST [--steps 200]

Both sides are timed over the second half of the steps (at ~12 steps/s, fewer than 200
steps make windows of a second or two, too short to compare).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from training.config import TrainConfig
from training.data import read_manifest, read_rows, token_matrix
from training.engine import lr_factor, param_groups
from training.model import Transformer, model_config
from training.objectives import make_objective


def config(manifest: str, steps: int, storage: str) -> TrainConfig:
    return TrainConfig.model_validate({
        "model": {"preset": None, "overrides": {"dim": 128, "n_layers": 4, "n_heads": 4}},
        "data": {"manifest": manifest, "batch_size": 8},
        "optim": {"warmup_steps": 5, "max_steps": steps},
        "precision": "fp32", "zero": {"stage": 0},
        "checkpoint": {"storage_path": storage, "every": 10**6},
        "eval": {"every": 10**6}, "scaling": {"num_workers": 1, "cpus_per_worker": 2},
        "metrics": {"log_every": steps // 2, "tensorboard": False},
    })


def plain_loop(cfg: TrainConfig, steps: int) -> float:
    """The same work in a bare PyTorch loop; tokens/s over the second half of the steps."""
    torch.set_num_threads(2)
    manifest = read_manifest(cfg.data.manifest)
    torch.manual_seed(cfg.data.seed)
    model = Transformer(model_config(None, vocab_size=manifest.tokenizer["vocab_size"],
                                     max_seq_len=manifest.seq_len, **cfg.model.overrides))
    o = cfg.optim
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=o.betas, eps=o.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, o))
    objective = make_objective("causal_lm")
    batch_size, split = cfg.data.batch_size, manifest.splits["train"]
    if split.rows[0] < steps * batch_size:
        raise SystemExit(f"the first training shard has {split.rows[0]} rows; "
                         f"{steps} steps need {steps * batch_size}")
    tokens = torch.from_numpy(token_matrix(
        read_rows(split.paths[0], 0, steps * batch_size, ["input_ids"]), "input_ids",
        manifest.seq_len + 1).astype("int64"))
    half = steps // 2
    for i in range(steps):
        if i == half:
            start = time.perf_counter()
        batch = objective.prepare(tokens[i * batch_size:(i + 1) * batch_size])
        loss = objective.loss(model(batch.inputs, batch.attn_mask, batch.is_causal), batch.targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return (steps - half) * cfg.data.batch_size * manifest.seq_len / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    import ray

    from training.trainer import fit, log_dir_for

    storage = tempfile.mkdtemp(prefix="bench-train-")
    cfg = config(args.manifest, args.steps, storage)
    plain = plain_loop(cfg, args.steps)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    fit(cfg)
    records = [json.loads(x) for x in (Path(log_dir_for(cfg)) / "metrics.jsonl").read_text().splitlines()]
    ours = records[-1]["tokens_per_s"]  # the second half of the steps, like the plain loop
    print(f"| path | tokens/s |\n|---|---|\n| plain PyTorch | {plain:,.0f} |\n"
          f"| Ray Train + DeepSpeed (1 worker) | {ours:,.0f} |\n| ratio | {ours / plain:.3f} |")


if __name__ == "__main__":
    main()
