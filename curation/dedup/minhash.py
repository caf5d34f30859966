"""Vectorized MinHash signatures, bit-identical to `datasketch.MinHash` (datasketch 2.x).

Scheme: datasketch's default `affine32`. Permutations are drawn exactly as datasketch
draws them: `RandomState(seed)`, then `a = randint(0, 2**31, num_perm) * 2 + 1` (odd) and
`b = randint(0, 2**32, num_perm)`, both uint32. Each shingle hash h (32-bit, from
`shingles.shingle_hash`) is pre-mixed with the MurmurHash3 finalizer and permuted as
`a * fmix32(h) + b mod 2**32`; the signature keeps the minimum per permutation, and an
empty document keeps the all-`2**32 - 1` "empty" value.

So `signatures(...)[i]` equals `MinHash(num_perm, seed, hashfunc=shingle_hash)` updated
with the shingles of document i (see `shingles.shingle_texts`); `to_lean_minhash` wraps a
row for datasketch's `MinHashLSH` / `LeanMinHash`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from curation.dedup.shingles import fmix32

EMPTY = np.uint32(0xFFFFFFFF)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) uint32 arrays of datasketch's affine32 scheme for this seed."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


@njit(cache=True, parallel=False)
def _minhash(hashes, offsets, a, b, out):
    num_perm = len(a)
    for d in prange(len(offsets) - 1):
        row = out[d]
        for i in range(offsets[d], offsets[d + 1]):
            hv = np.uint32(fmix32(np.uint64(hashes[i])))
            for p in range(num_perm):
                v = np.uint32(a[p] * hv + b[p])  # wraps mod 2**32, as datasketch
                if v < row[p]:  # noqa: PLR1730 - the loop as benchmarked (docs/dedup.md)
                    row[p] = v


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(docs, num_perm) uint32 signatures from flat shingle hashes and per-doc offsets."""
    a, b = permutations(num_perm, seed)
    out = np.full((len(offsets) - 1, num_perm), EMPTY, np.uint32)
    _minhash(hashes, offsets, a, b, out)
    return out


def to_lean_minhash(signature: np.ndarray, seed: int):
    """A datasketch LeanMinHash holding this signature (for MinHashLSH and friends)."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=seed, hashvalues=signature, scheme="affine32")
