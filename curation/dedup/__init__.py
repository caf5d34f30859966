"""Exact and MinHash-LSH near-duplicate removal (docs/dedup.md)."""

from curation.dedup.phase import MARKS_SCHEMA, deduplicate, example_clusters

__all__ = ["MARKS_SCHEMA", "deduplicate", "example_clusters"]
