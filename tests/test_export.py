"""Hugging Face export round trip, and sampling text from a tiny model trained on
TinyStories (from our model directory and from its export)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from tiny_lm import BOS_ID, EOS_ID, MASK_ID, PAD_ID, packed_rows, tiny_corpus_fixture, train  # noqa: F401

from training.__main__ import main as training_cli
from training.export import export, load_export
from training.model import Transformer, model_config, save_model
from training.objectives import CausalLM

transformers = pytest.importorskip("transformers")


def tiny_model(tie_embeddings: bool, vocab_size: int = 131) -> Transformer:
    torch.manual_seed(0)
    cfg = model_config(
        vocab_size=vocab_size,
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        max_seq_len=64,
        rope_theta=500.0,
        tie_embeddings=tie_embeddings,
    )
    model = Transformer(cfg)
    with torch.no_grad():  # the init leaves the norms at 1: make them matter in the comparison
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_transformers_loads_the_export_with_the_same_logits(tmp_path, tie_embeddings):
    model = tiny_model(tie_embeddings)
    save_model(model, model.config, tmp_path / "ckpt")
    out = export(tmp_path / "ckpt", tmp_path / "hf")
    hf = transformers.LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    assert hf.config.tie_word_embeddings == tie_embeddings
    ids = torch.randint(131, (2, 40))
    with torch.no_grad():
        theirs = hf(ids).logits
        ours = model(ids)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    # And back: our loader reads the export into the same model.
    with torch.no_grad():
        torch.testing.assert_close(load_export(out)(ids), ours)


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """A tiny causal LM fitted on a few TinyStories rows, saved as a model directory,
    with a shard-style manifest naming the tokenizer and its special ids."""
    tokenizer, paragraphs = tiny_corpus
    root = tmp_path_factory.mktemp("trained")
    tokenizer.save(str(root / "tokenizer.json"))
    entry = dict(
        path="tokenizer.json",
        vocab_size=tokenizer.get_vocab_size(),
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=PAD_ID,
        mask_id=MASK_ID,
        add_bos=False,
    )
    (root / "manifest.json").write_text(json.dumps({"tokenizer": entry}))
    tokens, _ = packed_rows(tokenizer, paragraphs, seq_len=64, n_rows=8)
    model = tiny_model(tie_embeddings=True, vocab_size=tokenizer.get_vocab_size())
    losses = train(model, CausalLM(), tokens, steps=200)
    assert losses[-1] < losses[0] / 2
    save_model(model, model.config, root / "ckpt")
    return root, paragraphs


def test_generate_samples_tinystories_text(trained, capsys):
    root, paragraphs = trained
    args = [
        "--tokenizer",
        str(root / "manifest.json"),
        "--prompt",
        "Once upon a time",
        "--num-samples",
        "2",
        "--max-new-tokens",
        "40",
        "--temperature",
        "0.5",
        "--seed",
        "3",
    ]
    assert training_cli(["generate", str(root / "ckpt"), *args]) == 0
    printed = capsys.readouterr().out
    samples = re.split(r"--- sample \d+\n", printed)[1:]
    assert len(samples) == 2
    known = set(re.findall(r"[a-z]+", " ".join(paragraphs).lower()))
    for sample in samples:
        assert sample.startswith("Once upon a time")
        words = re.findall(r"[a-z]+", sample[len("Once upon a time") :].lower())
        assert len(words) >= 5, sample
        # A model that learnt the stories writes their words, not byte soup.
        assert sum(w in known for w in words) / len(words) > 0.8, sample

    # The export (with the tokenizer copied in) samples exactly the same text.
    assert (
        training_cli(["export", str(root / "ckpt"), str(root / "hf"), "--tokenizer", str(root)])
        == 0
    )
    capsys.readouterr()
    assert training_cli(["generate", str(root / "hf"), *args[2:]]) == 0
    assert capsys.readouterr().out == printed


def test_export_tokenizer_loads_in_transformers(trained):
    root, paragraphs = trained
    export(root / "ckpt", root / "hf-tok", tokenizer=root / "manifest.json")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(root / "hf-tok")
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(root / "tokenizer.json"))
    assert hf_tokenizer(paragraphs[0])["input_ids"] == ours.encode(paragraphs[0]).ids
    assert hf_tokenizer.eos_token_id == EOS_ID and hf_tokenizer.mask_token_id == MASK_ID
    config = json.loads((root / "hf-tok" / "config.json").read_text())
    assert config["eos_token_id"] == EOS_ID and config["architectures"] == ["LlamaForCausalLM"]


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pt"):
        export(tmp_path, tmp_path / "out")
