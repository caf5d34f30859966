"""Reading inputs from and writing outputs to s3:// through a real S3 endpoint (moto's
server on 127.0.0.1), and atomic local writes."""

from __future__ import annotations

import gzip
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.config import ConfigError, SourceConfig, StorageConfig
from curation.readers import plan_tasks, read_documents
from curation.storage import (
    join,
    list_files,
    open_fs,
    remove_tree,
    write_bytes_atomic,
    write_parquet_atomic,
)


@pytest.fixture()
def bucket(s3_server: str) -> str:
    """A fresh bucket per test; yields its s3:// URL."""
    fs, _ = open_fs("s3://", StorageConfig(endpoint_url=s3_server))
    name = f"test-{uuid.uuid4().hex[:12]}"
    fs.mkdir(name)
    return f"s3://{name}"


def read_all(source: SourceConfig, storage: StorageConfig) -> pa.Table:
    tasks = plan_tasks([source], storage)
    return pa.concat_tables(t for task in tasks for t in read_documents(task, source, storage, 300))


def test_read_inputs_from_s3(shared_data: Path, s3_server: str, bucket: str):
    storage = StorageConfig(endpoint_url=s3_server)
    fs, root = open_fs(bucket, storage)
    c4 = shared_data / "webcrawl" / "c4_en_first1000docs.jsonl"
    warc = shared_data / "webcrawl" / "dolma_sample-0000.warc.gz"
    fs.pipe_file(f"{root}/web/c4.jsonl.gz", gzip.compress(c4.read_bytes()))
    fs.put_file(str(warc), f"{root}/web/crawl/sample.warc.gz")
    fs.pipe_file(f"{root}/web/_SUCCESS", b"")

    source = SourceConfig(name="web", paths=[f"{bucket}/web/"])
    tasks = plan_tasks([source], storage)
    assert [(t.path, t.format) for t in tasks] == [
        (f"{bucket}/web/c4.jsonl.gz", "jsonl"), (f"{bucket}/web/crawl/sample.warc.gz", "warc")]
    remote = read_all(source, storage)
    local = read_all(SourceConfig(name="web", paths=[str(c4), str(warc)]), StorageConfig())
    assert remote.column("text").equals(local.column("text"))
    assert remote.column("url").equals(local.column("url"))
    assert set(remote.column("path").to_pylist()) == {t.path for t in tasks}

    globbed = plan_tasks([SourceConfig(name="web", paths=[f"{bucket}/web/*.jsonl.gz"])], storage)
    assert [t.path for t in globbed] == [f"{bucket}/web/c4.jsonl.gz"]
    with pytest.raises(ConfigError, match=r"sources\.web: path .*nothing/.* matches no"):
        plan_tasks([SourceConfig(name="web", paths=[f"{bucket}/nothing/"])], storage)
    with pytest.raises(ConfigError, match=r"unsupported storage URL 'gs://b/x.jsonl'"):
        plan_tasks([SourceConfig(name="web", paths=["gs://b/x.jsonl"])], storage)


def test_endpoint_from_the_aws_environment(s3_server: str, bucket: str, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    fs, root = open_fs(bucket, StorageConfig())  # no endpoint in the config
    fs.pipe_file(f"{root}/docs.jsonl", b'{"text": "from the environment"}\n')
    table = read_all(SourceConfig(name="s", paths=[f"{bucket}/docs.jsonl"]), StorageConfig())
    assert table.column("text").to_pylist() == ["from the environment"]


def test_write_parquet_atomically_to_s3(s3_server: str, bucket: str):
    fs, root = open_fs(bucket, StorageConfig(endpoint_url=s3_server))
    table = pa.table({"id": ["a", "b"], "text": ["first", "second"]})
    path = join(root, "curated", "lang=en", "part-0.parquet")
    size = write_parquet_atomic(fs, path, table)
    assert size == fs.size(path)
    assert pq.read_table(path, filesystem=fs).equals(table)
    assert pq.ParquetFile(fs.open(path)).metadata.row_group(0).column(1).compression == "ZSTD"
    assert list_files(fs, root, ".parquet") == [path]
    remove_tree(fs, join(root, "curated"))
    assert list_files(fs, root) == []


def test_local_atomic_writes_leave_no_temporaries(tmp_path: Path):
    fs, root = open_fs(str(tmp_path / "out"), StorageConfig())
    path = join(root, "nested", "stats.json")
    write_bytes_atomic(fs, path, b"old")
    write_bytes_atomic(fs, path, b"new")
    assert Path(path).read_bytes() == b"new"
    table = pa.table({"x": list(range(1000))})
    part = join(root, "nested", "part.parquet")
    assert write_parquet_atomic(fs, part, table) == os.path.getsize(part)
    assert pq.read_table(part).equals(table)
    assert sorted(os.listdir(Path(root) / "nested")) == ["part.parquet", "stats.json"]
