"""Curated-like documents built from the shared sample data: what `build_shards` reads.

TinyStories paragraphs and C4 documents (English), plus Universal Dependencies sentences
in a few languages (grouped ten to a document) for the language balance, written
Hive-partitioned by `lang` as the curation run writes them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pds

UD_LANGS = ("de", "fr", "fi")


def sample_documents(data: Path) -> list[dict]:
    docs: list[dict] = []
    stories = (data / "tinystories/tinystories_v1_valid_head.txt").read_text().split("\n\n")
    docs += [{"source": "tinystories", "lang": "en", "text": t.strip()} for t in stories if t.strip()]
    with open(data / "webcrawl/c4_en_first1000docs.jsonl") as f:
        docs += [{"source": "c4", "lang": "en", "text": json.loads(line)["text"]} for line in f]
    with open(data / "multilingual/ud_sentences_dev.tsv", newline="") as f:
        sentences: dict[str, list[str]] = {}
        for row in csv.DictReader(f, delimiter="\t"):
            if row["lang"] in UD_LANGS:
                sentences.setdefault(row["lang"], []).append(row["text"])
    for lang, texts in sorted(sentences.items()):
        docs += [{"source": "ud", "lang": lang, "text": " ".join(texts[i:i + 10])}
                 for i in range(0, len(texts), 10)]
    unique = {d["text"]: d for d in docs}  # tests match documents by text
    return [d | {"id": f"{d['source']}-{i}", "q_chars": float(len(d["text"]))}
            for i, d in enumerate(unique.values())]


def write_curated(data: Path, out: Path) -> list[dict]:
    """Write the sample as OUTPUT/curated/lang=XX/*.parquet; returns the documents."""
    docs = sample_documents(data)
    pds.write_dataset(pa.Table.from_pylist(docs), out, format="parquet", partitioning=["lang"],
                      partitioning_flavor="hive")
    return docs
