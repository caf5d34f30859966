"""Tokens/s, MFU and data wait of the ~124M preset (gpt2-124M) in bf16 on one GPU, through
the real trainer: Ray Train + DeepSpeed, token shards streamed through Ray Data.
Targets (trainer issue): MFU >= 40%, data wait <= 2% of step time.

    python -m curation run configs/demo.yaml --set run.output=out/bench_gpu \\
        --set shards.seq_len=1024 --set perplexity.enabled=false
    python benchmarks/bench_train_gpu.py out/bench_gpu/shards/manifest.json [--steps 300]

The model keeps GPT-2's 50,304-row embedding whatever the shards' vocabulary (a
`vocab_size` override; the ids of a smaller vocabulary are valid rows), so its size and
FLOPs are GPT-2 small's. The figures are medians over the logging windows after the first
(which holds start-up and warm-up). `--cpu` runs the same path on CPU in fp32 with a few
steps, to check the script where there is no GPU; its MFU means nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from training.config import TrainConfig
from training.data import read_manifest


def config(args: argparse.Namespace, storage: str) -> TrainConfig:
    return TrainConfig.model_validate({
        "model": {"preset": args.preset, "overrides": {"vocab_size": 50304}},
        "data": {"manifest": args.manifest, "batch_size": args.batch_size,
                 "grad_accum": args.grad_accum, "prefetch_batches": 4},
        "optim": {"lr": 6e-4, "warmup_steps": min(50, args.steps // 4), "max_steps": args.steps},
        "precision": "fp32" if args.cpu else "bf16",
        "zero": {"stage": args.zero_stage},
        "checkpoint": {"storage_path": storage, "name": "bench", "every": 10**6},
        "eval": {"every": 10**6, "max_batches": 1},
        "scaling": {"num_workers": 1, "use_gpu": not args.cpu,
                    "cpus_per_worker": 2 if args.cpu else 4},
        "metrics": {"log_every": args.log_every, "tensorboard": False},
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", help="token shard manifest.json (seq_len 1024 for GPT-2 small)")
    parser.add_argument("--preset", default="gpt2-124M")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per micro-step")
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--zero-stage", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--cpu", action="store_true", help="smoke run on CPU (fp32, no MFU target)")
    args = parser.parse_args()
    if args.steps < 2 * args.log_every:
        parser.error("--steps must cover at least two logging windows (2 x --log-every)")
    import ray

    from training.trainer import fit, log_dir_for

    cfg = config(args, tempfile.mkdtemp(prefix="bench-train-gpu-"))
    ray.init(address="local", include_dashboard=False)
    fit(cfg)
    records = [json.loads(x) for x in
               (Path(log_dir_for(cfg)) / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if "tokens_per_s" in r][1:]
    median = {k: statistics.median(r[k] for r in windows)
              for k in ("tokens_per_s", "mfu", "data_wait_frac")}
    device = "CPU" if args.cpu else torch.cuda.get_device_name()
    seq_len = read_manifest(args.manifest).seq_len
    print(f"| {args.preset}, {cfg.precision}, batch {args.batch_size} x {args.grad_accum} x "
          f"{seq_len} on {device} | median of {len(windows)} windows |\n"
          f"|---|---|\n"
          f"| tokens/s | {median['tokens_per_s']:,.0f} |\n"
          f"| MFU | {median['mfu']:.1%} |\n"
          f"| data wait / step time | {median['data_wait_frac']:.2%} |\n"
          f"| final loss | {records[-1].get('loss', float('nan')):.3f} |")


if __name__ == "__main__":
    main()
