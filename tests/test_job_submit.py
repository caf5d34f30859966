"""docs/cluster.md step 1, for real: a Ray head of its own (free ports, own temp dir, own
auth token), the curation job submitted with `ray job submit --runtime-env
cluster/runtime-env.yaml` from the repository root, its outputs checked, and the head
stopped by the process group it was started in (never `ray stop`, which would stop
every Ray on the machine)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO

RAY = Path(sys.executable).with_name("ray")
RUNTIME_ENV = "cluster/runtime-env.yaml"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ray_env() -> dict[str, str]:
    """The head and its clients share a fresh token; the venv comes first on PATH because
    the job's `python` is resolved from the head's environment."""
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )

    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": generate_new_authentication_token(),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "RAY_USAGE_STATS_ENABLED": "0"}


def stop_process_group(proc: subprocess.Popen, temp_dir: str) -> None:
    """SIGTERM the head's process group, then SIGKILL what is left of it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 30
    while survivors(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in survivors(temp_dir):  # Ray daemons that left the group: ours by temp dir
        os.kill(pid, signal.SIGKILL)


def survivors(temp_dir: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and temp_dir.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


@pytest.fixture(scope="module")
def ray_head():
    """Yields (dashboard address, environment for clients)."""
    temp_dir = tempfile.mkdtemp(prefix="rt-head-", dir="/tmp")  # short: Ray's socket paths
    gcs, dashboard, client, agent_http, agent_grpc, metrics, runtime_env_agent = free_ports(7)
    env = ray_env()
    cmd = [str(RAY), "start", "--head", "--block", "--disable-usage-stats",
           "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", "2",
           "--temp-dir", temp_dir, "--include-dashboard", "true",
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
           "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent_http),
           "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
           "--runtime-env-agent-port", str(runtime_env_agent)]
    log_path = Path(temp_dir) / "ray-start.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([str(RAY), "job", "list", "--address", address], env=env,
                             capture_output=True, check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray head did not come up:\n" + log_path.read_text()[-3000:])
            time.sleep(2)
        yield address, env
    finally:
        stop_process_group(proc, temp_dir)
        assert not survivors(temp_dir), "Ray processes of this test outlived it"


def small_config(data: Path, output: Path) -> Path:
    """A few hundred TinyStories documents through the whole path, shards included.
    Absolute paths: the job runs in an uploaded copy of the repository."""
    config = {
        "run": {"output": str(output), "on_existing": "overwrite"},
        "sources": [{"name": "tinystories", "format": "text", "text_split": "blank_line",
                     "paths": [str(data / "tinystories" / "tinystories_v1_valid_head.txt")]}],
        "langid": {"keep": ["en"]},
        "quality": {"rules": {"min_words": 20}},
        "tokenizer": {"vocab_size": 512, "sample_docs": 500},
        "dedup": {"enabled": False},  # its own tests cover it; this one is about submission
        "shards": {"seq_len": 64, "target_shard_mb": 1, "validation_fraction": 0.05},
    }
    path = output.parent / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_curation_job_via_ray_job_submit(ray_head, shared_data, tmp_path):
    address, env = ray_head
    output = tmp_path / "curation"
    config = small_config(shared_data, output)
    submit = subprocess.run(
        [str(RAY), "job", "submit", "--address", address, "--submission-id", "rawtext-curate-test",
         "--runtime-env", RUNTIME_ENV, "--", "python", "-m", "curation", "run", str(config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-2000:]
    status = subprocess.run([str(RAY), "job", "status", "--address", address, "rawtext-curate-test"],
                            env=env, capture_output=True, text=True, check=False)
    assert "succeeded" in status.stdout.lower()

    # The job ran in the uploaded copy, against this head, and wrote where it was told.
    stats = json.loads((output / "stats.json").read_text())
    curated = pq.read_table(output / "curated")
    assert curated.num_rows > 0 and set(curated.column("lang").to_pylist()) == {"en"}
    rejected = pq.read_table(output / "rejected").num_rows if (output / "rejected").exists() else 0
    assert stats["kept"]["docs"] == curated.num_rows
    assert stats["input"]["docs"] == curated.num_rows + rejected
    manifest = json.loads((output / "shards" / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["splits"]["train"]["rows"] > 0
    verify = subprocess.run([sys.executable, "-m", "curation", "verify", str(output / "shards")],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
