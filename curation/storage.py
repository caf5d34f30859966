"""Where files live: local paths and `s3://` URLs behind one fsspec interface.

Everything that touches storage goes through `open_fs`, so the S3 endpoint (MinIO, moto,
...), region and credentials are resolved in one place: the config first, then the
standard AWS environment variables (credentials are left to botocore, which reads
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE itself).

Outputs are written atomically: a reader never sees a half-written file. Locally that is a
temporary name in the same directory followed by `os.replace`; on S3 an object only
becomes visible once its upload completes.
"""

from __future__ import annotations

import os
import posixpath
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from curation.config import ConfigError, StorageConfig

S3_SCHEMES = ("s3://", "s3a://")


def is_s3(url: str) -> bool:
    return url.startswith(S3_SCHEMES)


def _first_env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def open_fs(url: str, storage: StorageConfig) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem holding `url`, and `url`'s path on it (no protocol)."""
    if is_s3(url):
        import s3fs

        endpoint = storage.endpoint_url or _first_env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        region = storage.region or _first_env("AWS_REGION", "AWS_DEFAULT_REGION")
        fs = s3fs.S3FileSystem(
            anon=storage.anon,
            endpoint_url=endpoint,
            client_kwargs={"region_name": region} if region else {},
        )
        return fs, url.split("://", 1)[1].rstrip("/")
    if "://" in url and not url.startswith("file://"):
        raise ConfigError(f"unsupported storage URL {url!r}: use a local path or s3://bucket/key")
    path = url.removeprefix("file://")
    return LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def to_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The inverse of `open_fs`: a path on `fs` as a URL that `open_fs` accepts."""
    return path if isinstance(fs, LocalFileSystem) else f"s3://{path}"


def join(url: str, *parts: str) -> str:
    """Join path parts onto a local path or URL (always with `/`)."""
    return posixpath.join(url, *parts)


def exists(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    return fs.exists(path)


def list_files(fs: fsspec.AbstractFileSystem, path: str, suffix: str = "") -> list[str]:
    """Files under `path` (recursive) whose names end with `suffix`, sorted; [] if none."""
    if not fs.exists(path):
        return []
    return sorted(p for p in fs.find(path) if p.endswith(suffix))


def remove_tree(fs: fsspec.AbstractFileSystem, path: str) -> None:
    if fs.exists(path):
        fs.rm(path, recursive=True)


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `data` so that `path` holds either its old content or all of `data`."""
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data)  # an S3 object appears only when its upload completes
        return
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def write_parquet_atomic(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table) -> int:
    """Write `table` as one zstd-compressed Parquet file, atomically; returns its size."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    write_bytes_atomic(fs, path, data)
    return len(data)
