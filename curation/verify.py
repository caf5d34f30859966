"""`python -m curation verify DIR`: check a token shard directory against its manifest.

Every shard listed must exist, hold the listed row count, match its sha256 and have the
v1 schema; the split totals and the tokenizer checksum must agree. Each problem is one
line naming the file; the exit status is 1 if there is any.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from curation import storage
from curation.config import StorageConfig
from curation.shards import FORMAT, FORMAT_VERSION

_ID_TYPE = pa.int32()


def verify(url: str, storage_cfg: StorageConfig | None = None) -> list[str]:
    """Problems found in the shard directory at `url` ([] when it matches its manifest)."""
    fs, root = storage.open_fs(url, storage_cfg or StorageConfig())
    manifest_path = storage.join(root, "manifest.json")
    try:
        manifest = json.loads(fs.cat_file(manifest_path))
    except FileNotFoundError:
        return [f"{url}: no manifest.json (not a shard directory, or its run did not finish)"]
    except json.JSONDecodeError as e:
        return [f"{manifest_path}: not valid JSON ({e})"]
    if (manifest.get("format"), manifest.get("format_version")) != (FORMAT, FORMAT_VERSION):
        return [(f"{manifest_path}: format {manifest.get('format')!r} version "
                f"{manifest.get('format_version')!r}, expected {FORMAT!r} version {FORMAT_VERSION}")]
    width = manifest["seq_len"] + 1
    expected = {"input_ids": pa.list_(_ID_TYPE, width)}
    if manifest["segment_ids"]:
        expected["segment_ids"] = pa.list_(_ID_TYPE, width)
    problems = _check_file(fs, root, manifest["tokenizer"]["path"], manifest["tokenizer"]["sha256"])
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            problems += _check_shard(fs, root, shard, expected, width)
        for total in ("rows", "tokens"):
            listed = sum(s[total] for s in info["shards"])
            if listed != info[total]:
                problems.append(f"split {split}: {total} is {info[total]} but its shards add up to {listed}")
    return problems


def _check_file(fs, root: str, relative: str, digest: str) -> list[str]:
    try:
        data = fs.cat_file(storage.join(root, relative))
    except FileNotFoundError:
        return [f"{relative}: missing"]
    actual = hashlib.sha256(data).hexdigest()
    return [] if actual == digest else [f"{relative}: bad checksum (sha256 {actual}, manifest says {digest})"]


def _check_shard(fs, root: str, shard: dict, expected: dict[str, pa.DataType], width: int) -> list[str]:
    path = shard["path"]
    problems = _check_file(fs, root, path, shard["sha256"])
    if problems and problems[0].endswith("missing"):
        return problems
    try:
        parquet = pq.ParquetFile(io.BytesIO(fs.cat_file(storage.join(root, path))))
    except pa.ArrowInvalid as e:
        return problems + [f"{path}: not a readable Parquet file ({e})"]
    schema = {f.name: f.type for f in parquet.schema_arrow}
    if schema != expected:
        problems.append(f"{path}: bad schema {_show(schema)}, expected {_show(expected)}")
    rows = parquet.metadata.num_rows
    if rows != shard["rows"]:
        problems.append(f"{path}: {rows} rows, manifest says {shard['rows']}")
    if shard["tokens"] != shard["rows"] * width:
        problems.append(f"{path}: manifest says {shard['tokens']} tokens for {shard['rows']} rows "
                        f"of {width}")
    return problems


def _show(schema: dict[str, pa.DataType]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in schema.items()) + "}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m curation verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="shard directory (holding manifest.json), local or s3://")
    args = parser.parse_args(argv)
    problems = verify(args.path)
    for problem in problems:
        print(problem)
    if problems:
        print(f"FAILED: {len(problems)} problem(s) in {args.path}")
        return 1
    print(f"OK: {args.path} matches its manifest")
    return 0
