"""Validation loss per token -> bits per byte, for comparing models across tokenizers.

    python benchmarks/bits_per_byte.py MANIFEST METRICS_JSONL [--config TRAIN_YAML]
        [--checkpoint MODEL_DIR]

A per-token loss depends on how much text a token holds, so losses of models with different
vocabularies are not comparable; bits per byte of UTF-8 text are:

    bpb = val_loss / ln(2) * (validation tokens / validation UTF-8 bytes)

val_loss (nats per predicted token) is the last evaluation in METRICS_JSONL
(training/metrics.py; a resumed run may log a step twice, the later record wins). The
tokens/bytes ratio is measured on the validation rows the trainer evaluates (the first
min(eval.max_batches, rows // (batch_size * num_workers)) batches, from --config; all
rows without it): the predicted tokens of each row are its ids [1:], decoded with the
shards' tokenizer (tokenizer.json beside the manifest). Special tokens decode to nothing;
each EOS counts as one byte, the newline that separated documents in the source text.

--checkpoint MODEL_DIR (model.pt + model_config.json, as checkpoints hold) re-evaluates
the model in fp32 on every validation row, as a check on the trainer's figure (which a
bf16 run computes from bf16 logits).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def last_val_loss(metrics: Path) -> tuple[int, float]:
    """(step, val_loss) of the last evaluation; a later record replaces one of the same step."""
    by_step: dict[int, float] = {}
    for line in metrics.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if "val_loss" in record:
                by_step[int(record["step"])] = float(record["val_loss"])
    if not by_step:
        sys.exit(f"error: {metrics} has no val_loss record")
    step = max(by_step)
    return step, by_step[step]


def validation_rows(manifest_path: Path) -> tuple[dict, np.ndarray]:
    manifest = json.loads(manifest_path.read_text())
    width = int(manifest["seq_len"]) + 1
    parts = []
    for shard in manifest["splits"]["validation"]["shards"]:
        table = pq.read_table(manifest_path.parent / shard["path"], columns=["input_ids"])
        parts.append(table.column("input_ids").combine_chunks().flatten().to_numpy().reshape(-1, width))
    return manifest, np.concatenate(parts)


def evaluated_row_count(config: str | None, total_rows: int) -> int:
    """The rows the trainer's evaluation covers (training/loop.py: validation_batches)."""
    if config is None:
        return total_rows
    from training.config import load_train_config

    cfg = load_train_config(config)
    global_batch = cfg.data.batch_size * cfg.scaling.num_workers
    return min(cfg.eval.max_batches, total_rows // global_batch) * global_batch


def count_bytes(tokenizer, rows: np.ndarray, eos_id: int | None) -> tuple[int, int]:
    """(predicted tokens, UTF-8 bytes they decode to) over rows [n, seq_len + 1]."""
    targets = rows[:, 1:]
    n_bytes = sum(len(tokenizer.decode(row.tolist(), skip_special_tokens=True).encode("utf-8"))
                  for row in targets)
    if eos_id is not None:
        n_bytes += int((targets == eos_id).sum())
    return targets.size, n_bytes


def fp32_loss(model_dir: str, rows: np.ndarray, batch: int = 16) -> float:
    """Mean cross-entropy (nats per predicted token) of a saved model, in fp32."""
    import torch
    import torch.nn.functional as F

    from training.model import load_model

    model = load_model(model_dir).float().eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            ids = torch.from_numpy(rows[i:i + batch].astype(np.int64))
            logits = model(ids[:, :-1]).float()
            total += F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum").item()
            count += ids[:, 1:].numel()
    return total / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="token shard manifest.json")
    parser.add_argument("metrics", help="the run's metrics.jsonl")
    parser.add_argument("--config", help="training YAML: count only the rows its evaluation covers")
    parser.add_argument("--checkpoint", help="model directory to re-evaluate in fp32 on all rows")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from tokenizers import Tokenizer

    manifest_path = Path(args.manifest)
    manifest, rows = validation_rows(manifest_path)
    tokenizer = Tokenizer.from_file(str(manifest_path.parent / manifest["tokenizer"]["path"]))
    eos_id = manifest["tokenizer"].get("eos_id")
    step, val_loss = last_val_loss(Path(args.metrics))
    used = evaluated_row_count(args.config, len(rows))
    tokens, n_bytes = count_bytes(tokenizer, rows[:used], eos_id)
    ratio = tokens / n_bytes
    out = {
        "step": step, "val_loss": val_loss, "val_ppl": math.exp(val_loss),
        "validation_rows": used, "validation_rows_total": len(rows),
        "validation_tokens": tokens, "validation_bytes": n_bytes,
        "bytes_per_token": n_bytes / tokens,
        "bits_per_token": val_loss / math.log(2),
        "bits_per_byte": val_loss / math.log(2) * ratio,
    }
    if args.checkpoint:
        all_tokens, all_bytes = count_bytes(tokenizer, rows, eos_id)
        loss32 = fp32_loss(args.checkpoint, rows)
        out.update(fp32_val_loss_all_rows=loss32, fp32_val_ppl_all_rows=math.exp(loss32),
                   fp32_bits_per_byte_all_rows=loss32 / math.log(2) * all_tokens / all_bytes)
    width = max(map(len, out))
    for key, value in out.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
