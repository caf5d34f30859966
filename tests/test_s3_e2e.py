"""Object storage end to end, on a real S3 endpoint (moto's server on 127.0.0.1): raw
text is read from s3://, curation writes its outputs and token shards to s3://, training
streams the shards from there, checkpoints there, and a second run resumes from there.
Both commands run as a user runs them, as subprocesses configured only by the
environment (AWS_ENDPOINT_URL + credentials), with nothing written to local disk but
the trainer's metrics log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

BUCKET = "rawtext"


def run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def s3(s3_server):
    from curation.config import StorageConfig
    from curation.storage import open_fs

    fs, _ = open_fs("s3://", StorageConfig(endpoint_url=s3_server))
    fs.mkdir(BUCKET)
    yield fs
    fs.rm(BUCKET, recursive=True)


def test_curate_to_s3_then_train_and_resume_from_s3(s3_server, s3, shared_data, tmp_path):
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_server, "PYTHONPATH": str(REPO)}
    s3.put(str(shared_data / "tinystories" / "tinystories_v1_valid_head.txt"),
           f"{BUCKET}/raw/tinystories/valid.txt")

    curation = write_yaml(tmp_path / "curation.yaml", {
        "run": {"output": f"s3://{BUCKET}/curation"},
        "ray": {"num_cpus": 2},
        "sources": [{"name": "tinystories", "paths": [f"s3://{BUCKET}/raw/tinystories/"],
                     "format": "text", "text_split": "blank_line"}],
        "langid": {"keep": ["en"]},
        "quality": {"rules": {"min_words": 20}},
        "dedup": {"enabled": False},  # covered by its own tests; here only storage matters
        "tokenizer": {"vocab_size": 512, "sample_docs": 500},
        "shards": {"seq_len": 64, "target_shard_mb": 1, "validation_fraction": 0.05},
    })
    run(["curation", "run", str(curation)], env, tmp_path)
    assert s3.glob(f"{BUCKET}/curation/curated/lang=en/*.parquet")
    run(["curation", "verify", f"s3://{BUCKET}/curation/shards"], env, tmp_path)
    manifest = json.loads(s3.cat_file(f"{BUCKET}/curation/shards/manifest.json"))
    assert manifest["splits"]["train"]["rows"] > 0

    train = write_yaml(tmp_path / "train.yaml", {
        "model": {"preset": "260K"},
        "data": {"manifest": f"s3://{BUCKET}/curation/shards/manifest.json", "batch_size": 4},
        "optim": {"max_steps": 4, "warmup_steps": 1},
        "precision": "fp32",
        "zero": {"stage": 1},
        "checkpoint": {"storage_path": f"s3://{BUCKET}/train", "name": "e2e", "every": 2, "keep": 2},
        "eval": {"every": 2, "max_batches": 2},
        "metrics": {"log_every": 1, "tensorboard": False},
        "scaling": {"num_workers": 1},
    })
    run(["training", "train", str(train)], env, tmp_path)
    states = sorted(s3.glob(f"{BUCKET}/train/e2e/**/train_state.json"))
    assert max(json.loads(s3.cat_file(p))["step"] for p in states) == 4

    # Same run name, a longer schedule: resumes at step 4 from the S3 checkpoint.
    run(["training", "train", str(train), "--set", "optim.max_steps=6"], env, tmp_path)
    steps = [json.loads(s3.cat_file(p))["step"]
             for p in sorted(s3.glob(f"{BUCKET}/train/e2e/**/train_state.json"))]
    assert max(steps) == 6
    assert s3.glob(f"{BUCKET}/train/e2e/**/model.pt")
    metrics = tmp_path / "runs" / "e2e" / "logs" / "metrics.jsonl"
    logged = [r["step"] for r in map(json.loads, metrics.read_text().splitlines()) if "loss" in r]
    assert logged == [1, 2, 3, 4, 5, 6], "the second run should continue, not restart"
