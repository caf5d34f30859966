"""The dedup phase on Ray Data: exact and MinHash-LSH near-duplicates -> one mark per document.

Steps (P hash partitions, `DedupConfig.partitions`):
1. sketch (map): per document its node id (64-bit hash of `id`), order key, exact key,
   band keys and, when verifying, its sorted shingle-hash set. Materialized once; texts
   are not kept.
2. exact (shuffle): rows grouped by exact key; in each group of equal texts the first by
   order key is the representative, the others get edges to it.
3. near (shuffle): one row per (band key, document); in each bucket of equal band keys the
   first node gets a star edge to every other one: the candidate pairs.
4. verify (two hash joins on node id): candidate pairs get both shingle sets; pairs below
   the threshold in true Jaccard (LSH false positives) are dropped.
5. components (driver): connected components of exact + verified edges (components.py),
   only over documents that have an edge.
6. decide: in each cluster the first document by order key (priority, source order, path,
   record) is kept; the others point to it with `dup_of`. A removed document is an
   `exact_duplicate` when an earlier document has its exact text, else a `near_duplicate`.
7. marks (map): one row per input document.

No single process holds all signatures or band keys: they only travel through the
shuffles. The driver holds the edges and a few columns of the documents that have one.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray

from curation.config import DedupConfig
from curation.dedup.components import connected_components
from curation.dedup.exact import exact_keys
from curation.dedup.lsh import band_keys, optimal_params
from curation.dedup.minhash import signatures
from curation.dedup.shingles import jaccard, shingle_hashes, shingle_sets
from curation.hashing import hash_strings

EXACT = "exact_duplicate"
NEAR = "near_duplicate"
ORDER = ["src_rank", "path", "record"]
MARKS_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("dup_cluster_id", pa.string()),
    ("dup_cluster_size", pa.int32()),
    ("dup_kept", pa.bool_()),
    ("dup_of", pa.string()),
    ("dup_reason", pa.string()),
])
_EDGES = pa.schema([("u", pa.int64()), ("v", pa.int64())])
_MEMBERS = pa.schema([("id", pa.string()), ("node", pa.int64()), ("nbytes", pa.int64()),
                      ("src_rank", pa.int32()), ("path", pa.string()), ("record", pa.int64())])
_CLUSTERS = pa.schema([("node", pa.int64()), *list(MARKS_SCHEMA)[1:]])
_ROWS_PER_PARTITION = 100_000


def lsh_params(cfg: DedupConfig) -> tuple[int, int]:
    if cfg.bands is not None:
        return cfg.bands, cfg.rows
    return optimal_params(cfg.threshold, cfg.num_perm, cfg.false_positive_weight)


def source_ranks(cfg: DedupConfig, source_order: list[str]) -> dict[str, int]:
    """Keep-order of sources: `priority` first, then the configured source order."""
    ordered = list(dict.fromkeys([*cfg.priority, *source_order]))
    return {name: rank for rank, name in enumerate(ordered)}


def _sketch(batch: pa.Table, cfg: DedupConfig, ranks: dict[str, int], bands: int, rows: int) -> pa.Table:
    texts = batch.column("text")
    ids = batch.column("id")
    sources = batch.column("source").to_pylist()
    columns = {
        "id": ids,
        "node": hash_strings(ids).view(np.int64),
        "src_rank": pa.array([ranks.get(s, len(ranks)) for s in sources], pa.int32()),
        "path": batch.column("path"),
        "record": batch.column("record").cast(pa.int64()),
        "nbytes": pc.binary_length(pc.fill_null(texts, "")).cast(pa.int64()),
        "exact": exact_keys(texts),
    }
    if cfg.near:
        hashes, offsets, n_words = shingle_hashes(texts, cfg.ngram)
        searchable = n_words >= max(cfg.min_words, 1)
        keys = band_keys(signatures(hashes, offsets, cfg.num_perm, cfg.seed), bands, rows).view(np.int64)
        columns["bands"] = pa.FixedSizeListArray.from_arrays(pa.array(keys.ravel()), bands,
                                                             mask=pa.array(~searchable))
        if cfg.verify:
            columns["shingles"] = shingle_sets(hashes, offsets)
    return pa.table(columns)


def _with_partition(batch: pa.Table, key: str, partitions: int) -> pa.Table:
    values = batch.column(key)
    if pa.types.is_fixed_size_binary(values.type):  # exact keys: their first 8 bytes
        values = np.frombuffer(b"".join(values.to_pylist()), np.uint64)[::2] if len(values) else np.zeros(0, np.uint64)
    part = np.asarray(values).view(np.uint64) % np.uint64(partitions)
    return batch.append_column("part", pa.array(part.astype(np.int32)))


def _groups(table: pa.Table, key: str) -> tuple[pa.Table, np.ndarray]:
    """Rows sorted by `key` then order key, and the first row index of each key group."""
    table = table.sort_by([(key, "ascending")] + [(c, "ascending") for c in ORDER if c in table.column_names]
                          + [("node", "ascending")])
    values = table.column(key)
    differs = pc.not_equal(values.slice(1), values.slice(0, len(values) - 1)) if len(values) > 1 else pa.array([], pa.bool_())
    starts = np.flatnonzero(np.concatenate([[True], np.asarray(differs)])) if len(values) else np.zeros(0, np.int64)
    return table, starts


def _star_edges(table: pa.Table, key: str) -> pa.Table:
    """An edge from the first node of each `key` group to every other node of the group."""
    table, starts = _groups(table, key)
    nodes = table.column("node").to_numpy()
    first = np.repeat(nodes[starts], np.diff(np.append(starts, len(nodes))))
    member = first != nodes
    pairs = np.unique(np.stack([first[member], nodes[member]], axis=1), axis=0).reshape(-1, 2)
    return pa.table({"u": pairs[:, 0], "v": pairs[:, 1]}, schema=_EDGES)


def _explode_bands(batch: pa.Table, partitions: int) -> pa.Table:
    bands = batch.column("bands")
    bands = bands.combine_chunks() if isinstance(bands, pa.ChunkedArray) else bands
    searchable = pc.is_valid(bands)
    bands, nodes = bands.filter(searchable), batch.column("node").filter(searchable)
    width = bands.type.list_size
    rows = pa.table({"band_key": bands.flatten(), "node": np.repeat(nodes.to_numpy(), width)})
    return _with_partition(rows, "band_key", partitions)


def _rows_of(batch: pa.Table, nodes: np.ndarray) -> pa.Table:
    return batch.filter(pa.array(np.isin(batch.column("node").to_numpy(), nodes)))


def _verify(batch: pa.Table, threshold: float) -> pa.Table:
    similarity = jaccard(batch.column("set_u"), batch.column("set_v"))
    keep = similarity >= threshold
    return pa.table({"u": batch.column("u").filter(keep), "v": batch.column("v").filter(keep)})


def _collect(ds: ray.data.Dataset, schema: pa.Schema) -> pa.Table:
    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables]) if tables else schema.empty_table()


def _edge_array(edges: pa.Table) -> np.ndarray:
    return np.stack([edges.column("u").to_numpy(), edges.column("v").to_numpy()], axis=1).reshape(-1, 2)


def _exact_edges(sketches: ray.data.Dataset, partitions: int) -> np.ndarray:
    keyed = sketches.select_columns(["node", "exact", *ORDER]).map_batches(
        _with_partition, fn_args=("exact", partitions), batch_format="pyarrow")
    grouped = keyed.groupby("part").map_groups(lambda t: _star_edges(t, "exact"), batch_format="pyarrow")
    return _edge_array(_collect(grouped, _EDGES))


def _near_edges(sketches: ray.data.Dataset, cfg: DedupConfig, partitions: int, stats: dict) -> np.ndarray:
    band_rows = sketches.select_columns(["node", "bands"]).map_batches(
        _explode_bands, fn_args=(partitions,), batch_format="pyarrow")
    buckets = band_rows.groupby("part").map_groups(lambda t: _star_edges(t, "band_key"), batch_format="pyarrow")
    candidates = np.unique(_edge_array(_collect(buckets, _EDGES)), axis=0).reshape(-1, 2)
    stats["candidate_pairs"] = len(candidates)
    if not cfg.verify or not len(candidates):
        return candidates
    involved = np.unique(candidates)
    sets = sketches.select_columns(["node", "shingles"]).map_batches(
        _rows_of, fn_args=(involved,), batch_format="pyarrow")
    pairs = ray.data.from_arrow(pa.table({"u": candidates[:, 0], "v": candidates[:, 1]}))
    for end in ("u", "v"):
        renamed = sets.rename_columns({"node": end, "shingles": f"set_{end}"})
        pairs = pairs.join(renamed, "inner", num_partitions=partitions, on=(end,))
    verified = _edge_array(_collect(pairs.map_batches(_verify, fn_args=(cfg.threshold,), batch_format="pyarrow"), _EDGES))
    stats["verified_pairs"] = len(verified)
    return verified


def _decide(members: pa.Table, nodes: np.ndarray, components: np.ndarray, exact_copies: np.ndarray) -> pd.DataFrame:
    """Per clustered document: cluster id and size, kept or not, `dup_of` and reason."""
    frame = members.to_pandas().merge(pd.DataFrame({"node": nodes, "component": components}), on="node")
    frame = frame.sort_values(["component", *ORDER, "node"], kind="stable")
    first = frame.groupby("component")["id"].transform("first")
    frame["dup_cluster_id"] = first
    frame["dup_cluster_size"] = frame.groupby("component")["id"].transform("size").astype(np.int32)
    frame["dup_kept"] = ~frame["component"].duplicated()
    frame["dup_of"] = first.where(~frame["dup_kept"], None)
    reason = np.where(np.isin(frame["node"], exact_copies), EXACT, NEAR)
    frame["dup_reason"] = pd.Series(reason, index=frame.index).where(~frame["dup_kept"], None)
    return frame


def _marks(batch: pa.Table, clusters: pa.Table) -> pa.Table:
    """One mark per document: clustered ones from `clusters` (sorted by node), others unique."""
    nodes, own = clusters.column("node").to_numpy(), batch.column("node").to_numpy()
    where = np.minimum(np.searchsorted(nodes, own), max(len(nodes) - 1, 0))
    found = nodes[where] == own if len(nodes) else np.zeros(len(own), bool)
    picked = clusters.take(pa.array(where, mask=~found))  # null rows for unique documents
    ids = batch.column("id")
    return pa.table({
        "id": ids,
        "dup_cluster_id": pc.coalesce(picked.column("dup_cluster_id"), ids),
        "dup_cluster_size": pc.coalesce(picked.column("dup_cluster_size"), pa.scalar(1, pa.int32())),
        "dup_kept": pc.coalesce(picked.column("dup_kept"), pa.scalar(True)),
        "dup_of": picked.column("dup_of"),
        "dup_reason": picked.column("dup_reason"),
    }, schema=MARKS_SCHEMA)


def deduplicate(docs: ray.data.Dataset, cfg: DedupConfig, source_order: list[str]) -> tuple[ray.data.Dataset, dict]:
    """Mark exact and near duplicates among `docs` (columns id, source, text, path, record).

    Returns (marks, stats). `marks` has one row per document (MARKS_SCHEMA): `dup_cluster_id`
    is the id of the cluster's kept document (a unique document is its own cluster of size
    1), `dup_kept` whether this document stays, `dup_of` the kept id for removed ones and
    `dup_reason` null | `exact_duplicate` | `near_duplicate`.
    """
    bands, rows = lsh_params(cfg)
    ranks = source_ranks(cfg, source_order)
    sketches = docs.map_batches(_sketch, fn_args=(cfg, ranks, bands, rows), batch_format="pyarrow").materialize()
    total = sketches.count()
    partitions = cfg.partitions or max(4, -(-total // _ROWS_PER_PARTITION))
    stats: dict[str, Any] = {"docs": total, "bands": bands, "rows": rows, "partitions": partitions,
                             "candidate_pairs": 0, "verified_pairs": None}
    no_edges = np.zeros((0, 2), np.int64)
    exact = _exact_edges(sketches, partitions) if cfg.enabled and cfg.exact else no_edges
    near = _near_edges(sketches, cfg, partitions, stats) if cfg.enabled and cfg.near else no_edges
    edges = np.concatenate([exact, near])
    nodes, components = connected_components(edges[:, 0], edges[:, 1])
    members = _collect(sketches.select_columns(_MEMBERS.names).map_batches(
        _rows_of, fn_args=(nodes,), batch_format="pyarrow"), _MEMBERS)
    decided = _decide(members, nodes, components, exact[:, 1])
    clusters = pa.Table.from_pandas(decided[_CLUSTERS.names].sort_values("node"), schema=_CLUSTERS,
                                    preserve_index=False)
    removed = decided[~decided["dup_kept"]]
    sizes = decided.loc[decided["dup_kept"], "dup_cluster_size"]
    stats.update(
        clusters=len(sizes),
        cluster_size_histogram={int(k): int(v) for k, v in sorted(collections.Counter(sizes).items())},
        docs_removed_exact=int((removed["dup_reason"] == EXACT).sum()),
        docs_removed_near=int((removed["dup_reason"] == NEAR).sum()),
        bytes_removed=int(removed["nbytes"].sum()),
    )
    marks = sketches.select_columns(["id", "node"]).map_batches(_marks, fn_args=(clusters,), batch_format="pyarrow")
    return marks, stats


def example_clusters(docs_df: pd.DataFrame, marks_df: pd.DataFrame, n: int = 5, excerpt: int = 300) -> list[list[tuple[str, str]]]:
    """The `n` largest clusters as lists of (id, text excerpt), kept document first, for a
    side-by-side view (ties: by cluster id, so the choice is stable)."""
    clustered = marks_df[marks_df["dup_cluster_size"] > 1]
    largest = (clustered.drop_duplicates("dup_cluster_id")
               .sort_values(["dup_cluster_size", "dup_cluster_id"], ascending=[False, True])
               .head(n)["dup_cluster_id"])
    texts = docs_df.set_index("id")["text"]
    out = []
    for cluster in largest:
        members = clustered[clustered["dup_cluster_id"] == cluster].sort_values("dup_kept", ascending=False, kind="stable")
        out.append([(i, texts.get(i, "")[:excerpt]) for i in members["id"]])
    return out
