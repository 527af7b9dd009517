import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the test support modules beside this file


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Every test gets its own checkpoint cache and work directory."""
    monkeypatch.setenv("LEVIT_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LEVIT_BENCH_HOME", str(tmp_path / "work"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
