"""The tokenizer of the token shards: a byte-level BPE trained on a sample of the curated
documents, or any existing Hugging Face `tokenizer.json` (GPT-2, Llama, ...).

`python -m curation train-tokenizer CONFIG` trains one on its own; `build_shards` trains
(or loads) it as its first step and copies it beside the shards.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow.dataset as pds
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from curation.config import ConfigError, TokenizerConfig, load_config
from curation.hashing import hash_strings
from curation.storage import open_fs, write_bytes_atomic


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens in a tokenizer (None where it has no such token)."""

    bos: int | None
    eos: int
    pad: int | None
    mask: int | None

    @classmethod
    def of(cls, tokenizer: Tokenizer, cfg: TokenizerConfig) -> SpecialIds:
        ids = cls(*(tokenizer.token_to_id(t) for t in (cfg.bos, cfg.eos, cfg.pad, cfg.mask)))
        if ids.eos is None:
            raise ConfigError(f"tokenizer.eos: the tokenizer has no token {cfg.eos!r}; set "
                              "`tokenizer.eos` to its end-of-text token")
        if cfg.add_bos and ids.bos is None:
            raise ConfigError(f"tokenizer.add_bos needs a BOS token, and the tokenizer has no "
                              f"{cfg.bos!r}; set `tokenizer.bos`")
        return ids


def train_bpe(texts: list[str], cfg: TokenizerConfig) -> Tokenizer:
    """Byte-level BPE: every byte is in the alphabet, so any text round-trips exactly.

    No normalizer and no prefix space, so decoding a document's ids gives back its text.
    The special tokens take the first ids: pad, bos, eos, mask = 0, 1, 2, 3.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=[cfg.pad, cfg.bos, cfg.eos, cfg.mask],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def sample_texts(curated_path: str, n: int, storage) -> list[str]:
    """The `n` curated documents with the smallest id hashes, in hash order: a uniform
    sample that is the same on every run, read in one streaming pass with bounded memory."""
    fs, root = open_fs(curated_path, storage)
    dataset = pds.dataset(root, filesystem=fs, format="parquet", partitioning="hive")
    keys, texts = np.empty(0, np.uint64), np.empty(0, object)
    for batch in dataset.to_batches(columns=["id", "text"]):
        keys = np.concatenate([keys, hash_strings(batch.column("id"))])
        texts = np.concatenate([texts, np.asarray(batch.column("text").to_pylist(), dtype=object)])
        if len(keys) > 2 * n:
            keep = np.argsort(keys, kind="stable")[:n]
            keys, texts = keys[keep], texts[keep]
    order = np.argsort(keys, kind="stable")[:n]
    if not len(order):
        raise ValueError(f"no curated documents under {curated_path} to train a tokenizer on")
    return list(texts[order])


def obtain_tokenizer(curated_path: str, cfg: TokenizerConfig, storage) -> tuple[Tokenizer, dict]:
    """Load `cfg.path`, or train on a sample of the curated documents. Returns the tokenizer
    and how it was obtained (for the manifest's provenance)."""
    if cfg.path:
        fs, path = open_fs(cfg.path, storage)
        try:
            tokenizer = Tokenizer.from_str(fs.cat_file(path).decode())
        except FileNotFoundError:
            raise ConfigError(f"tokenizer.path: {cfg.path} does not exist") from None
        return tokenizer, {"loaded_from": cfg.path}
    texts = sample_texts(curated_path, cfg.sample_docs, storage)
    return train_bpe(texts, cfg), {"trained_on_documents": len(texts)}


def tokenizer_bytes(tokenizer: Tokenizer) -> bytes:
    return tokenizer.to_str().encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m curation train-tokenizer",
        description="Train a byte-level BPE tokenizer on a sample of curated documents.")
    parser.add_argument("config", help="pipeline config (YAML); its `tokenizer` section applies")
    parser.add_argument("--input", help="curated documents (default: <run.output>/curated)")
    parser.add_argument("--out", help="tokenizer.json to write (default: <run.output>/tokenizer.json)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a config field (repeatable)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as e:
        print(e)
        return 2
    curated = args.input or f"{cfg.run.output.rstrip('/')}/curated"
    out = args.out or f"{cfg.run.output.rstrip('/')}/tokenizer.json"
    texts = sample_texts(curated, cfg.tokenizer.sample_docs, cfg.storage)
    tokenizer = train_bpe(texts, cfg.tokenizer)
    fs, path = open_fs(out, cfg.storage)
    write_bytes_atomic(fs, path, tokenizer_bytes(tokenizer))
    print(f"trained a {tokenizer.get_vocab_size()}-token byte-level BPE on {len(texts)} documents "
          f"from {curated}; wrote {out}")
    return 0
