import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the test support modules beside this file


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Every test gets its own checkpoint cache, Hugging Face cache (offline: tests make their
    own weights) and work directory."""
    monkeypatch.setenv("LEVIT_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LEVIT_BENCH_HOME", str(tmp_path / "work"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _own_core_locks(tmp_path, monkeypatch):
    """Core locks of this test only: a measurement running beside the suite must not make it wait
    (the tests assert outputs and behaviour, never speed)."""
    monkeypatch.setenv("LEVIT_BENCH_LOCKS", str(tmp_path / "locks"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_models_left_registered():
    """A model a test registers in this process (a user's ONNX file run in process) is gone after
    it: a later test comparing the registry with a fresh process's would see a stranger."""
    from levit_bench import registry

    before = set(registry.REGISTRY)
    yield
    for name in set(registry.REGISTRY) - before:
        registry.unregister_model(name)


@pytest.fixture(scope="session")
def exported_128s(tmp_path_factory):
    """A work directory holding levit_128s exported (batch 16) from randomised weights.

    Tests copy it (`workdir_with_artifact`) instead of exporting again.
    """
    from levit_reference import randomise

    from levit_bench.exporters.pipeline import ExportOptions, export_model
    from levit_bench.models.checkpoints import save_weights
    from levit_bench.registry import get_spec

    root = tmp_path_factory.mktemp("template")
    weights = root / "levit_128s-random.safetensors"
    save_weights(randomise(get_spec("levit_128s").build(), seed=11), weights, "levit_128s")
    export_model(ExportOptions(model="levit_128s", out_dir=root / "work" / "models", weights=str(weights)))
    return root / "work"


@pytest.fixture()
def workdir_with_artifact(exported_128s, tmp_path):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(exported_128s, work, dirs_exist_ok=True)
    return work
