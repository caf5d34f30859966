"""The map phase end to end on real data plus every kind of bad input."""

import gzip
import json
from pathlib import Path

import pyarrow.dataset as pds
import pytest

from curation.config import parse_config
from curation.run import RunError, main, run


@pytest.fixture()
def inputs(tmp_path, shared_data):
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = [json.dumps({"text": "A perfectly fine line of text about the weather today.", "url": "u1"}),
             "{not json", json.dumps({"body": "no text field here"}), json.dumps({"text": "   "}),
             json.dumps(["a", "list"])]
    (bad / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    (bad / "garbage.jsonl").write_bytes(bytes(range(256)) * 40)
    records = "".join(json.dumps({"text": f"record number {i}"}) + "\n" for i in range(5000))
    compressed = gzip.compress(records.encode())
    (bad / "corrupt.jsonl.gz").write_bytes(compressed[: len(compressed) // 2])  # truncated
    huge = tmp_path / "huge"
    huge.mkdir()
    (huge / "big.txt").write_text("word " * 10_000_000)  # a 50 MB single document
    return {"bad": bad, "huge": huge, "data": shared_data}


def make_config(tmp_path, inputs, **sections):
    data = inputs["data"]
    config = {
        "run": {"output": str(tmp_path / "out"), "docs_per_batch": 500},
        "sources": [
            {"name": "c4", "paths": [str(data / "webcrawl/c4_en_first1000docs.jsonl")]},
            {"name": "stories", "paths": [str(data / "tinystories/tinystories_v1_valid_head.txt")],
             "format": "text", "text_split": "blank_line"},
            {"name": "udhr", "paths": [str(data / "multilingual/udhr/deu.txt"),
                                       str(data / "multilingual/udhr/jpn.txt")], "format": "text"},
            {"name": "bad", "paths": [str(inputs["bad"])]},
            {"name": "huge", "paths": [str(inputs["huge"])], "format": "text"},
        ],
        "langid": {"keep": ["en", "de"]},
        "perplexity": {"enabled": False},
        "dedup": {"enabled": False},
        "shards": {"enabled": False},
    }
    config.update(sections)
    return parse_config(config)


def read(path):
    return pds.dataset(path, format="parquet", partitioning="hive").to_table()


def test_every_document_is_accounted_for(tmp_path, inputs, ray_local):
    config = make_config(tmp_path, inputs)
    stats = run(config)  # run() raises if input != kept + drops, for docs and chars
    out = tmp_path / "out"
    curated, rejected = read(out / "curated"), read(out / "rejected")
    assert stats["input"]["docs"] == curated.num_rows + rejected.num_rows
    assert stats["kept"]["docs"] == curated.num_rows
    langs = set(curated.column("lang").to_pylist())
    assert langs == {"en", "de"}
    reasons = set(rejected.column("reason").to_pylist())
    assert {"malformed_json", "missing_text", "empty", "too_long", "lang_not_kept", "binary"} <= reasons
    assert any(r.startswith("quality:") for r in reasons)
    by_reason = {r: v["docs"] for r, v in stats["rejected"].items()}
    assert by_reason["too_long"] == 1 and by_reason["lang_not_kept"] >= 1  # the 50 MB doc; jpn
    assert [f["path"] for f in stats["failed_files"]] == [str(inputs["bad"] / "corrupt.jsonl.gz")]
    assert "corrupt.jsonl.gz" in stats["failed_files"][0]["error"]
    assert stats["tasks"] == {"total": 8, "done": 7, "failed": 1}
    ids = curated.column("id").to_pylist() + rejected.column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert json.loads((out / "stats.json").read_text())["input"] == stats["input"]
    documented = (Path(__file__).parents[1] / "docs" / "schema.md").read_text()
    undocumented = {c for c in curated.column_names + rejected.column_names if f"`{c}`" not in documented}
    assert not undocumented, f"columns missing from docs/schema.md: {sorted(undocumented)}"


def test_resume_refuse_and_changed_config(tmp_path, inputs, ray_local, capsys):
    (inputs["bad"] / "corrupt.jsonl.gz").unlink()
    config = make_config(tmp_path, inputs)
    first = run(config)
    markers = sorted((tmp_path / "out" / "_tasks").iterdir())
    stamps = [m.stat().st_mtime_ns for m in markers]
    # an interrupted task left a part file behind: resuming must delete it, not mix it in
    stale = tmp_path / "out" / "curated" / "lang=en" / "ghost-0123456789-0000.parquet"
    stale.write_bytes(b"partial")
    again = run(config)
    assert not stale.exists()
    assert [m.stat().st_mtime_ns for m in markers] == stamps  # nothing re-processed
    assert again["kept"] == first["kept"] and again["input"] == first["input"]

    changed = make_config(tmp_path, inputs, langid={"keep": ["en"]})
    with pytest.raises(RunError, match="different config"):
        run(changed)
    refuse = make_config(tmp_path, inputs, run={"output": str(tmp_path / "out"), "on_existing": "refuse"})
    with pytest.raises(RunError, match="already holds a run"):
        run(refuse)


def test_unreadable_file_exits_nonzero_after_processing_the_rest(tmp_path, inputs, ray_local, capsys):
    config_path = tmp_path / "c.yaml"
    config_path.write_text(json.dumps(make_config(tmp_path, inputs).model_dump(mode="json")))
    assert main([str(config_path)]) == 1
    captured = capsys.readouterr()
    assert "1 input file(s) could not be processed" in captured.err
    assert "corrupt.jsonl.gz" in captured.err
    assert (tmp_path / "out" / "report.html").exists()
    assert "report:" in captured.out
