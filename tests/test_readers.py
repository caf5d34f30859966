"""Readers on real files from ../shared/data and on hand-made bad files."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from curation.config import ConfigError, SourceConfig, StorageConfig
from curation.readers import DOC_SCHEMA, ReadError, ReadTask, plan_tasks, read_documents

STORAGE = StorageConfig()


def read_source(source: SourceConfig, batch_size: int = 256) -> pa.Table:
    tables = [t for task in plan_tasks([source], STORAGE)
              for t in read_documents(task, source, STORAGE, batch_size)]
    for table in tables:
        assert table.schema == DOC_SCHEMA
        assert len(table) <= batch_size
    return pa.concat_tables(tables) if tables else DOC_SCHEMA.empty_table()


def read_paths(*paths: Path | str, **options) -> pa.Table:
    return read_source(SourceConfig(name="src", paths=[str(p) for p in paths], **options))


def reasons(table: pa.Table) -> list[str | None]:
    return table.column("reason").to_pylist()


@pytest.fixture(scope="module")
def c4(shared_data: Path) -> Path:
    return shared_data / "webcrawl" / "c4_en_first1000docs.jsonl"


# --------------------------------------------------------------------------- formats


def test_jsonl_keeps_text_and_metadata(c4: Path):
    originals = [json.loads(line) for line in c4.read_text().splitlines()]
    table = read_paths(c4)
    assert table.column("text").to_pylist() == [o["text"] for o in originals]
    assert table.column("url").to_pylist() == [o["url"] for o in originals]
    assert table.column("timestamp").to_pylist() == [o["timestamp"] for o in originals]
    assert set(table.column("meta").to_pylist()) == {"{}"}
    assert table.column("record").to_pylist() == list(range(len(originals)))
    assert set(table.column("source").to_pylist()) == {"src"}
    assert reasons(table) == [None] * len(originals)


def test_unknown_fields_go_to_meta_and_id_field_to_source_id(shared_data: Path):
    path = shared_data / "webcrawl" / "dolma_cc_en_head-0091.jsonl"
    originals = [json.loads(line) for line in path.read_text().splitlines()]
    table = read_paths(path, id_field="id")
    assert table.column("source_id").to_pylist() == [o["id"] for o in originals]
    metas = [json.loads(m) for m in table.column("meta").to_pylist()]
    assert [m["metadata"] for m in metas] == [o["metadata"] for o in originals]
    assert all("text" not in m and "id" not in m for m in metas)


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_jsonl_reads_like_plain(c4: Path, tmp_path: Path, suffix: str):
    raw = c4.read_bytes()
    if suffix == ".gz":
        packed = gzip.compress(raw)
    else:  # two frames, as written by parallel or appending compressors
        half = len(raw) // 2
        packed = b"".join(zstandard.ZstdCompressor().compress(p) for p in (raw[:half], raw[half:]))
    path = tmp_path / f"c4.jsonl{suffix}"
    path.write_bytes(packed)
    plain, compressed = read_paths(c4), read_paths(path)
    for column in ("text", "url", "timestamp", "record"):
        assert compressed.column(column).equals(plain.column(column))


def test_parquet_by_row_groups(shared_data: Path, tmp_path: Path):
    originals = [json.loads(line) for line in
                 (shared_data / "webcrawl" / "c4_en_first1000docs.jsonl").read_text().splitlines()]
    path = tmp_path / "c4.parquet"
    pq.write_table(pa.Table.from_pylist(originals), path, row_group_size=100)
    table = read_source(SourceConfig(name="src", paths=[str(path)]), batch_size=64)
    assert table.column("text").to_pylist() == [o["text"] for o in originals]
    assert table.column("url").to_pylist() == [o["url"] for o in originals]
    assert table.column("record").to_pylist() == list(range(len(originals)))


def test_text_splits(shared_data: Path):
    path = shared_data / "tinystories" / "tinystories_v1_valid_head.txt"
    content = path.read_text()
    whole = read_paths(path)
    assert whole.column("text").to_pylist() == [content]
    blocks = [b.strip("\n") for b in re.split(r"\n[ \t]*\n", content) if b.strip()]
    assert read_paths(path, text_split="blank_line").column("text").to_pylist() == blocks
    lines = [line for line in content.split("\n") if line.strip()]
    assert read_paths(path, text_split="line").column("text").to_pylist() == lines


def test_warc_html_responses_to_main_text(shared_data: Path):
    table = read_paths(shared_data / "webcrawl" / "dolma_sample-0000.warc.gz")
    assert len(table) == 22  # the file's HTTP 200 HTML responses (requests etc. are not documents)
    assert reasons(table) == [None] * 22
    assert all(u.startswith("http") and not u.startswith("<") for u in table.column("url").to_pylist())
    assert all(t.startswith("2024-04-25T") for t in table.column("timestamp").to_pylist())
    assert all(s.startswith("urn:uuid:") for s in table.column("source_id").to_pylist())
    texts = table.column("text").to_pylist()
    assert "Semantic Scholar Research Team" in texts[0]
    assert not any("<div" in t or "<script" in t for t in texts)
    assert sum(map(len, texts)) > 10_000


def warc_record(warc_type: str, uri: str, block: bytes, extra: str = "") -> bytes:
    headers = (f"WARC/1.0\r\nWARC-Type: {warc_type}\r\nWARC-Target-URI: {uri}\r\n"
               f"WARC-Date: 2024-01-02T03:04:05Z\r\nWARC-Record-ID: <urn:uuid:{abs(hash(uri))}>\r\n"
               f"{extra}Content-Length: {len(block)}\r\n\r\n")
    return gzip.compress(headers.encode() + block + b"\r\n\r\n")  # one gzip member per record


def http_response(status: str, content_type: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_warc_non_html_and_errors_are_counted(tmp_path: Path):
    path = tmp_path / "mixed.warc.gz"
    http = "Content-Type: application/http; msgtype=response\r\n"
    path.write_bytes(
        warc_record("response", "http://a.example/", http_response(
            "200 OK", "text/html", b"<html><body><p>Hello from the page.</p></body></html>"), http)
        + warc_record("response", "http://b.example/x.png", http_response(
            "200 OK", "image/png", b"\x89PNG..."), http)
        + warc_record("response", "http://c.example/gone", http_response(
            "404 Not Found", "text/html", b"<html>missing</html>"), http))
    table = read_paths(path)
    assert reasons(table) == [None, "warc_not_html", "warc_http_status"]
    assert "Hello from the page." in table.column("text")[0].as_py()
    assert table.column("url").to_pylist() == [
        "http://a.example/", "http://b.example/x.png", "http://c.example/gone"]


def test_wet_conversion_records(tmp_path: Path):
    path = tmp_path / "sample.warc.wet.gz"
    texts = ["First page text.\nSecond line.", "Zweite Seite, etwas Text."]
    path.write_bytes(
        warc_record("warcinfo", "", b"software: hand-made\r\n")
        + b"".join(warc_record("conversion", f"http://{i}.example/", t.encode(),
                               "Content-Type: text/plain\r\n") for i, t in enumerate(texts)))
    table = read_paths(path)
    assert table.column("text").to_pylist() == texts
    assert table.column("url").to_pylist() == ["http://0.example/", "http://1.example/"]
    assert table.column("timestamp").to_pylist() == ["2024-01-02T03:04:05Z"] * 2


# --------------------------------------------------------------------------- planning


def test_directories_globs_and_hidden_files(tmp_path: Path, monkeypatch):
    line = b'{"text": "a document"}\n'
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "a.jsonl").write_bytes(line)
    (tmp_path / "sub" / "b.jsonl.gz").write_bytes(gzip.compress(line))
    (tmp_path / "sub" / "deeper" / "c.txt").write_bytes(b"plain text")
    for skipped in ("_SUCCESS", ".a.jsonl.tmp", "notes.csv"):
        (tmp_path / "sub" / skipped).write_bytes(b"x")

    def plan(*paths: str, **options) -> list[ReadTask]:
        return plan_tasks([SourceConfig(name="s", paths=list(paths), **options)], STORAGE)

    tasks = plan(str(tmp_path))
    assert [(Path(t.path).name, t.format) for t in tasks] == [
        ("a.jsonl", "jsonl"), ("b.jsonl.gz", "jsonl"), ("c.txt", "text")]
    assert [Path(t.path).name for t in plan(f"{tmp_path}/*/*.gz")] == ["b.jsonl.gz"]
    assert [Path(t.path).name for t in plan(f"{tmp_path}/**/*.txt")] == ["c.txt"]
    assert len(plan(str(tmp_path), f"{tmp_path}/a.jsonl")) == 3  # listed twice, read once
    assert [t.format for t in plan(str(tmp_path / "sub" / "notes.csv"), format="text")] == ["text"]

    # A copy of the same inputs elsewhere, named by the same relative patterns, gets the
    # same task (hence document) ids: ids do not depend on where the checkout lives.
    copy = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "sub", copy / "sub")
    (copy / "a.jsonl").write_bytes(line)
    patterns = ("a.jsonl", "sub", "sub/*/*.txt")
    ids = {}
    for root in (tmp_path, copy):
        monkeypatch.chdir(root)
        ids[root] = [t.task_id for t in plan(*patterns)]
    assert ids[tmp_path] == ids[copy] and len(set(ids[copy])) == 3

    with pytest.raises(ConfigError, match=r"sources\.s: path .*nothing\*\.jsonl.* matches no"):
        plan(f"{tmp_path}/nothing*.jsonl")
    with pytest.raises(ConfigError, match=r"sources\.s: path .*missing.jsonl.* matches no"):
        plan(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match=r"cannot infer the format of .*notes\.csv"):
        plan(str(tmp_path / "sub" / "notes.csv"))


def test_ids_are_stable_and_unique(c4: Path, shared_data: Path):
    paths = [c4, shared_data / "webcrawl" / "dolma_sample-0000.warc.gz"]
    first, second = read_paths(*paths), read_paths(*paths)
    ids = first.column("id").to_pylist()
    assert ids == second.column("id").to_pylist()
    assert len(set(ids)) == len(ids)
    other = read_source(SourceConfig(name="other", paths=[str(c4)]))
    assert not set(other.column("id").to_pylist()) & set(ids)  # same file, other source
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", i) for i in ids)


# --------------------------------------------------------------------------- bad input


def test_bad_jsonl_records_are_kept_with_a_reason(tmp_path: Path):
    good = "words " * 100
    lines = [
        json.dumps({"text": "fine"}).encode(),
        b'{"text": "unterminated',
        b"[1, 2, 3]",
        json.dumps({"body": "no text field"}).encode(),
        json.dumps({"text": 42}).encode(),
        json.dumps({"text": ""}).encode(),
        json.dumps({"text": "nul \u0000 inside"}).encode(),
        b'{"text": "' + good.encode() + b'\xff"}',  # one bad byte in 600: repaired
        b'{"text": "' + b"\xff\xfe" * 20 + b' mostly broken text here"}',
        b"",  # blank line: layout, not a record
        json.dumps({"text": "last"}).encode(),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines))
    table = read_paths(path)
    assert reasons(table) == [None, "malformed_json", "malformed_json", "missing_text",
                              "missing_text", None, "binary", None, "binary", None]
    texts = table.column("text").to_pylist()
    assert texts[1] == '{"text": "unterminated'  # a readable excerpt of what was wrong
    assert "no text field" in texts[3]
    assert texts[5] == ""
    assert "\x00" not in texts[6] and "\\x00" in texts[6]
    assert texts[7] == good + "\ufffd"
    assert table.column("record").to_pylist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]


def test_invalid_utf8_beyond_one_percent_is_rejected(tmp_path: Path):
    text = ("Stra" + "\xdf" + "e und Gr" + "\xfc" + "n ") * 50
    path = tmp_path / "latin1.txt"
    path.write_bytes(text.encode("latin-1"))  # not UTF-8: about 8% of characters invalid
    table = read_paths(path)
    assert reasons(table) == ["invalid_utf8"]
    assert "Stra\\xdfe" in table.column("text")[0].as_py()


def test_binary_garbage_files(tmp_path: Path):
    import random

    garbage = random.Random(0).randbytes(200_000)
    (tmp_path / "garbage.txt").write_bytes(garbage)
    (tmp_path / "garbage.jsonl").write_bytes(garbage)
    as_text = read_paths(tmp_path / "garbage.txt")
    assert reasons(as_text) == ["binary"]
    assert len(as_text.column("text")[0].as_py()) <= 4 * 1000  # an escaped excerpt only
    as_jsonl = read_paths(tmp_path / "garbage.jsonl")
    records = [line for line in garbage.split(b"\n") if line.strip()]
    assert len(as_jsonl) == len(records)  # every line accounted for
    assert set(reasons(as_jsonl)) <= {"binary", "invalid_utf8", "malformed_json"}
    assert reasons(as_jsonl).count("binary") > 0.9 * len(records)


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_fifty_megabyte_document(tmp_path: Path, fmt: str):
    text = ("All work and no play makes Jack a dull boy. " * 1_200_000)[:50_000_000]
    path = tmp_path / ("big.txt" if fmt == "text" else "big.jsonl")
    path.write_bytes(text.encode() if fmt == "text" else json.dumps({"text": text}).encode())
    table = read_paths(path)
    assert len(table) == 1 and reasons(table) == [None]
    assert table.column("text")[0].as_py() == text


def read_task(path: Path, fmt: str) -> list[pa.Table]:
    task = ReadTask("t-0", "s", str(path), fmt)
    return list(read_documents(task, SourceConfig(name="s", paths=[str(path)]), STORAGE, 100))


def test_unreadable_files_raise_read_error_naming_the_file(c4: Path, tmp_path: Path):
    with pytest.raises(ReadError, match=r"gone\.jsonl"):
        read_task(tmp_path / "gone.jsonl", "jsonl")
    (tmp_path / "a_dir.jsonl").mkdir()
    with pytest.raises(ReadError, match=r"a_dir\.jsonl"):
        read_task(tmp_path / "a_dir.jsonl", "jsonl")

    packed = gzip.compress(c4.read_bytes())
    cases = {
        "truncated.jsonl.gz": ("jsonl", packed[: len(packed) // 2]),
        "corrupt.jsonl.gz": ("jsonl", packed[:1000] + b"\x00" * 5000 + packed[6000:]),
        "notgzip.jsonl.gz": ("jsonl", b"plain text, not gzip"),
        "corrupt.jsonl.zst": ("jsonl", zstandard.ZstdCompressor().compress(b"x" * 1000)[:-4] + b"junk"),
        "truncated.jsonl.zst": ("jsonl", zstandard.ZstdCompressor().compress(c4.read_bytes())[:20_000]),
        "corrupt.parquet": ("parquet", b"PAR1 this is not parquet PAR1"),
        "corrupt.warc": ("warc", b"GET / HTTP/1.1\r\n\r\n"),
    }
    for name, (fmt, blob) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ReadError, match=re.escape(name)):
            read_task(tmp_path / name, fmt)


def test_truncated_warc_is_an_error_not_a_short_file(shared_data: Path, tmp_path: Path):
    data = (shared_data / "webcrawl" / "dolma_sample-0000.warc.gz").read_bytes()
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReadError, match=r"cut\.warc\.gz"):
        read_task(path, "warc")
