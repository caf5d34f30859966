"""Step metrics: tokens/s, MFU, time waiting for data; written to metrics.jsonl,
TensorBoard and a progress bar (rank 0 only).

MFU = model FLOPs per token (Transformer.flops_per_token, the one formula) * tokens/s
/ (peak FLOP/s of one device * devices). The peak comes from `metrics.peak_flops` when set,
else from the detected device:
- GPUs: the vendor's dense bf16/fp16 tensor-core peak (table below); fp32 runs use TF32,
  counted at half of it.
- CPUs: an estimate, cores * clock * FLOPs per cycle per core for the widest unit the CPU
  advertises for the run's precision (bf16 on AMX: 1024 FLOPs/cycle; fp32 or no AMX:
  AVX-512 64, AVX2 32, else 8). It is an upper bound rarely reached; CPU MFU is for
  comparing runs, not for absolute claims.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from the vendors' data sheets.
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 70e12,
                 "L40S": 362e12, "4090": 165e12}


def cpu_peak_flops(cores: int, precision: str) -> float:
    flags, mhz = "", 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = line
            elif line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
    except OSError:
        pass
    if precision == "bf16" and "amx_bf16" in flags:
        per_cycle = 1024
    else:
        per_cycle = 64 if "avx512f" in flags else 32 if "avx2" in flags else 8
    return cores * (mhz or 2000.0) * 1e6 * per_cycle


def detect_peak_flops(use_gpu: bool, precision: str, cores: int) -> float:
    """Peak FLOP/s of one worker's device (see the module doc)."""
    if not use_gpu:
        return cpu_peak_flops(cores, precision)
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)
    if peak is None:
        raise ValueError(f"unknown GPU {name!r}: set metrics.peak_flops for MFU")
    return peak if precision != "fp32" else peak / 2


class StepTimer:
    """Splits wall time between waiting for data and the rest, over a logging window."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.data_wait = 0.0

    def waited(self, seconds: float) -> None:
        self.data_wait += seconds

    def exclude(self, seconds: float) -> None:
        """Leave out time that is not training (evaluation, checkpoints) from the window."""
        self.start += seconds

    def window(self) -> tuple[float, float]:
        """(elapsed seconds, data wait fraction) since the last reset."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return elapsed, self.data_wait / elapsed


class MetricsLog:
    """metrics.jsonl (appended across restarts), TensorBoard and a tqdm bar; rank 0 only."""

    def __init__(self, log_dir: str, total_steps: int, start_step: int, tensorboard: bool):
        from tqdm import tqdm

        os.makedirs(log_dir, exist_ok=True)
        self.path = Path(log_dir) / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(log_dir) / "tensorboard"), purge_step=start_step)
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                        dynamic_ncols=True)

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        step = record["step"]
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.flush()
        shown = {k: record[k] for k in ("loss", "val_loss", "tokens_per_s", "mfu") if k in record}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    def advance(self, steps: int = 1) -> None:
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
