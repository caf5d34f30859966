"""Curation: raw documents -> curated Parquet -> token shards, on Ray Data."""

__version__ = "0.1.0"
