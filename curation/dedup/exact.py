"""Exact-duplicate key: a 128-bit hash of the text, lowercased with whitespace collapsed.

Case and spacing differences (a re-indented copy, an upper-cased title) still count as
the same text; anything else (one character) makes a different key. 128 bits keep
accidental collisions negligible at any corpus size.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

KEY_TYPE = pa.binary(16)


def exact_keys(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    canonical = pc.binary_join(pc.utf8_split_whitespace(pc.utf8_lower(pc.fill_null(texts, ""))), " ")
    digests = (hashlib.blake2b(t.encode(), digest_size=16).digest() for t in canonical.to_pylist())
    return pa.array(digests, KEY_TYPE, size=len(canonical))
