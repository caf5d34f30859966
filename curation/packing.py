"""Tokenize and pack: the per-batch steps between curated documents and shard rows.

`Encoder` turns documents into token lists (EOS after each, optional BOS before) and
decides each document's split by hash. `expand_copies` applies the mixture (a document
repeated `copies` times) and scatters the copies over packing groups. `pack_group`
concatenates one group's documents and cuts them into rows of exactly `seq_len + 1`
tokens; only the group's last partial row is lost, so waste is about half a row per group.

All three are plain functions over Arrow tables (Ray Data runs them; tests call them
directly), and every choice they make comes from document hashes, never from the order in
which Ray hands them rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer

from curation.hashing import hash_strings, mix, unit

# Columns of a tokenized document.
TOKENS, N_TOKENS, DOC_HASH, VALIDATION, DIFFICULTY = "tokens", "n_tokens", "doc_hash", "validation", "difficulty"
COPY, GROUP = "copy", "group"
# Columns of a packed row; ROW_HASH and PART_TOKENS are internal and not written to shards.
INPUT_IDS, SEGMENT_IDS, ROW_HASH, PART_TOKENS = "input_ids", "segment_ids", "row_hash", "part_tokens"


class Encoder:
    """Ray Data callable class: loads the tokenizer once per worker, encodes batches."""

    def __init__(self, tokenizer_json: str, eos_id: int, bos_id: int | None, split_seed: int,
                 validation_fraction: float, difficulty_column: str | None):
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.prefix, self.suffix = ([bos_id] if bos_id is not None else []), [eos_id]
        self.split_seed, self.validation_fraction = split_seed, validation_fraction
        self.difficulty_column = difficulty_column

    def __call__(self, docs: pa.Table) -> pa.Table:
        # add_special_tokens=False: BOS/EOS are ours to place, whatever the tokenizer's
        # post-processor would add (Llama's adds <s>).
        encodings = self.tokenizer.encode_batch(docs.column("text").to_pylist(), add_special_tokens=False)
        ids = [self.prefix + e.ids + self.suffix for e in encodings]
        lengths = np.fromiter(map(len, ids), np.int64, count=len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int32, count=int(offsets[-1]))
        doc_hashes = hash_strings(docs.column("id"))
        columns = {
            "source": docs.column("source"),
            "lang": docs.column("lang"),
            DOC_HASH: pa.array(doc_hashes, pa.uint64()),
            VALIDATION: pa.array(unit(mix(doc_hashes, self.split_seed)) < self.validation_fraction),
            TOKENS: pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
            N_TOKENS: pa.array(lengths),
        }
        if self.difficulty_column:
            columns[DIFFICULTY] = pc.cast(docs.column(self.difficulty_column), pa.float64())
        return pa.table(columns)


def expand_copies(docs: pa.Table, copies: Callable[[pa.Table], np.ndarray], n_groups: int,
                  seed: int) -> pa.Table:
    """Repeat each document `copies(docs)` times and give every copy a packing group.

    Copies of one document land in different groups (the group hashes the copy number), so
    repetitions are spread over the epoch rather than packed side by side.
    """
    counts = copies(docs)
    rows = np.repeat(np.arange(len(docs)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    copy = np.arange(len(rows)) - first
    expanded = docs.take(pa.array(rows, pa.int64())).append_column(COPY, pa.array(copy))
    copy_hashes = mix(expanded.column(DOC_HASH).to_numpy(), copy)
    return expanded.append_column(GROUP, pa.array(mix(copy_hashes, seed) % np.uint64(n_groups)))


def pack_group(docs: pa.Table, seq_len: int, cells: list[tuple[str, str]], segment_ids: bool,
               by_difficulty: bool) -> pa.Table:
    """Concatenate one group's documents and cut rows of `seq_len + 1` tokens.

    Documents are laid out in hash order (or easiest first, for a curriculum, so that a
    row holds documents of similar difficulty). Each row records how many of its tokens
    come from each (source, lang) cell in `cells`, for the manifest's accounting.
    """
    width = seq_len + 1
    pack_hashes = mix(docs.column(DOC_HASH).to_numpy(), docs.column(COPY).to_numpy())
    keys = (pack_hashes,) + ((docs.column(DIFFICULTY).to_numpy(),) if by_difficulty else ())
    order = np.lexsort(keys)  # the last key is the primary one
    docs = docs.take(pa.array(order, pa.int64()))
    flat = pc.list_flatten(docs.column(TOKENS)).to_numpy()
    n_rows = len(flat) // width
    kept = n_rows * width
    doc_of_token = np.repeat(np.arange(len(docs)), docs.column(N_TOKENS).to_numpy())[:kept]

    cell_index = {cell: i for i, cell in enumerate(cells)}
    doc_cells = np.array([cell_index[c] for c in zip(docs.column("source").to_pylist(),
                                                      docs.column("lang").to_pylist())], np.int64)
    row_of_token = np.arange(kept) // width
    parts = np.bincount(row_of_token * len(cells) + doc_cells[doc_of_token],
                        minlength=n_rows * len(cells))
    group = docs.column(GROUP)[0].as_py() if len(docs) else 0
    columns = {
        INPUT_IDS: _rows(flat[:kept].astype(np.int32), width),
        ROW_HASH: pa.array(mix(np.full(n_rows, group, np.uint64), np.arange(n_rows)), pa.uint64()),
        PART_TOKENS: _rows(parts.astype(np.int64), len(cells)),
    }
    if segment_ids:
        segments = doc_of_token.reshape(n_rows, width)
        columns[SEGMENT_IDS] = _rows((segments - segments[:, :1]).astype(np.int32).ravel(), width)
    if by_difficulty:
        token_difficulty = docs.column(DIFFICULTY).to_numpy()[doc_of_token]
        columns[DIFFICULTY] = pa.array(token_difficulty.reshape(n_rows, width).mean(axis=1))
    return pa.table(columns)


def _rows(values: np.ndarray, width: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values), width)
