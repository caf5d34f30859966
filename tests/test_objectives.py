"""Objectives: masks, targets and masking statistics, and that each one learns on real
TinyStories tokens."""

from __future__ import annotations

import pytest
import torch
from tiny_lm import MASK_ID, packed_rows, tiny_corpus_fixture, train  # noqa: F401

from training.model import Transformer, model_config
from training.objectives import IGNORE, CausalLM, MaskedLM, PrefixLM, make_objective

VOCAB = 512


def tiny_model(vocab_size: int = VOCAB) -> Transformer:
    torch.manual_seed(0)
    cfg = model_config(
        vocab_size=vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64
    )
    return Transformer(cfg).eval()


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(batch.inputs, batch.attn_mask, batch.is_causal)


def test_causal_lm_targets_are_the_next_tokens():
    tokens = torch.randint(VOCAB, (2, 17))
    batch = CausalLM().prepare(tokens)
    assert torch.equal(batch.inputs, tokens[:, :-1]) and torch.equal(batch.targets, tokens[:, 1:])
    assert batch.attn_mask is None and batch.is_causal


def test_document_masking_isolates_documents():
    """Changing document A's tokens leaves document B's logits unchanged, and B stays causal."""
    model = tiny_model()
    tokens = torch.randint(4, VOCAB, (1, 33))
    segments = torch.tensor([[0] * 12 + [1] * 21])
    changed = tokens.clone()
    changed[0, :12] = (changed[0, :12] + 7) % VOCAB
    objective = CausalLM()
    before = logits(model, objective.prepare(tokens, segments))
    after = logits(model, objective.prepare(changed, segments))
    torch.testing.assert_close(before[:, 12:], after[:, 12:])
    # Without segment ids the same change reaches document B.
    assert not torch.allclose(
        logits(model, objective.prepare(tokens))[:, 12:],
        logits(model, objective.prepare(changed))[:, 12:],
    )
    # Within B, a later token still does not affect earlier ones.
    changed = tokens.clone()
    changed[0, 25:] = (changed[0, 25:] + 7) % VOCAB
    torch.testing.assert_close(
        before[:, :25], logits(model, objective.prepare(changed, segments))[:, :25]
    )


def test_prefix_lm_is_bidirectional_in_the_prefix_and_causal_after():
    model = tiny_model()
    tokens = torch.randint(4, VOCAB, (1, 33))
    objective = PrefixLM(prefix_fraction=0.5)  # prefix = inputs[:16]
    batch = objective.prepare(tokens)
    assert (batch.targets[0, :15] == IGNORE).all() and torch.equal(
        batch.targets[0, 15:], tokens[0, 16:]
    )

    def logits_after_changing(position: int) -> torch.Tensor:
        changed = tokens.clone()
        changed[0, position] = (changed[0, position] + 7) % VOCAB
        return logits(model, objective.prepare(changed))

    base = logits(model, batch)
    # A late prefix token is seen by the first prefix position...
    assert not torch.allclose(base[:, 0], logits_after_changing(15)[:, 0])
    # ...but a suffix token is not seen by the prefix nor by earlier suffix positions.
    torch.testing.assert_close(base[:, :20], logits_after_changing(20)[:, :20])


def test_prefix_lm_random_lengths_vary_per_row():
    tokens = torch.randint(VOCAB, (64, 33))
    batch = PrefixLM().prepare(tokens, generator=torch.Generator().manual_seed(0))
    ignored = (batch.targets == IGNORE).sum(dim=1)
    assert ignored.min() >= 0 and ignored.max() <= 31 and len(ignored.unique()) > 10
    # Every row keeps its suffix loss positions contiguous at the end.
    for row, n in zip(batch.targets, ignored):
        assert (row[:n] == IGNORE).all() and (row[n:] != IGNORE).all()


def test_masked_lm_statistics_and_loss_positions():
    tokens = torch.randint(4, VOCAB, (64, 257))
    objective = MaskedLM(mask_id=MASK_ID, vocab_size=VOCAB)
    batch = objective.prepare(tokens, generator=torch.Generator().manual_seed(0))
    original = tokens[:, :-1]
    chosen = batch.targets != IGNORE
    assert torch.equal(batch.targets[chosen], original[chosen])
    assert torch.equal(batch.inputs[~chosen], original[~chosen])
    assert chosen.float().mean().item() == pytest.approx(0.15, abs=0.01)
    n = chosen.sum().item()
    as_mask = (batch.inputs[chosen] == MASK_ID).sum().item() / n
    unchanged = (batch.inputs[chosen] == original[chosen]).sum().item() / n
    assert as_mask == pytest.approx(0.8, abs=0.02)
    # Unchanged = the 10% kept plus the random draws that hit the same token (1/VOCAB).
    assert unchanged == pytest.approx(0.1, abs=0.02)
    assert 1 - as_mask - unchanged == pytest.approx(0.1, abs=0.02)
    assert batch.attn_mask is None and not batch.is_causal


def test_loss_with_no_targets_is_zero_not_nan():
    logits_ = torch.randn(1, 4, VOCAB)
    assert CausalLM().loss(logits_, torch.full((1, 4), IGNORE)).item() == 0.0


def test_make_objective_validates():
    assert isinstance(make_objective("prefix_lm", prefix_fraction=0.25), PrefixLM)
    with pytest.raises(ValueError, match="unknown objective"):
        make_objective("span_corruption")
    with pytest.raises(ValueError, match="mask_id"):
        make_objective("masked_lm", mask_id=VOCAB, vocab_size=VOCAB)


@pytest.mark.parametrize("name", ["causal_lm", "causal_lm+segments", "prefix_lm", "masked_lm"])
def test_each_objective_learns_tinystories(tiny_corpus, name):
    tokenizer, paragraphs = tiny_corpus
    tokens, segments = packed_rows(tokenizer, paragraphs, seq_len=64, n_rows=8)
    objective_name, _, use_segments = name.partition("+")
    kwargs = dict(mask_id=MASK_ID, vocab_size=VOCAB) if objective_name == "masked_lm" else {}
    objective = make_objective(objective_name, **kwargs)
    losses = train(
        tiny_model(tokenizer.get_vocab_size()),
        objective,
        tokens,
        segments if use_segments else None,
        steps=60,
    )
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, losses
