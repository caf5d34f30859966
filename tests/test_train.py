"""Trainer tests: 2 Ray workers (gloo) on CPU, a tiny model, TinyStories token shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.checkpoint import latest_checkpoint, latest_state
from training.config import TrainConfig
from training.data import RankRows, rank_dataset, read_manifest, segments

SEQ_LEN = 64


EOS = 2


def segment_ids(rows: np.ndarray) -> np.ndarray:
    """A segment starts at the token after each EOS (docs/token-shards.md)."""
    after_eos = np.concatenate([np.zeros((len(rows), 1), int), (rows[:, :-1] == EOS)], axis=1)
    return np.cumsum(after_eos, axis=1)


def fixed_lists(rows: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel(), pa.int32()), SEQ_LEN + 1)


def write_split(root: Path, split: str, rows: np.ndarray, per_shard: int) -> dict:
    shards = []
    for i, start in enumerate(range(0, len(rows), per_shard)):
        chunk = rows[start:start + per_shard]
        path = f"{split}/shard-{i:05d}.parquet"
        (root / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"input_ids": fixed_lists(chunk),
                                 "segment_ids": fixed_lists(segment_ids(chunk))}), root / path)
        shards.append({"path": path, "rows": len(chunk), "tokens": chunk.size})
    return {"rows": len(rows), "tokens": int(rows.size), "shards": shards}


def write_shards(root: Path, tokenizer: Path, train: np.ndarray, val: np.ndarray) -> Path:
    """Token shards in the format of docs/token-shards.md, with segment ids."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokenizer.json").write_bytes(tokenizer.read_bytes())
    manifest = {
        "format": "rawtext-token-shards", "format_version": 1, "seq_len": SEQ_LEN,
        "segment_ids": True, "order": "shuffled", "seed": 0,
        "tokenizer": {"path": "tokenizer.json", "vocab_size": 512, "bos_id": 1, "eos_id": EOS,
                      "pad_id": 0, "mask_id": 3, "add_bos": False},
        "splits": {"train": write_split(root, "train", train, 1000),
                   "validation": write_split(root, "validation", val, 64)},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root / "manifest.json"


@pytest.fixture(scope="session")
def tinystories_rows(shared_data, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """(tokenizer.json, shuffled rows of seq_len + 1 tokens) from real TinyStories text and
    a 512-token BPE trained here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    root = tmp_path_factory.mktemp("tokenizer")
    text = (shared_data / "tinystories" / "tinystories_v1_train_head_cased.txt").read_text()
    stories = [s for s in text.split("\n\n") if s.strip()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(stories, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<pad>", "<bos>", "<eos>", "<mask>"]))
    tok.save(str(root / "tokenizer.json"))
    ids = np.concatenate([np.array(e.ids + [EOS]) for e in tok.encode_batch(stories)])
    rows = ids[: len(ids) // (SEQ_LEN + 1) * (SEQ_LEN + 1)].reshape(-1, SEQ_LEN + 1)
    return root / "tokenizer.json", rows[np.random.default_rng(0).permutation(len(rows))]


@pytest.fixture(scope="session")
def shards(tinystories_rows, tmp_path_factory) -> Path:
    tokenizer, rows = tinystories_rows
    return write_shards(tmp_path_factory.mktemp("shards"), tokenizer, rows[64:], rows[:64])


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


@pytest.fixture(scope="module")
def zero2_runs(shards, ray_local, tmp_path_factory) -> Path:
    """straight/: ZeRO-2, 2 workers, 20 steps. half/: the same run stopped at step 10
    (max_steps=10 ends it there; constant LR after warmup, so it took the very same steps)."""
    from training.trainer import fit

    root = tmp_path_factory.mktemp("zero2")
    fit(tiny_config(shards, root / "straight", zero__stage=2))
    fit(tiny_config(shards, root / "half", zero__stage=2, optim__max_steps=10))
    return root


def test_zero2_trains_and_resumes_exactly(shards, zero2_runs, tmp_path):
    from training.trainer import fit

    full = losses_by_step(zero2_runs / "straight")
    assert max(full) == 20
    assert np.mean([full[s] for s in (18, 19, 20)]) < np.mean([full[s] for s in (1, 2, 3)]) - 0.3
    assert all(r["val_loss"] < 7 for r in metrics(zero2_runs / "straight") if "val_loss" in r)

    # Rerunning the interrupted run's command resumes it from its step-10 checkpoint.
    resumed = tmp_path / "resumed"
    shutil.copytree(zero2_runs / "half", resumed)
    assert max(losses_by_step(resumed)) == 10
    fit(tiny_config(shards, resumed, zero__stage=2))
    again = losses_by_step(resumed)
    assert sorted(again) == list(range(1, 21))
    assert np.allclose([again[s] for s in range(1, 21)], [full[s] for s in range(1, 21)],
                       rtol=1e-5, atol=1e-6)
    # The run is complete: one more rerun trains nothing.
    fit(tiny_config(shards, resumed, zero__stage=2))
    assert losses_by_step(resumed) == again

    # The final checkpoint exports with its own tokenizer and special tokens.
    from training.export import export

    hf = export(latest_checkpoint(str(resumed / "run")).path, tmp_path / "hf")
    tokenizer_config = json.loads((hf / "tokenizer_config.json").read_text())
    assert (tokenizer_config["eos_token"], tokenizer_config["mask_token"]) == ("<eos>", "<mask>")


def test_resume_on_one_worker_from_a_two_worker_checkpoint(shards, zero2_runs, tmp_path):
    from training.trainer import fit

    # 2 workers x 4 rows to step 10, then 1 worker x 8 rows (the same global batch) from
    # the universal form of that checkpoint.
    resumed = tmp_path / "resumed"
    shutil.copytree(zero2_runs / "half", resumed)
    fit(tiny_config(shards, resumed, zero__stage=2, optim__max_steps=14,
                    scaling__num_workers=1, data__batch_size=8))
    again, full = losses_by_step(resumed), losses_by_step(zero2_runs / "straight")
    assert sorted(again) == list(range(1, 15))
    # Same rows, same weights and optimizer state: only the reduction order differs.
    assert np.allclose([again[s] for s in range(11, 15)], [full[s] for s in range(11, 15)],
                       rtol=1e-4)
    final = latest_state(str(resumed / "run"))
    assert (final.step, final.world_size, final.consumed) == (14, 1, 14 * 8)


def test_zero3_trains_and_a_killed_worker_recovers(shards, ray_local, tmp_path):
    from training.trainer import fit

    fit(tiny_config(shards, tmp_path, zero__stage=3, failure__max_failures=1,
                    failure__crash_at_step=13, optim__max_steps=16))
    assert (tmp_path / "run" / "logs" / "crashed.marker").exists()
    records = [r for r in metrics(tmp_path) if "loss" in r]
    steps = [r["step"] for r in records]
    # Steps 11-13 ran, the crash came, and the run went on from the step-10 checkpoint.
    assert steps[-1] == 16 and steps.count(11) == 2 and steps.count(16) == 1
    losses = [r["loss"] for r in records]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3


@pytest.mark.parametrize("objective", ["prefix_lm", "masked_lm"])
def test_each_objective_trains(shards, ray_local, tmp_path, objective):
    from training.trainer import fit

    fit(tiny_config(shards, tmp_path, objective={"name": objective}, optim__max_steps=24,
                    optim__lr=1e-2, optim__schedule="cosine", eval__every=8))
    records = metrics(tmp_path)
    assert len([r for r in records if "loss" in r]) == 24
    # Validation scores the same rows (and masks) each time; an untrained model scores
    # about ln(512) = 6.24.
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(val) == 3 and val[0] > val[1] > val[2] and val[2] < np.log(512) - 0.4


def test_loss_guard_skips_garbage_and_rolls_back(tinystories_rows, ray_local, tmp_path):
    """Three global batches of a token the data never holds (a corrupt stretch of shard)
    make the loss spike. With 2 micro-batches per step the guard skips micro-batch 25
    (step 13), rolls back at the second bad one, in the middle of step 13, to the step-10
    checkpoint, skips the third, and training goes on with good data."""
    from training.trainer import fit

    tokenizer, rows = tinystories_rows
    train = rows[64:].copy()
    global_batch = 8  # 2 workers x 4 rows
    train[25 * global_batch:28 * global_batch] = 0  # <pad>, never in the data
    shards = write_shards(tmp_path / "shards", tokenizer, train, rows[:64])
    storage = tmp_path / "train"
    fit(tiny_config(shards, storage, optim__max_steps=16, optim__lr=1e-2, data__grad_accum=2,
                    checkpoint__every=5, guard={"spike_factor": 1.15, "max_bad_steps": 2,
                                                "warmup_steps": 10}))
    records = [r for r in metrics(storage) if "loss" in r]
    steps = [r["step"] for r in records]
    assert steps == list(range(1, 13)) + list(range(11, 17))
    assert records[-1]["skipped_steps"] == 3 and records[-1]["rollbacks"] == 1
    assert np.isfinite([r["loss"] for r in records]).all()
    assert records[-1]["loss"] < records[0]["loss"] - 0.3
