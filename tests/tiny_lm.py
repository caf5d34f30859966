"""Real data for the model tests, made in seconds: a small BPE tokenizer trained on the
TinyStories sample and packed token rows in the shard layout (docs/token-shards.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["<pad>", "<bos>", "<eos>", "<mask>"]  # ids 0..3, as in the shard manifest example
PAD_ID, BOS_ID, EOS_ID, MASK_ID = range(4)


def tinystories_paragraphs(data: Path, limit: int = 2000) -> list[str]:
    text = (data / "tinystories" / "tinystories_v1_valid_head.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()][:limit]


def train_tokenizer(paragraphs: list[str], vocab_size: int = 512) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(paragraphs, trainer)
    return tokenizer


def packed_rows(
    tokenizer: Tokenizer, paragraphs: list[str], seq_len: int, n_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens and segment_ids [n_rows, seq_len + 1]: documents joined with EOS after each
    and cut into rows; segment ids count documents from 0 within each row."""
    ids, docs = [], []
    for doc, encoding in enumerate(tokenizer.encode_batch(paragraphs)):
        ids += encoding.ids + [EOS_ID]
        docs += [doc] * (len(encoding.ids) + 1)
        if len(ids) >= n_rows * (seq_len + 1):
            break
    size = n_rows * (seq_len + 1)
    if len(ids) < size:
        raise ValueError(f"only {len(ids)} tokens for {n_rows} rows of {seq_len + 1}")
    tokens = torch.tensor(ids[:size]).view(n_rows, seq_len + 1)
    segments = torch.tensor(docs[:size]).view(n_rows, seq_len + 1)
    return tokens, segments - segments[:, :1]


@pytest.fixture(scope="session", name="tiny_corpus")
def tiny_corpus_fixture(shared_data) -> tuple[Tokenizer, list[str]]:
    """(tokenizer, paragraphs) as fixture `tiny_corpus`: import tiny_corpus_fixture into a
    test module to use it."""
    paragraphs = tinystories_paragraphs(shared_data)
    return train_tokenizer(paragraphs), paragraphs


def train(
    model, objective, tokens, segment_ids=None, steps: int = 40, lr: float = 3e-3
) -> list[float]:
    """Plain AdamW steps on the same batch; the loss of each step."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        batch = objective.prepare(tokens, segment_ids, generator)
        loss = objective.loss(model(batch.inputs, batch.attn_mask, batch.is_causal), batch.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
