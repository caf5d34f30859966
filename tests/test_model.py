"""The transformer: shapes, causality, attention masks, presets, FLOPs, save/load."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.model import PRESETS, Transformer, load_model, model_config, save_model

VOCAB = 97


def tiny(**overrides) -> Transformer:
    torch.manual_seed(0)
    cfg = dict(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=24)
    return Transformer(model_config(**{**cfg, **overrides})).eval()


def test_logits_shape_and_sequence_limit():
    model = tiny()
    ids = torch.randint(VOCAB, (3, 24))
    assert model(ids).shape == (3, 24, VOCAB)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.randint(VOCAB, (1, 25)))


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_future_tokens_do_not_change_past_logits(n_kv_heads):
    model = tiny(n_kv_heads=n_kv_heads)
    ids = torch.randint(VOCAB, (2, 20))
    changed = ids.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(ids), model(changed)
    torch.testing.assert_close(before[:, :12], after[:, :12])
    assert not torch.allclose(before[:, 12:], after[:, 12:])


def test_bidirectional_without_causal_flag():
    model = tiny()
    ids = torch.randint(VOCAB, (1, 16))
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % VOCAB
    with torch.no_grad():
        assert not torch.allclose(
            model(ids, is_causal=False)[:, 0], model(changed, is_causal=False)[:, 0]
        )


def test_mask_with_causal_flag_combines_both():
    """An all-True mask plus is_causal behaves exactly like is_causal alone."""
    model = tiny()
    ids = torch.randint(VOCAB, (2, 16))
    everything = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, everything, is_causal=True), model(ids))


def test_tied_embeddings_share_one_matrix():
    tied, untied = tiny(tie_embeddings=True), tiny(tie_embeddings=False)
    assert tied.lm_head.weight is tied.embed_tokens.weight
    assert untied.num_params() - tied.num_params() == VOCAB * 32


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_sizes_match_their_names(preset):
    with torch.device("meta"):
        model = Transformer(model_config(preset))
    expected = {"260K": 260e3, "15M": 15e6, "42M": 42e6, "110M": 110e6, "gpt2-124M": 124e6}[preset]
    assert abs(model.num_params() - expected) / expected < 0.10


def test_flops_formula_counts_every_matmul_weight():
    model = tiny(tie_embeddings=False)
    matmul_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    cfg = model.config
    assert model.flops_per_token(24) == 6 * matmul_weights + 12 * cfg.n_layers * cfg.dim * 24
    # Tying removes the embedding table but its matrix still does the output projection.
    assert tiny(tie_embeddings=True).flops_per_token(24) == model.flops_per_token(24)


def test_activation_checkpointing_gives_the_same_gradients():
    ids = torch.randint(VOCAB, (2, 16))
    grads = []
    for checkpointing in (False, True):
        model = tiny().train()
        model.activation_checkpointing = checkpointing
        model(ids).logsumexp(-1).mean().backward()
        grads.append(model.layers[0].self_attn.q_proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_save_and_load_round_trip(tmp_path):
    model = tiny(tie_embeddings=False)
    save_model(model, model.config, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    ids = torch.randint(VOCAB, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_model(tmp_path)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown model preset"):
        model_config("7B")
    with pytest.raises(ValueError, match="unknown model config fields"):
        model_config("15M", n_layer=3)
    with pytest.raises(ValueError, match="n_kv_heads"):
        model_config(dim=32, n_heads=4, n_kv_heads=3)
