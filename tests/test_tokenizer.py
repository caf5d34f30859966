"""`python -m curation train-tokenizer` on curated-like documents from the sample data."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from curation.tokenizer import main
from tests.curated_sample import write_curated


def test_train_tokenizer_command(shared_data: Path, tmp_path: Path, capsys):
    docs = write_curated(shared_data, tmp_path / "curated")
    config = tmp_path / "config.yaml"
    config.write_text("sources:\n  - {name: tinystories, paths: [unused]}\n")
    out = tmp_path / "tok" / "tokenizer.json"
    code = main([str(config), "--input", str(tmp_path / "curated"), "--out", str(out),
                 "--set", "tokenizer.vocab_size=600", "--set", "tokenizer.sample_docs=800"])
    assert code == 0 and "on 800 documents" in capsys.readouterr().out

    tokenizer = Tokenizer.from_file(str(out))
    assert tokenizer.get_vocab_size() == 600
    assert [tokenizer.token_to_id(t) for t in ("<|pad|>", "<|bos|>", "<|endoftext|>", "<|mask|>")] == [0, 1, 2, 3]
    for doc in docs[::500]:  # byte-level: every text round-trips exactly, whatever its script
        ids = tokenizer.encode(doc["text"], add_special_tokens=False).ids
        assert tokenizer.decode(ids) == doc["text"]
        assert len(ids) < len(doc["text"].encode())  # merges learned: fewer tokens than bytes
