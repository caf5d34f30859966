"""`python -m training plot`: curves from a metrics.jsonl written during real training."""

from __future__ import annotations

import json

import matplotlib.image
import pytest
import torch
from tiny_lm import packed_rows, tiny_corpus_fixture  # noqa: F401

from training.__main__ import main as training_cli
from training.model import Transformer, model_config
from training.objectives import CausalLM
from training.plot import panels, read_series


def write_run(run_dir, tokenizer, paragraphs, steps: int, restart_at: int) -> None:
    """Train a tiny model and log like the trainer: a record per step, val_loss every 5,
    and a restart that replays steps from restart_at (metrics.jsonl is appended)."""
    tokens, _ = packed_rows(tokenizer, paragraphs, seq_len=32, n_rows=6)
    train_rows, val_rows = tokens[:4], tokens[4:]
    torch.manual_seed(0)
    model = Transformer(
        model_config(
            vocab_size=tokenizer.get_vocab_size(), dim=32, n_layers=1, n_heads=2, max_seq_len=32
        )
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    objective = CausalLM()
    with (run_dir / "metrics.jsonl").open("w") as log:
        for step in [*range(1, steps + 1), *range(restart_at, steps + 1)]:
            batch = objective.prepare(train_rows)
            loss = objective.loss(model(batch.inputs), batch.targets)
            optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            record = {"step": step, "loss": loss.item(), "lr": 3e-3, "grad_norm": grad_norm.item()}
            if step % 5 == 0:
                with torch.no_grad():
                    val = objective.prepare(val_rows)
                    record["val_loss"] = objective.loss(model(val.inputs), val.targets).item()
            log.write(json.dumps(record) + "\n")


def test_plot_draws_every_metric_and_keeps_the_resumed_steps(tiny_corpus, tmp_path):
    tokenizer, paragraphs = tiny_corpus
    write_run(tmp_path, tokenizer, paragraphs, steps=20, restart_at=11)
    series = read_series(tmp_path / "metrics.jsonl")
    assert sorted(series["loss"]) == list(range(1, 21))
    assert sorted(series["val_loss"]) == [5, 10, 15, 20]
    last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert series["loss"][20] == last["loss"]  # the replayed step replaced the first one
    assert panels(series) == [
        ("loss", ["loss", "val_loss"]),
        ("grad_norm", ["grad_norm"]),
        ("lr", ["lr"]),
    ]

    assert training_cli(["plot", str(tmp_path)]) == 0
    image = matplotlib.image.imread(tmp_path / "curves.png")
    assert image.shape[0] > 200 and image.shape[1] > 3 * 400  # three panels side by side


def test_plot_refuses_a_run_without_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        training_cli(["plot", str(tmp_path)])
    (tmp_path / "metrics.jsonl").write_text('{"loss": 1.0}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:1"):
        training_cli(["plot", str(tmp_path)])
