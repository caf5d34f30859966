"""LSH banding: choose bands x rows for a Jaccard threshold, and hash each band to a key.

Two documents with Jaccard similarity s share at least one band key with probability
P(s) = 1 - (1 - s**rows)**bands (the S-curve). Like datasketch's `MinHashLSH`, the
parameters minimize  w_fp * FP + w_fn * FN  where FP is the area under P(s) below the
threshold and FN the area above P(s) over it. The integrands are polynomials of degree
bands * rows <= num_perm, so Gauss-Legendre quadrature with num_perm / 2 + 1 nodes
integrates them exactly; all (bands, rows) pairs are scored at once.

Band i covers signature positions [i * rows, (i + 1) * rows), as in datasketch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_MIX = np.uint64(0x9E3779B97F4A7C15)


def detection_probability(similarity, bands: int, rows: int):
    """P(two documents with this Jaccard similarity share a band key)."""
    return 1.0 - (1.0 - np.asarray(similarity, np.float64) ** rows) ** bands


def _integral(low: float, high: float, num_perm: int, fn) -> np.ndarray:
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    s = (high - low) / 2 * nodes + (high + low) / 2
    return (fn(s) * weights).sum(axis=-1) * (high - low) / 2


def optimal_params(threshold: float, num_perm: int, false_positive_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false positive and false negative areas."""
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)])
    bands, rows = pairs[:, :1].astype(np.float64), pairs[:, 1:].astype(np.float64)
    fp = _integral(0.0, threshold, num_perm, lambda s: detection_probability(s, bands, rows))
    fn = _integral(threshold, 1.0, num_perm, lambda s: 1.0 - detection_probability(s, bands, rows))
    error = false_positive_weight * fp + (1.0 - false_positive_weight) * fn
    b, r = pairs[int(np.argmin(error))]
    return int(b), int(r)


@njit(cache=True)
def _band_keys(signatures, bands, rows):
    out = np.empty((signatures.shape[0], bands), np.uint64)
    for d in range(signatures.shape[0]):
        for band in range(bands):
            h = np.uint64(band + 1) * _MIX
            for k in range(band * rows, (band + 1) * rows):
                h = (h ^ np.uint64(signatures[d, k])) * _MIX
                h ^= h >> np.uint64(29)
            out[d, band] = h
    return out


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs, bands) uint64 key per band: equal keys <=> equal band (up to 2**-64 collisions);
    the band index is mixed in, so keys of different bands never meet."""
    return _band_keys(signatures, bands, rows)
