"""Word n-gram shingles: ONE tokenization and ONE shingle hash for every dedup path.

The fast path (numba over a whole Arrow batch), the datasketch reference path
(`shingle_hash` given to `MinHash(hashfunc=...)`, fed `shingle_texts`) and the true-Jaccard
verification all use `_tokenize_hash` below, so they cannot drift apart.

Tokenization: Unicode lowercase (Arrow `utf8_lower`), then a word is a maximal run of code
points whose Unicode category is a letter, number or mark (L*, N*, M*); everything else
(punctuation, symbols, whitespace) only separates words.

Hashes (32-bit; the shingle hash is the input of datasketch's `affine32` scheme):
word = fmix32(FNV-1a-32 of its UTF-8 bytes); a shingle chains its word hashes through
the MurmurHash3 finalizer, h = fmix32(h ^ word), starting from `_CHAIN_SEED`.

Short documents: a document with fewer words than `ngram` is ONE shingle made of all its
words, so it only groups with documents made of the same few words. A document with no
words has no shingles (datasketch's empty signature); the dedup phase leaves it out of
near-duplicate search (exact dedup still applies).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

_MASK32 = np.uint64(0xFFFFFFFF)
_CHAIN_SEED = np.uint64(0x9E3779B9)
_FNV_OFFSET = np.uint64(0x811C9DC5)
_FNV_PRIME = np.uint64(0x01000193)
_FMIX_M1 = np.uint64(0x85EBCA6B)
_FMIX_M2 = np.uint64(0xC2B2AE35)


@lru_cache(maxsize=1)
def word_characters() -> np.ndarray:
    """Per code point: is it part of a word (Unicode category L*, N* or M*)?"""
    return np.array([unicodedata.category(chr(c))[0] in "LNM" for c in range(0x110000)])


@njit(cache=True, inline="always")
def fmix32(h):
    """MurmurHash3 32-bit finalizer on a uint64 holding a 32-bit value."""
    h ^= h >> np.uint64(16)
    h = (h * _FMIX_M1) & _MASK32
    h ^= h >> np.uint64(13)
    h = (h * _FMIX_M2) & _MASK32
    return h ^ (h >> np.uint64(16))


@njit(cache=True)
def _word_hash(data, start, end):
    h = _FNV_OFFSET
    for i in range(start, end):
        h = ((h ^ np.uint64(data[i])) * _FNV_PRIME) & _MASK32
    return fmix32(h)


@njit(cache=True)
def _tokenize_hash(data, offsets, is_word):
    """Words of each UTF-8 text: (byte starts, byte ends, hashes, int64 offsets per text)."""
    n_docs = len(offsets) - 1
    capacity = len(data) // 2 + 1
    starts = np.empty(capacity, np.int64)
    ends = np.empty(capacity, np.int64)
    hashes = np.empty(capacity, np.uint32)
    word_offsets = np.zeros(n_docs + 1, np.int64)
    n = 0
    for d in range(n_docs):
        i, stop = offsets[d], offsets[d + 1]
        word_start = -1
        while i <= stop:
            if i == stop:
                in_word, width = False, 1
            else:
                lead = data[i]
                if lead < 0x80:
                    cp, width = np.int64(lead), 1
                elif lead < 0xE0:
                    cp, width = (np.int64(lead & 0x1F) << 6) | (data[i + 1] & 0x3F), 2
                elif lead < 0xF0:
                    cp = (np.int64(lead & 0x0F) << 12) | (np.int64(data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F)
                    width = 3
                else:
                    cp = ((np.int64(lead & 0x07) << 18) | (np.int64(data[i + 1] & 0x3F) << 12)
                          | (np.int64(data[i + 2] & 0x3F) << 6) | (data[i + 3] & 0x3F))
                    width = 4
                in_word = is_word[cp]
            if in_word and word_start < 0:
                word_start = i
            elif not in_word and word_start >= 0:
                starts[n], ends[n] = word_start, i
                hashes[n] = _word_hash(data, word_start, i)
                n += 1
                word_start = -1
            i += width
        word_offsets[d + 1] = n
    return starts[:n], ends[:n], hashes[:n], word_offsets


@njit(cache=True)
def _chain_shingles(hashes, offsets, ngram):
    counts = np.empty(len(offsets) - 1, np.int64)
    for d in range(len(offsets) - 1):
        n = offsets[d + 1] - offsets[d]
        counts[d] = 0 if n == 0 else max(n - ngram + 1, 1)
    out_offsets = np.zeros(len(counts) + 1, np.int64)
    out_offsets[1:] = np.cumsum(counts)
    out = np.empty(out_offsets[-1], np.uint32)
    for d in range(len(counts)):
        start = offsets[d]
        width = min(ngram, offsets[d + 1] - start)
        for i in range(counts[d]):
            h = _CHAIN_SEED
            for j in range(width):
                h = fmix32(h ^ np.uint64(hashes[start + i + j]))
            out[out_offsets[d] + i] = np.uint32(h)
    return out, out_offsets


def _utf8_buffers(texts) -> tuple[np.ndarray, np.ndarray]:
    """Lowercased texts as one uint8 buffer and int64 offsets (null text = empty)."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(texts, pa.string())
    lowered = pc.utf8_lower(pc.fill_null(texts, "")).cast(pa.large_string())
    if isinstance(lowered, pa.ChunkedArray):
        lowered = lowered.combine_chunks()
    _, offsets, data = lowered.buffers()
    offsets = np.frombuffer(offsets, np.int64)[lowered.offset:lowered.offset + len(lowered) + 1]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return data, offsets


def shingle_hashes(texts, ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fast path: (uint32 shingle hashes flat, int64 offsets per text, words per text)."""
    data, offsets = _utf8_buffers(texts)
    _, _, hashes, word_offsets = _tokenize_hash(data, offsets, word_characters())
    shingles, shingle_offsets = _chain_shingles(hashes, word_offsets, ngram)
    return shingles, shingle_offsets, np.diff(word_offsets)


def words(text: str) -> list[bytes]:
    """The words of one text, UTF-8 encoded, exactly as the fast path sees them."""
    data, offsets = _utf8_buffers([text])
    starts, ends, _, _ = _tokenize_hash(data, offsets, word_characters())
    return [data[s:e].tobytes() for s, e in zip(starts, ends)]


def shingle_texts(text: str, ngram: int) -> list[bytes]:
    """Reference path: the shingles of one text, words joined by single spaces."""
    tokens = words(text)
    width = min(ngram, len(tokens))
    return [b" ".join(tokens[i:i + width]) for i in range(len(tokens) - width + 1)] if tokens else []


def shingle_hash(shingle: bytes) -> int:
    """The fast path's shingle hash of one `shingle_texts` shingle: pass it to
    `datasketch.MinHash(hashfunc=shingle_hash)` for identical signatures."""
    h = _CHAIN_SEED
    for word in shingle.split(b" "):
        h = fmix32(h ^ _word_hash(np.frombuffer(word, np.uint8), 0, len(word)))
    return int(h)


@njit(cache=True)
def _sorted_sets(hashes, offsets):
    out = np.empty_like(hashes)
    out_offsets = np.zeros_like(offsets)
    for d in range(len(offsets) - 1):
        seg = np.sort(hashes[offsets[d]:offsets[d + 1]])
        n = 0
        for i in range(len(seg)):
            if i == 0 or seg[i] != seg[i - 1]:
                out[out_offsets[d] + n] = seg[i]
                n += 1
        out_offsets[d + 1] = out_offsets[d] + n
    return out[:out_offsets[-1]], out_offsets


def shingle_sets(hashes: np.ndarray, offsets: np.ndarray) -> pa.LargeListArray:
    """Per document, its distinct shingle hashes sorted: the set for true Jaccard."""
    values, set_offsets = _sorted_sets(hashes, offsets)
    return pa.LargeListArray.from_arrays(pa.array(set_offsets), pa.array(values))


@njit(cache=True)
def _jaccard_pairs(a_values, a_offsets, b_values, b_offsets):
    out = np.empty(len(a_offsets) - 1, np.float64)
    for k in range(len(out)):
        i, i_end = a_offsets[k], a_offsets[k + 1]
        j, j_end = b_offsets[k], b_offsets[k + 1]
        union = (i_end - i) + (j_end - j)
        common = 0
        while i < i_end and j < j_end:
            if a_values[i] == b_values[j]:
                common += 1
                i += 1
                j += 1
            elif a_values[i] < b_values[j]:
                i += 1
            else:
                j += 1
        union -= common
        out[k] = common / union if union else 1.0
    return out


def _list_parts(sets) -> tuple[np.ndarray, np.ndarray]:
    sets = sets.combine_chunks() if isinstance(sets, pa.ChunkedArray) else sets
    sets = sets.cast(pa.large_list(pa.uint32()))
    offsets = sets.offsets.to_numpy()
    return sets.values.to_numpy(), offsets


def jaccard(a, b) -> np.ndarray:
    """Row-wise Jaccard similarity of two arrays of sorted shingle sets (`shingle_sets`)."""
    return _jaccard_pairs(*_list_parts(a), *_list_parts(b))
