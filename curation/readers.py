"""Input files -> Arrow batches of documents with one fixed schema (`DOC_SCHEMA`).

`plan_tasks` expands each source's paths (files, directories, globs, `s3://` prefixes) into
one `ReadTask` per file; `read_documents` streams one file as tables of at most
`batch_size` documents. Memory stays bounded by the batch, never by the file.

Bad records are never dropped here: they come out with a `reason` (see `REASONS`) and an
escaped excerpt of the raw record as `text`, so the run counts them and a user can see
what was wrong. A file that cannot be read at all raises `ReadError`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import fsspec
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from curation.config import ConfigError, SourceConfig, StorageConfig
from curation.storage import open_fs, to_url

DOC_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("timestamp", pa.string()),
        pa.field("meta", pa.string(), nullable=False),
        pa.field("source_id", pa.string()),
        pa.field("path", pa.string(), nullable=False),
        pa.field("record", pa.int64(), nullable=False),
        pa.field("reason", pa.string()),
    ]
)

REASONS = {
    "malformed_json": "a JSONL line that is not JSON, or not a JSON object",
    "missing_text": "no text field, or its value is not a string",
    "binary": "NUL bytes, or mostly undecodable / control characters",
    "invalid_utf8": "more than 1% of the characters are not valid UTF-8",
    "warc_http_status": "a WARC response whose HTTP status is not 200",
    "warc_not_html": "a WARC response whose Content-Type is not HTML",
}

# Name suffix -> format, after stripping a compression suffix. Longest first.
FORMAT_SUFFIXES = (
    (".warc.wet", "wet"),
    (".wet", "wet"),
    (".warc", "warc"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".json", "jsonl"),
    (".parquet", "parquet"),
    (".txt", "text"),
    (".md", "text"),
)
COMPRESSIONS = (".gz", ".zst")

URL_FIELDS = ("url",)
TIMESTAMP_FIELDS = ("timestamp", "created", "date")

EXCERPT_CHARS = 1000
MAX_INVALID_UTF8 = 0.01  # share of replaced characters above which a text is rejected
MAX_NON_TEXT = 0.30  # share of replaced + control characters above which it is binary
BINARY_SAMPLE_CHARS = 65536
MAX_BATCH_CHARS = 64 << 20  # also flush on size, so 50 MB documents do not pile up

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# Errors that mean "this file cannot be read", as opposed to a bug in this module.
_UNREADABLE = (OSError, EOFError, zlib.error, zstandard.ZstdError, pa.ArrowException)


class ReadError(Exception):
    """A file that cannot be read at all; the message names the file and the cause.

    It may be raised after some batches of the file were yielded: callers treat the file's
    task as failed as a whole.
    """


@dataclass(frozen=True)
class ReadTask:
    task_id: str  # stable, unique and filename-safe: source name + hash (see _task_id)
    source: str
    path: str  # local path or URL of one input file
    format: str  # jsonl | parquet | text | warc | wet


# --------------------------------------------------------------------------- planning


def infer_format(path: str) -> str | None:
    name = path.lower()
    for compression in COMPRESSIONS:
        name = name.removesuffix(compression)
    return next((fmt for suffix, fmt in FORMAT_SUFFIXES if name.endswith(suffix)), None)


def _is_hidden(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith((".", "_"))  # .crc, _SUCCESS, temp files


def _expand(fs: fsspec.AbstractFileSystem, path: str) -> tuple[list[str], bool]:
    """Files named by `path` (file, directory or glob), and whether it named several."""
    if any(c in path for c in "*?["):
        matches = fs.glob(path, detail=True)
    elif fs.isdir(path):
        matches = {path: {"type": "directory"}}
    else:
        return ([path] if fs.isfile(path) else []), False
    files = set()
    for name, info in matches.items():
        files.update(fs.find(name) if info["type"] == "directory" else [name])
    return sorted(files), True


def _task_id(source: str, pattern: str, path: str, file: str) -> str:
    """Source name + a hash of the config's pattern and the file's place under it. Not of
    the absolute path: the same config in another checkout (or on another machine) must
    give the same document ids, hence the same splits and shards."""
    base = re.split(r"[*?\[]", path, maxsplit=1)[0]  # the pattern's part before any glob
    under = file.removeprefix(base)
    digest = hashlib.blake2b(f"{pattern}\0{under}".encode(), digest_size=5).hexdigest()
    return f"{_UNSAFE_NAME.sub('_', source)}-{digest}"


def plan_tasks(sources: list[SourceConfig], storage: StorageConfig) -> list[ReadTask]:
    """One task per input file, in a stable order. Paths that match nothing are errors."""
    tasks: list[ReadTask] = []
    for source in sources:
        seen: set[str] = set()
        for pattern in source.paths:
            fs, path = open_fs(pattern, storage)
            try:
                files, expanded = _expand(fs, path)
            except OSError as e:
                raise ConfigError(f"sources.{source.name}: cannot list {pattern!r}: {e}") from None
            if expanded:  # in directories and globs, skip what is clearly not an input
                files = [f for f in files if not _is_hidden(f)]
                if source.format == "auto":
                    files = [f for f in files if infer_format(f)]
            if not files:
                raise ConfigError(f"sources.{source.name}: path {pattern!r} matches no input file")
            for file in files:
                url = to_url(fs, file)
                fmt = source.format if source.format != "auto" else infer_format(file)
                if fmt is None:
                    known = ", ".join(s for s, _ in FORMAT_SUFFIXES)
                    raise ConfigError(
                        f"sources.{source.name}: cannot infer the format of {url!r} from its "
                        f"name (known: {known}, optionally + .gz/.zst); set `format`")
                if url not in seen:
                    seen.add(url)
                    tasks.append(ReadTask(_task_id(source.name, pattern, path, file), source.name,
                                          url, fmt))
    return tasks


# --------------------------------------------------------------------------- decoding


def excerpt(raw: bytes | str) -> str:
    """A readable prefix of a raw record: undecodable bytes and control chars escaped."""
    if isinstance(raw, bytes):
        raw = raw[:EXCERPT_CHARS].decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", raw[:EXCERPT_CHARS])


def _non_text_reason(text: str) -> str | None:
    """`binary` when a decoded text holds NUL or is mostly replaced/control characters."""
    if "\x00" in text:
        return "binary"
    sample = text[:BINARY_SAMPLE_CHARS]
    non_text = sample.count("\ufffd") + len(_CONTROL.findall(sample))
    return "binary" if sample and non_text > MAX_NON_TEXT * len(sample) else None


def decode(raw: bytes) -> tuple[str, str | None]:
    """(text, reason): UTF-8 with invalid bytes replaced, unless too many are invalid."""
    if b"\x00" in raw:
        return excerpt(raw), "binary"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        if text.count("\ufffd") > MAX_INVALID_UTF8 * len(text):
            return excerpt(raw), _non_text_reason(text) or "invalid_utf8"
    reason = _non_text_reason(text)
    return (excerpt(text), reason) if reason else (text, None)


# --------------------------------------------------------------------------- batching


_PER_TASK = ("id", "source", "path")  # columns derived from the task, not the document


class _BatchBuilder:
    """Collects documents of one task into `DOC_SCHEMA` tables."""

    def __init__(self, task: ReadTask, batch_size: int):
        self.task = task
        self.batch_size = batch_size
        self._reset()

    def _reset(self) -> None:
        self.columns: dict[str, list] = {n: [] for n in DOC_SCHEMA.names if n not in _PER_TASK}
        self.chars = 0

    def add(self, record: int, text: str, *, reason: str | None = None, url: str | None = None,
            timestamp: str | None = None, meta: dict | None = None,
            source_id: str | None = None) -> pa.Table | None:
        """Add one document; returns a full batch when one is ready."""
        values = {"record": record, "text": text, "url": url, "timestamp": timestamp,
                  "meta": _to_json(meta or {}), "source_id": source_id, "reason": reason}
        for name, value in values.items():
            self.columns[name].append(value)
        self.chars += len(text)
        full = len(self.columns["record"]) >= self.batch_size or self.chars >= MAX_BATCH_CHARS
        return self.flush() if full else None

    def flush(self) -> pa.Table | None:
        n = len(self.columns["record"])
        if not n:
            return None
        task = self.task
        table = pa.Table.from_pydict(
            {
                "id": [f"{task.task_id}-{r:07d}" for r in self.columns["record"]],
                "source": [task.source] * n,
                "path": [task.path] * n,
                **self.columns,
            },
            schema=DOC_SCHEMA,
        )
        self._reset()
        return table


def _to_json(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


# --------------------------------------------------------------------------- formats


class _ZstdReader(io.RawIOBase):
    """A .zst stream (one or more frames). zstandard's own stream_reader ends quietly on a
    truncated file; this raises EOFError instead, so that a cut file is never short-read."""

    def __init__(self, f: IO[bytes]):
        self._f = f
        self._dctx = zstandard.ZstdDecompressor()
        self._frame = self._dctx.decompressobj()
        self._pending = b""
        self._offset = 0  # of the first unread byte in _pending

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._offset == len(self._pending):
            data = self._f.read(1 << 20)
            if not data:
                if not self._frame.eof:
                    raise EOFError("zstd data ends in the middle of a frame (truncated file?)")
                return 0
            parts = []
            while data:
                if self._frame.eof:
                    self._frame = self._dctx.decompressobj()
                parts.append(self._frame.decompress(data))
                data = self._frame.unused_data if self._frame.eof else b""
            self._pending, self._offset = b"".join(parts), 0
        n = min(len(buffer), len(self._pending) - self._offset)
        buffer[:n] = memoryview(self._pending)[self._offset:self._offset + n]
        self._offset += n
        return n


def _open_decompressed(f: IO[bytes], path: str) -> IO[bytes]:
    path = path.lower()
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=f)
    if path.endswith(".zst"):
        return io.BufferedReader(_ZstdReader(f), buffer_size=1 << 20)
    return f


def _pop_string(obj: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = obj.get(name)
        if isinstance(value, str):
            del obj[name]
            return value
    return None


def _record_doc(obj: dict, source: SourceConfig) -> dict:
    """Keyword arguments for `_BatchBuilder.add` from one JSON object / Parquet row."""
    text = obj.get(source.text_field)
    reason = None
    if isinstance(text, bytes):
        text, reason = decode(text)
    elif isinstance(text, str):
        reason = _non_text_reason(text)
        text = excerpt(text) if reason else text
    else:
        return {"text": excerpt(_to_json(obj)), "reason": "missing_text"}
    meta = {k: v for k, v in obj.items() if k != source.text_field}
    source_id = meta.pop(source.id_field, None) if source.id_field else None
    return {
        "text": text,
        "reason": reason,
        "url": _pop_string(meta, URL_FIELDS),
        "timestamp": _pop_string(meta, TIMESTAMP_FIELDS),
        "source_id": None if source_id is None else str(source_id),
        "meta": meta,
    }


def _jsonl_docs(f: IO[bytes], source: SourceConfig) -> Iterator[tuple[int, dict]]:
    for line_no, line in enumerate(f):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue  # blank lines are layout, not records
        text, reason = decode(line)
        if reason:
            yield line_no, {"text": text, "reason": reason}
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            yield line_no, _record_doc(obj, source)
        else:
            yield line_no, {"text": excerpt(line), "reason": "malformed_json"}


def _parquet_docs(f: IO[bytes], source: SourceConfig, batch_size: int) -> Iterator[tuple[int, dict]]:
    record = 0
    for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield record, _record_doc(row, source)
            record += 1


def _text_blocks(f: IO[bytes], split: str) -> Iterator[bytes]:
    if split == "file":
        yield f.read()
        return
    block: list[bytes] = []
    for line in f:
        if split == "line":
            yield line.rstrip(b"\r\n")
        elif line.strip():
            block.append(line)
        elif block:
            yield b"".join(block).rstrip(b"\r\n")
            block = []
    if block:
        yield b"".join(block).rstrip(b"\r\n")


def _text_docs(f: IO[bytes], source: SourceConfig) -> Iterator[tuple[int, dict]]:
    for record, raw in enumerate(_text_blocks(f, source.text_split)):
        if source.text_split == "line" and not raw.strip():
            continue
        text, reason = decode(raw)
        yield record, {"text": text, "reason": reason}


def _warc_header(record, name: str) -> str | None:
    value = record.headers.get(name)
    return value.strip("<>") if value else None  # some writers wrap URIs in <...>


def _warc_docs(f: IO[bytes], fmt: str) -> Iterator[tuple[int, dict]]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    wanted = WarcRecordType.conversion if fmt == "wet" else WarcRecordType.response
    records = ArchiveIterator(f, record_types=wanted, parse_http=fmt == "warc")
    for index, rec in enumerate(records):
        doc: dict[str, Any] = {
            "url": _warc_header(rec, "WARC-Target-URI"),
            "timestamp": _warc_header(rec, "WARC-Date"),
            "source_id": _warc_header(rec, "WARC-Record-ID"),
        }
        body = rec.reader.read()
        if fmt == "wet":
            doc["text"], doc["reason"] = decode(body)
            doc["meta"] = {"refers_to": _warc_header(rec, "WARC-Refers-To")}
            yield index, doc
            continue
        http = rec.http_headers
        content_type = (http.get("Content-Type") or "") if http else ""
        status = http.status_code if http else None
        doc["meta"] = {"http_status": status, "content_type": content_type}
        if status != 200:
            doc["text"], doc["reason"] = excerpt(body), "warc_http_status"
        elif "html" not in content_type.lower():
            doc["text"], doc["reason"] = excerpt(body), "warc_not_html"
        else:
            html = bytes_to_str(body, rec.http_charset or detect_encoding(body))
            doc["text"] = extract_plain_text(html, main_content=True)
        yield index, doc


def _documents(f: IO[bytes], task: ReadTask, source: SourceConfig,
               batch_size: int) -> Iterator[tuple[int, dict]]:
    if task.format == "parquet":
        return _parquet_docs(f, source, batch_size)
    # Decompress here rather than in fastwarc: Python's gzip reports a truncated file,
    # where fastwarc would stop quietly after the last complete record.
    stream = _open_decompressed(f, task.path)
    if task.format in ("warc", "wet"):
        return _warc_docs(stream, task.format)
    return _jsonl_docs(stream, source) if task.format == "jsonl" else _text_docs(stream, source)


def read_documents(task: ReadTask, source: SourceConfig, storage: StorageConfig,
                   batch_size: int) -> Iterator[pa.Table]:
    """Stream one input file as `DOC_SCHEMA` tables of at most `batch_size` rows."""
    builder = _BatchBuilder(task, batch_size)
    fs, path = open_fs(task.path, storage)
    try:
        with fs.open(path, "rb") as f:
            for record, doc in _documents(f, task, source, batch_size):
                table = builder.add(record, **doc)
                if table is not None:
                    yield table
    except _UNREADABLE as e:
        cause = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise ReadError(f"cannot read {task.path} ({task.format}): {cause}") from e
    table = builder.flush()
    if table is not None:
        yield table
