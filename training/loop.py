"""The per-worker training loop that Ray Train runs on every worker.

Each optimizer step: `grad_accum` micro-batches (forward, backward through DeepSpeed),
the loss guard, then `engine.step()`. Every `eval.every` steps the validation loss, every
`checkpoint.every` steps a checkpoint; metrics every `metrics.log_every` steps.

Determinism (what exact resume rests on): the data position is in the checkpoint
(training/data.py), and the objectives' random masking draws from a generator seeded by
(seed, step, rank), so a resumed step sees the same batch and the same masks.

Loss guard: a micro-batch is bad when its loss (averaged over workers, so every worker
decides alike) is NaN/inf or exceeds `guard.spike_factor` times the running mean. It is
checked before backward, so a bad batch is skipped without a trace in the gradients or
DeepSpeed's counters (counted as `skipped_steps`; with accumulation the next batch takes
its place). After `guard.max_bad_steps` bad batches in a row the model and optimizer are
reloaded from the latest registered checkpoint (counted as `rollbacks`; the gradients of a
partly accumulated step are dropped) while the data stream keeps going, so the batches
that caused the trouble are not replayed. (A NaN that appears only in the gradients, not in the
loss, is left to DeepSpeed: fp16 loss scaling skips such steps itself.)
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from training import checkpoint as ckpt
from training.config import TrainConfig
from training.data import Manifest, dataset_name, read_manifest, validation_batch_count
from training.engine import build_engine, reapply_schedule
from training.metrics import MetricsLog, StepTimer, detect_peak_flops
from training.model import Transformer, model_config
from training.objectives import Objective, make_objective


class LossGuard:
    def __init__(self, spike_factor: float, max_bad: int, warmup: int):
        self.spike_factor, self.max_bad, self.warmup = spike_factor, max_bad, warmup
        self.mean: float | None = None  # exponential moving average of good losses
        self.good_steps = 0
        self.consecutive_bad = 0

    def is_bad(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        return (self.good_steps >= self.warmup and self.mean is not None
                and loss > self.spike_factor * self.mean)

    def record(self, loss: float, bad: bool) -> bool:
        """Count the batch; True when it is time to roll back (the count restarts)."""
        if bad:
            self.consecutive_bad += 1
            if self.consecutive_bad < self.max_bad:
                return False
            self.consecutive_bad = 0
            return True
        self.consecutive_bad = 0
        self.good_steps += 1
        self.mean = loss if self.mean is None else 0.95 * self.mean + 0.05 * loss
        return False


def build_objective(cfg: TrainConfig, manifest: Manifest, vocab_size: int) -> Objective:
    o = cfg.objective
    if o.name == "masked_lm":
        return make_objective(o.name, mask_id=manifest.tokenizer["mask_id"], vocab_size=vocab_size,
                              mask_prob=o.mask_prob)
    if o.name == "prefix_lm":
        return make_objective(o.name, prefix_fraction=o.prefix_fraction)
    return make_objective(o.name)


class Worker:
    """One Ray Train worker's state: engine, data stream, counters."""

    def __init__(self, cfg: TrainConfig, log_dir: str):
        import ray.train

        self.cfg, self.log_dir = cfg, log_dir
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.use_gpu = cfg.scaling.use_gpu
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.use_gpu else torch.device("cpu")
        torch.set_num_threads(cfg.scaling.torch_threads or max(1, int(cfg.scaling.cpus_per_worker)))

        self.manifest = read_manifest(cfg.data.manifest)
        self.model_cfg = model_config(cfg.model.preset, **{
            "vocab_size": self.manifest.tokenizer["vocab_size"], "max_seq_len": self.manifest.seq_len,
            **cfg.model.overrides})
        self.objective = build_objective(cfg, self.manifest, self.model_cfg.vocab_size)
        self.segments = cfg.objective.document_masking and self.manifest.segment_ids

        torch.manual_seed(cfg.data.seed)
        model = Transformer(self.model_cfg)
        self.flops_per_token = model.flops_per_token(self.manifest.seq_len)
        self.state = ckpt.TrainState(step=0, consumed=0, world_size=self.world, manifest=cfg.data.manifest)
        start = ray.train.get_checkpoint()
        local = ckpt.fetch(start) if start else None
        if local:
            self.state = ckpt.read_state(local)
        universal = local is not None and ckpt.needs_universal(self.state, self.world)
        self.engine = build_engine(cfg, model, self.use_gpu, load_universal=universal)
        if local:
            ckpt.restore(self.engine, local, self.state)
            shutil.rmtree(local)
            reapply_schedule(self.engine, cfg.optim)
            self.state.world_size = self.world

    # ------------------------------------------------------------------ pieces

    def batch_on_device(self, rows: dict[str, torch.Tensor], step: int, micro: int):
        generator = torch.Generator().manual_seed(
            hash((self.cfg.data.seed, step, micro, self.rank)) % 2**63)
        tokens = rows["input_ids"].to(self.device, non_blocking=True)
        segments = rows["segment_ids"].to(self.device, non_blocking=True) if self.segments else None
        return self.objective.prepare(tokens, segments, generator)

    def forward_loss(self, batch) -> torch.Tensor:
        logits = self.engine(batch.inputs, attn_mask=batch.attn_mask, is_causal=batch.is_causal)
        return self.objective.loss(logits, batch.targets)

    def all_mean(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.world

    def evaluate(self, batches: list[dict[str, torch.Tensor]]) -> float:
        """Mean validation loss over all workers (same batch count everywhere, as ZeRO-3's
        gathered forward needs)."""
        self.engine.eval()
        total = 0.0
        with torch.no_grad():
            for i, rows in enumerate(batches):
                total += self.forward_loss(self.batch_on_device(rows, -1, i)).item()
        self.engine.train()
        return self.all_mean(total / len(batches))

    def batches(self, split: str) -> Iterator[dict[str, torch.Tensor]]:
        """This worker's batches of `split`, streamed by Ray Data (training/data.py)."""
        import ray.train

        shard = ray.train.get_dataset_shard(dataset_name(split, self.rank))
        return iter(shard.iter_torch_batches(
            batch_size=self.cfg.data.batch_size, prefetch_batches=self.cfg.data.prefetch_batches,
            # Kept on the host (pinned for a fast async copy) so that checking the position
            # does not wait for the device.
            dtypes=torch.int64, device="cpu", pin_memory=self.use_gpu, drop_last=True))

    def validation_batches(self) -> list[dict[str, torch.Tensor]]:
        """Read once, kept: every evaluation scores the same rows."""
        if not validation_batch_count(self.cfg, self.manifest):
            return []
        return list(self.batches("validation"))

    def next_train_batch(self, batches: Iterator[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The next micro-batch, checked against the data position: Ray Data must deliver
        exactly the rows this worker's share of the global order holds."""
        try:
            rows = next(batches)
        except StopIteration:
            raise RuntimeError(
                f"step {self.state.step}: the planned training rows ran out after "
                f"{self.state.skipped_steps} skipped batches and {self.state.rollbacks} "
                "rollbacks (the plan holds twice the run's batches); rerun to resume with "
                "a new plan") from None
        expected = self.state.consumed + self.rank * self.cfg.data.batch_size
        if int(rows["position"][0]) != expected:
            raise RuntimeError(f"data position mismatch on rank {self.rank}: got row "
                               f"{int(rows['position'][0])}, expected {expected}")
        self.state.consumed += self.cfg.data.batch_size * self.world
        return rows

    def save(self) -> Path:
        directory = Path(tempfile.mkdtemp(prefix="rt-save-"))
        ckpt.save_checkpoint(self.engine, self.state, self.manifest.tokenizer_path,
                             self.manifest.tokenizer, directory)
        return directory

    def roll_back(self, partial_micro_batches: int) -> None:
        """Reload the last checkpoint's model and optimizer; the data position stays. The
        gradients of this step's `partial_micro_batches` (backward done, no update yet) are
        discarded, and DeepSpeed's micro-step count with them, so the next step accumulates
        from scratch."""
        import ray.train

        storage = ray.train.get_context().get_storage()
        stored = ckpt.latest_checkpoint(storage.experiment_fs_path, storage.storage_filesystem)
        if stored is None:
            raise RuntimeError(f"loss guard: {self.cfg.guard.max_bad_steps} bad steps in a row at "
                               f"step {self.state.step} and no checkpoint to roll back to")
        local = ckpt.fetch(stored)
        saved = ckpt.read_state(local)
        ckpt.restore(self.engine, local, saved)
        shutil.rmtree(local)
        self.engine.optimizer.zero_grad()
        self.engine.micro_steps -= partial_micro_batches
        self.state.step, self.state.world_size = saved.step, self.world
        self.state.rollbacks += 1

    def maybe_crash(self) -> None:
        """Testing only (failure.crash_at_step): one worker process dies once."""
        target = self.cfg.failure.crash_at_step
        victim = min(1, self.world - 1)
        marker = Path(self.log_dir) / "crashed.marker"
        if target == self.state.step and self.rank == victim and not marker.exists():
            marker.touch()
            os._exit(1)

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        cfg = self.cfg
        accum, seq_len = cfg.data.grad_accum, self.manifest.seq_len
        train_batches = self.batches("train")
        val_batches = self.validation_batches()
        guard = LossGuard(cfg.guard.spike_factor, cfg.guard.max_bad_steps, cfg.guard.warmup_steps)
        peak = cfg.metrics.peak_flops or detect_peak_flops(
            self.use_gpu, cfg.precision, torch.get_num_threads())
        log = (MetricsLog(self.log_dir, cfg.optim.max_steps, self.state.step, cfg.metrics.tensorboard)
               if self.rank == 0 else None)
        timer, started = StepTimer(), time.perf_counter()
        tokens_per_step = cfg.data.batch_size * accum * self.world * seq_len
        window_steps = 0

        while self.state.step < cfg.optim.max_steps:
            self.maybe_crash()
            losses = []
            while len(losses) < accum:
                waited = time.perf_counter()
                rows = self.next_train_batch(train_batches)
                timer.waited(time.perf_counter() - waited)
                loss = self.forward_loss(self.batch_on_device(rows, self.state.step, len(losses)))
                mean_loss = self.all_mean(loss.item())
                if guard.is_bad(mean_loss):  # skip: no backward, the batch leaves no trace
                    self.state.skipped_steps += 1
                    if guard.record(mean_loss, bad=True):
                        self.roll_back(partial_micro_batches=len(losses))
                        losses.clear()
                    continue
                guard.record(mean_loss, bad=False)
                self.engine.backward(loss)
                self.engine.step()  # DeepSpeed applies the update on the last micro-batch
                losses.append(mean_loss)
            self.state.step += 1
            window_steps += 1
            if log:
                log.advance()

            step = self.state.step
            record: dict = {}
            if step % cfg.metrics.log_every == 0 or step == cfg.optim.max_steps:
                elapsed, wait_frac = timer.window()
                tokens_per_s = window_steps * tokens_per_step / elapsed
                record = {"step": step, "loss": sum(losses) / accum, "lr": self.engine.get_lr()[0],
                          "grad_norm": float(self.engine.get_global_grad_norm() or 0.0),
                          "tokens_per_s": tokens_per_s,
                          "mfu": self.flops_per_token * tokens_per_s / (peak * self.world),
                          "data_wait_frac": self.all_mean(wait_frac),
                          "skipped_steps": self.state.skipped_steps,
                          "rollbacks": self.state.rollbacks,
                          "elapsed_s": time.perf_counter() - started}
                timer.reset()
                window_steps = 0
            aside = time.perf_counter()  # evaluation and checkpoints are not training time
            if val_batches and (step % cfg.eval.every == 0 or step == cfg.optim.max_steps):
                val_loss = self.evaluate(val_batches)
                record.update(step=step, val_loss=val_loss, val_ppl=math.exp(min(val_loss, 50)))
            saving = step % cfg.checkpoint.every == 0 or step == cfg.optim.max_steps
            directory = self.save() if saving else None
            if record or directory:
                if log and record:
                    log.write(record)
                ckpt.report({"step": step, **record}, directory)
            timer.exclude(time.perf_counter() - aside)
        if log:
            log.close()


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's entry point: config = {"train": TrainConfig dump, "log_dir": path}."""
    cfg = TrainConfig.model_validate(config["train"])
    Worker(cfg, config["log_dir"]).run()
