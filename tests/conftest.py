"""Shared fixtures. Data comes from ../shared beside the repo; tests that need it skip
with a reason where it is absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAWTEXT_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA} (set RAWTEXT_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session, on its own temp dir: never someone else's."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    temp_dir = tempfile.mkdtemp(prefix="rt-ray-", dir="/tmp")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()
