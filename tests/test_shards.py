"""Token shards end to end on real sample data: determinism, round trip through the
tokenizer, split isolation, packing waste, mixture proportions, curriculum order, verify."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from curation import verify
from curation.config import parse_config
from curation.shards import build_shards
from tests.curated_sample import write_curated

SEQ_LEN = 128
SHARE_TOLERANCE = 0.005  # achieved vs target token share, absolute, per source and language


def make_config(**shards):
    return parse_config({
        "sources": [{"name": "tinystories", "paths": ["-"], "weight": 2},
                    {"name": "c4", "paths": ["-"], "weight": 1},
                    {"name": "ud", "paths": ["-"], "weight": 1}],
        "tokenizer": {"vocab_size": 1024, "sample_docs": 1500},
        "mixture": {"temperature": 2.0},
        "shards": {"seq_len": SEQ_LEN, "validation_fraction": 0.05, "target_shard_mb": 0.1,
                   "segment_ids": True, **shards},
    })


@pytest.fixture(scope="module")
def curated(shared_data, tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("curated")
    return root, write_curated(shared_data, root)


@pytest.fixture(scope="module")
def built(curated, ray_local, tmp_path_factory) -> tuple[dict, Path, Path]:
    """The same config and inputs, built twice into two directories."""
    first, second = tmp_path_factory.mktemp("shards1"), tmp_path_factory.mktemp("shards2")
    manifest = build_shards(str(curated[0]), str(first), make_config())
    build_shards(str(curated[0]), str(second), make_config())
    return manifest, first, second


def read_split(root: Path, manifest: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    tables = [pq.read_table(root / s["path"]) for s in manifest["splits"][split]["shards"]]
    ids = np.concatenate([t.column("input_ids").combine_chunks().flatten().to_numpy() for t in tables])
    segments = np.concatenate([t.column("segment_ids").combine_chunks().flatten().to_numpy() for t in tables])
    return ids.reshape(-1, SEQ_LEN + 1), segments.reshape(-1, SEQ_LEN + 1)


def whole_documents(root: Path, manifest: dict, split: str) -> list[str]:
    """Decoded texts of the documents that lie entirely inside one row (between two EOS)."""
    tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
    eos = manifest["tokenizer"]["eos_id"]
    ids, _ = read_split(root, manifest, split)
    texts = []
    for row in ids:
        ends = np.flatnonzero(row == eos)
        texts += [tokenizer.decode(row[a + 1:b].tolist()) for a, b in itertools.pairwise(ends)]
    return texts


def test_same_inputs_give_byte_identical_shards(built):
    _, first, second = built
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".parquet"]) > 2
    for f in files:
        assert (first / f).read_bytes() == (second / f).read_bytes(), f


def test_decoded_rows_reproduce_documents_separated_by_eos(built, curated):
    manifest, root, _ = built
    originals = {d["text"] for d in curated[1]}
    decoded = whole_documents(root, manifest, "train")
    assert decoded and all(text in originals for text in decoded)
    assert len(set(decoded)) > len(originals) / 2

    ids, segments = read_split(root, manifest, "train")
    assert ids.shape[1] == SEQ_LEN + 1 and (segments[:, 0] == 0).all()
    after_eos = np.zeros_like(ids, dtype=bool)  # a new segment starts right after each EOS
    after_eos[:, 1:] = ids[:, :-1] == manifest["tokenizer"]["eos_id"]
    assert (np.diff(segments, axis=1) == after_eos[:, 1:]).all()


def test_train_and_validation_share_no_document(built):
    manifest, root, _ = built
    validation = set(whole_documents(root, manifest, "validation"))
    assert validation
    assert not validation & set(whole_documents(root, manifest, "train"))


def test_packing_waste_and_token_accounting(built):
    manifest, _, _ = built
    for split, info in manifest["splits"].items():
        assert info["waste_fraction"] <= 0.01, split
        assert info["tokens"] == info["rows"] * (SEQ_LEN + 1) == info["input_tokens"] - info["waste_tokens"]
        assert sum(n[split] for n in manifest["tokens_by_source"].values()) == info["tokens"]
        assert sum(n[split] for n in manifest["tokens_by_lang"].values()) == info["tokens"]


def test_mixture_shares_land_near_targets(built):
    mixture = built[0]["mixture"]
    assert mixture["sources"]["tinystories"]["epochs"] > 1 > mixture["sources"]["c4"]["epochs"]
    for axis in ("sources", "languages"):
        for name, row in mixture[axis].items():
            assert abs(row["achieved_share"] - row["target_share"]) <= SHARE_TOLERANCE, (axis, name, row)


@pytest.mark.parametrize("pacing", ["sorted", "linear"])
def test_curriculum_puts_easy_rows_first_with_a_given_tokenizer(built, curated, ray_local, tmp_path, pacing):
    """Difficulty = document length: short documents pack many segments into a row."""
    given = built[1] / "tokenizer.json"
    cfg = make_config(order="curriculum", curriculum_column="q_chars", pacing=pacing,
                      validation_fraction=0.0)
    cfg.tokenizer.path = str(given)
    manifest = build_shards(str(curated[0]), str(tmp_path), cfg)
    assert manifest["tokenizer"]["sha256"] == built[0]["tokenizer"]["sha256"]
    assert manifest["splits"]["validation"]["rows"] == 0
    _, segments = read_split(tmp_path, manifest, "train")
    per_row = segments.max(axis=1) + 1
    tenth = len(per_row) // 10
    assert per_row[:tenth].mean() > 2 * per_row[-tenth:].mean()
    deciles = [per_row[i * tenth:(i + 1) * tenth].mean() for i in range(10)]
    easy_rows_at_the_end = per_row[-tenth:].max() >= np.median(per_row[:tenth])
    if pacing == "sorted":  # strictly easy to hard
        assert all(b <= a + 0.1 for a, b in itertools.pairwise(deciles)), deciles
        assert not easy_rows_at_the_end
    else:  # rows released from the start are spread over the whole epoch
        assert easy_rows_at_the_end


def test_verify_reports_missing_file_wrong_count_and_bad_checksum(built, tmp_path, capsys):
    manifest, root, _ = built
    assert verify.verify(str(root)) == []
    assert verify.main([str(root)]) == 0

    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    shards = manifest["splits"]["train"]["shards"]
    (broken / shards[0]["path"]).unlink()
    data = bytearray((broken / shards[1]["path"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / shards[1]["path"]).write_bytes(bytes(data))
    edited = json.loads((broken / "manifest.json").read_text())
    edited["splits"]["train"]["shards"][2]["rows"] += 1
    (broken / "manifest.json").write_text(json.dumps(edited))

    assert verify.main([str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"{shards[0]['path']}: missing" in out
    assert f"{shards[1]['path']}: bad checksum" in out
    assert f"{shards[2]['path']}: {shards[2]['rows']} rows, manifest says {shards[2]['rows'] + 1}" in out
    assert "split train: rows is" in out  # the edited count no longer adds up either
    assert out.strip().endswith(f"FAILED: 5 problem(s) in {broken}")


def test_shards_written_to_s3_match_the_local_ones(built, curated, ray_local, s3_server):
    from curation.storage import open_fs

    cfg = make_config()
    cfg.storage.endpoint_url = s3_server
    cfg.tokenizer.path = str(built[1] / "tokenizer.json")  # the tokenizer the local build trained
    fs, _ = open_fs("s3://", cfg.storage)
    fs.mkdir("shards-test")
    url = "s3://shards-test/run/shards"
    manifest = build_shards(str(curated[0]), url, cfg)
    assert verify.verify(url, cfg.storage) == []
    local = built[1]
    for shard in manifest["splits"]["train"]["shards"]:
        assert fs.cat_file(f"shards-test/run/shards/{shard['path']}") == (local / shard["path"]).read_bytes()


def test_verify_reports_a_bad_schema_and_a_missing_manifest(built, tmp_path, capsys):
    manifest, root, _ = built
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    shard = manifest["splits"]["train"]["shards"][0]
    table = pq.read_table(broken / shard["path"])
    wide = table.set_column(0, "input_ids", table.column("input_ids").cast(pa.list_(pa.int64(), SEQ_LEN + 1)))
    pq.write_table(wide, broken / shard["path"])
    edited = json.loads((broken / "manifest.json").read_text())
    edited["splits"]["train"]["shards"][0]["sha256"] = hashlib.sha256((broken / shard["path"]).read_bytes()).hexdigest()
    (broken / "manifest.json").write_text(json.dumps(edited))

    assert verify.main([str(broken)]) == 1
    out = capsys.readouterr().out
    problem = next(line for line in out.splitlines() if line.startswith(f"{shard['path']}: bad schema"))
    found, expected = problem.split(", expected ")
    assert f"int64>[{SEQ_LEN + 1}]" in found and "int64" not in expected
    assert "FAILED: 1 problem(s)" in out
    assert verify.verify(str(tmp_path / "nowhere")) == [
        f"{tmp_path / 'nowhere'}: no manifest.json (not a shard directory, or its run did not finish)"]
