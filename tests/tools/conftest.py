"""A data dir with one partition of three or more segments, written by the log's own code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.support import Batch, build_partition, segments


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    return os.path.join(str(tmp_path), "data")


@pytest.fixture
def batches(data_dir: str) -> list[Batch]:
    written = build_partition(data_dir)
    assert len(segments(written)) >= 3, "the tests need three segments or more"
    return written
