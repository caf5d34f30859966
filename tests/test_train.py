"""Trainer tests: 2 Ray workers (gloo) on CPU, a tiny model, TinyStories token shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.config import TrainConfig
from training.data import RankRows, rank_dataset, read_manifest, segments

SEQ_LEN = 64


def write_split(root: Path, split: str, rows: np.ndarray, per_shard: int) -> dict:
    shards = []
    for i, start in enumerate(range(0, len(rows), per_shard)):
        chunk = rows[start:start + per_shard]
        path = f"{split}/shard-{i:05d}.parquet"
        (root / split).mkdir(parents=True, exist_ok=True)
        column = pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel(), pa.int32()), SEQ_LEN + 1)
        pq.write_table(pa.table({"input_ids": column}), root / path)
        shards.append({"path": path, "rows": len(chunk), "tokens": chunk.size})
    return {"rows": len(rows), "tokens": int(rows.size), "shards": shards}


@pytest.fixture(scope="session")
def shards(shared_data, tmp_path_factory) -> Path:
    """Token shards in the format of docs/token-shards.md, from real TinyStories text and a
    512-token BPE trained here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    root = tmp_path_factory.mktemp("shards")
    text = (shared_data / "tinystories" / "tinystories_v1_train_head_cased.txt").read_text()
    stories = [s for s in text.split("\n\n") if s.strip()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(stories, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<pad>", "<bos>", "<eos>", "<mask>"]))
    tok.save(str(root / "tokenizer.json"))
    ids = np.concatenate([np.array(e.ids + [2]) for e in tok.encode_batch(stories)])
    rows = ids[: len(ids) // (SEQ_LEN + 1) * (SEQ_LEN + 1)].reshape(-1, SEQ_LEN + 1)
    rows = rows[np.random.default_rng(0).permutation(len(rows))]
    val, train = rows[:64], rows[64:]
    manifest = {
        "format": "rawtext-token-shards", "format_version": 1, "seq_len": SEQ_LEN,
        "segment_ids": False, "order": "shuffled", "seed": 0,
        "tokenizer": {"path": "tokenizer.json", "vocab_size": 512, "bos_id": 1, "eos_id": 2,
                      "pad_id": 0, "mask_id": 3, "add_bos": False},
        "splits": {"train": write_split(root, "train", train, 1000),
                   "validation": write_split(root, "validation", val, 64)},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root / "manifest.json"


def tiny_config(shards: Path, storage: Path, **sections) -> TrainConfig:
    data = {
        "model": {"preset": None, "overrides": {"dim": 32, "n_layers": 2, "n_heads": 2}},
        "data": {"manifest": str(shards), "batch_size": 4, "prefetch_batches": 2},
        # Constant after warmup, so a run stopped early (smaller max_steps) took the very
        # steps of a longer one.
        "optim": {"lr": 3e-3, "warmup_steps": 2, "max_steps": 20, "schedule": "wsd"},
        "precision": "fp32",
        "checkpoint": {"storage_path": str(storage), "name": "run", "every": 10, "keep": 2},
        "eval": {"every": 10, "max_batches": 2},
        "scaling": {"num_workers": 2},
        "failure": {"max_failures": 0},
        "metrics": {"log_every": 1, "tensorboard": False},
    }
    for key, value in sections.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return TrainConfig.model_validate(data)


def metrics(storage: Path) -> list[dict]:
    lines = (storage / "run" / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def losses_by_step(storage: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in metrics(storage) if "loss" in r}


def rows_of(dataset) -> dict[str, np.ndarray]:
    batches = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    return {c: np.concatenate([b[c] for b in batches]) for c in batches[0]}


def test_segments_cover_the_global_order(shards):
    split = read_manifest(str(shards)).splits["train"]
    total = split.total_rows
    start, stop = total - 1500, total + 700  # across a shard end and the epoch end
    covered = []
    for seg in segments(split, start, stop, max_rows=300):
        assert 0 < seg["end"] - seg["begin"] <= 300
        shard = split.paths.index(seg["path"])
        first = sum(split.rows[:shard])
        assert seg["position"] % total == first + seg["begin"]
        covered.extend(range(seg["position"], seg["position"] + seg["end"] - seg["begin"]))
    assert covered == list(range(start, stop))


def test_rank_datasets_split_global_batches_exactly(shards, ray_local):
    import ray.data

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    manifest = read_manifest(str(shards))
    total = manifest.splits["train"].total_rows
    whole = rows_of(rank_dataset(manifest, "train", RankRows(0, 8, 0, 1), 48))
    assert np.array_equal(whole["position"], np.arange(48))
    # Two workers of 4 rows each split the same global batches, in order.
    halves = [rows_of(rank_dataset(manifest, "train", RankRows(0, 4, r, 2), 48)) for r in (0, 1)]
    for g in range(6):
        joined = np.concatenate([halves[0]["input_ids"][4 * g:4 * g + 4],
                                 halves[1]["input_ids"][4 * g:4 * g + 4]])
        assert np.array_equal(joined, whole["input_ids"][8 * g:8 * g + 8])
    # Starting at a position inside the last shard continues exactly, across the epoch end.
    start = total - 3
    resumed = rows_of(rank_dataset(manifest, "train", RankRows(start, 8, 0, 1), start + 8))
    tail = np.array(pq.read_table(manifest.splits["train"].paths[-1]).column("input_ids")
                    .to_pylist()[-3:])
    assert np.array_equal(resumed["input_ids"][:3], tail)
    assert np.array_equal(resumed["input_ids"][3:], whole["input_ids"][:5])
    assert np.array_equal(resumed["position"], np.arange(start, start + 8))


def test_zero2_trains_and_resumes_exactly(shards, ray_local, tmp_path):
    from training.trainer import fit

    straight = tmp_path / "straight"
    fit(tiny_config(shards, straight, zero__stage=2))
    full = losses_by_step(straight)
    assert max(full) == 20
    assert np.mean([full[s] for s in (18, 19, 20)]) < np.mean([full[s] for s in (1, 2, 3)]) - 0.3

    # Interrupted at step 10 (max_steps=10 ends the run there), then rerun to 20: resumes.
    resumed = tmp_path / "resumed"
    fit(tiny_config(shards, resumed, zero__stage=2, optim__max_steps=10))
    assert max(losses_by_step(resumed)) == 10
    fit(tiny_config(shards, resumed, zero__stage=2))
    again = losses_by_step(resumed)
    assert sorted(again) == list(range(1, 21))
    assert np.allclose([again[s] for s in range(1, 21)], [full[s] for s in range(1, 21)],
                       rtol=1e-5, atol=1e-6)


def test_killed_worker_recovers_from_last_checkpoint(shards, ray_local, tmp_path):
    from training.trainer import fit

    fit(tiny_config(shards, tmp_path, zero__stage=3, failure__max_failures=1,
                    failure__crash_at_step=13, optim__max_steps=16))
    assert (tmp_path / "run" / "logs" / "crashed.marker").exists()
    steps = [r["step"] for r in metrics(tmp_path) if "loss" in r]
    # Steps 11-13 ran, the crash came, and the run went on from the step-10 checkpoint.
    assert steps[-1] == 16 and steps.count(11) == 2 and steps.count(16) == 1
