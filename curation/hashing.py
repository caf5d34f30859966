"""Stable 64-bit document hashes: the one source of the pseudo-randomness that decides
splits, down-sampling and row order, so that the same inputs give the same shards on any
machine (no process-dependent `hash()`, no RNG state threaded through Ray tasks)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

_STRING_KEY = "rawtext-doc-hash"  # siphash key for strings: 16 bytes, fixed forever


def hash_strings(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 hash of each string."""
    return pd.util.hash_array(np.asarray(values.to_numpy(zero_copy_only=False), dtype=object),
                              hash_key=_STRING_KEY, categorize=False)


def mix(hashes: np.ndarray, value: int | np.ndarray) -> np.ndarray:
    """Derive an independent hash from `hashes` and a salt (a seed, a copy number, ...)."""
    salt = pd.util.hash_array(np.atleast_1d(np.asarray(value, dtype=np.uint64)))
    return pd.util.hash_array(np.asarray(hashes, dtype=np.uint64) ^ salt)


def unit(hashes: np.ndarray) -> np.ndarray:
    """Map hashes to floats uniform in [0, 1)."""
    return (np.asarray(hashes, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
