"""Connected components of the duplicate graph (nodes: documents, edges: duplicate pairs).

Algorithm: the edge list is relabelled to dense indices (`np.unique`), turned into a
sparse adjacency matrix and labelled by scipy's breadth-first `connected_components`:
O(V + E) time. It runs in ONE process, but only over documents that have a duplicate
candidate: signatures, band keys and texts never get there (the band shuffle reduces
them to star edges first, see `phase.py`). Memory: about 16 bytes per edge for the input,
~24 per edge in the sparse matrix and ~20 per node, i.e. at most ~0.4 GB per million
documents when every document is a candidate (bands <= 9 star edges each), typically
far less (only duplicates have edges).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as _label


def connected_components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, component) for every node on an edge; component ids are dense int64."""
    nodes, index = np.unique(np.concatenate([u, v]), return_inverse=True)
    ends = index.reshape(2, -1)
    graph = coo_matrix((np.ones(ends.shape[1], np.int8), (ends[0], ends[1])), shape=(len(nodes),) * 2)
    _, labels = _label(graph, directed=False)
    return nodes, labels.astype(np.int64)
