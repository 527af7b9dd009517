"""Hugging Face weights: the transformers LeViT layout, model directories and `hf-hub:` sources."""

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import onnx
import pytest
import torch
from safetensors.torch import save_file

from levit_bench.errors import CheckpointError
from levit_bench.registry import create_model

from transformers_levit_reference import HUB_CONFIGS, hub_config, logits, random_state_dict

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _save_directory(directory: Path, state_dict: dict, config: dict | None, filename="model.safetensors") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(directory / filename),
                  metadata={"format": "pt"})  # what transformers writes
    else:
        torch.save(state_dict, directory / filename)
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config))
    return directory


def _check_logits(model, state_dict, config, images):
    with torch.no_grad():
        ours = model(images)
    reference = logits(state_dict, config, images)
    tolerance = 1e-4 * reference.abs().max().item()
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=tolerance)
    # the logits depend on the input well beyond the tolerance, so a wrong bias or BN mapping shows
    assert (reference[0] - reference[1]).abs().max() > 100 * tolerance
    assert torch.equal(ours.argmax(dim=1), reference.argmax(dim=1))


@pytest.mark.parametrize("name", list(HUB_CONFIGS))
def test_each_transformers_size_converts_and_matches_the_reference(name, tmp_path):
    config = HUB_CONFIGS[name]
    state_dict = random_state_dict(config, seed=3)
    directory = _save_directory(tmp_path / "hf", state_dict, config)
    model, loaded = create_model(name, weights=str(directory))
    assert loaded.layout == "transformers" and loaded.path == directory / "model.safetensors"
    assert model.num_classes == 10  # from the config's id2label
    _check_logits(model, state_dict, config, torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(5)))


def test_a_bin_file_reads_the_config_beside_it_and_one_classifier_serves_both_heads(tmp_path):
    """`LevitForImageClassification` (no distillation head) in `pytorch_model.bin`, named as a file."""
    config = HUB_CONFIGS["levit_128s"]
    teacher = random_state_dict(config, seed=4)
    single = {k: v for k, v in teacher.items() if not k.startswith("classifier_distill.")}
    directory = _save_directory(tmp_path / "hf", single, config, filename="pytorch_model.bin")
    model, loaded = create_model("levit_128s", weights=str(directory / "pytorch_model.bin"))
    assert loaded.layout == "transformers"
    both = {**single, **{k.replace("classifier.", "classifier_distill.", 1): v
                         for k, v in single.items() if k.startswith("classifier.")}}
    _check_logits(model, both, config, torch.randn(2, 3, 224, 224))


def test_a_config_for_another_size_is_refused_with_the_difference(tmp_path):
    config = HUB_CONFIGS["levit_128s"]
    directory = _save_directory(tmp_path / "hf", random_state_dict(config), config)
    with pytest.raises(CheckpointError) as error:
        create_model("levit_128", weights=str(directory))
    assert str(error.value) == ("config.json does not describe levit_128: num_attention_heads [4, 6, 8] "
                                "(not [4, 8, 12]), depths [2, 3, 4] (not [4, 4, 4]); it describes levit_128s")
    # a field the config leaves out takes transformers' default (LeViT-128's): still a mismatch for 192
    sparse = {k: v for k, v in config.items() if k not in ("key_dim", "num_attention_heads")}
    (directory / "config.json").write_text(json.dumps(sparse))
    with pytest.raises(CheckpointError, match=r"^config.json does not describe levit_192: hidden_sizes "
                                              r"\[128, 256, 384\] \(not \[192, 288, 384\]\), num_attention_heads "
                                              r"\[4, 8, 12\] \(not \[3, 5, 6\]\)"):
        create_model("levit_192", weights=str(directory))
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "vit"}))
    with pytest.raises(CheckpointError, match="^config.json describes a vit model, not levit_128s$"):
        create_model("levit_128s", weights=str(directory))


def test_a_directory_without_weights_says_what_it_expected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(hub_config([128, 256, 384], [4, 6, 8], [2, 3, 4], [16] * 3)))
    with pytest.raises(CheckpointError, match=r"holds no weights: expected model.safetensors or pytorch_model.bin"):
        create_model("levit_128s", weights=str(tmp_path))


def _fill_hub_cache(cache: Path, repo: str, state_dict: dict, config: dict) -> None:
    """What huggingface_hub leaves after downloading `repo` at COMMIT (main)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    _save_directory(root / "snapshots" / COMMIT, state_dict, config)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "levit_bench", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def test_hf_hub_weights_come_from_the_cache_offline(tmp_path):
    config = HUB_CONFIGS["levit_128s"]
    state_dict = random_state_dict(config, seed=6)
    _fill_hub_cache(Path(os.environ["HF_HUB_CACHE"]), "facebook/levit-128S", state_dict, config)
    images = torch.randn(2, 3, 224, 224)
    for source in ("hf-hub:facebook/levit-128S", f"hf-hub:facebook/levit-128S@{COMMIT}"):
        model, loaded = create_model("levit_128s", weights=source)
        assert loaded.source == source and loaded.layout == "transformers"
        assert loaded.path.parent.name == COMMIT
        _check_logits(model, state_dict, config, images)
    # the command line takes it wherever it takes --weights: here export, which stores the source
    result = _cli("export", "--model", "levit_128s", "--weights", "hf-hub:facebook/levit-128S", "--json")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(result.stdout)
    assert sidecar["weights"]["source"] == "hf-hub:facebook/levit-128S"
    graph = onnx.load(Path(os.environ["LEVIT_BENCH_HOME"]) / "models" / sidecar["onnx_file"]).graph
    assert graph.output[0].type.tensor_type.shape.dim[-1].dim_value == 10  # the config's classes


def test_hf_hub_offline_without_the_cache_is_one_line(tmp_path):
    result = _cli("export", "--model", "levit_128s", "--weights", "hf-hub:facebook/levit-128S")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "levit-bench export: error: hf-hub:facebook/levit-128S: no model.safetensors or pytorch_model.bin in the Hugging Face "
        "cache (HF_HUB_OFFLINE=1)"]
    assert not [p for p in Path(os.environ["LEVIT_BENCH_HOME"]).rglob("*") if p.is_file()]  # nothing written
    with pytest.raises(CheckpointError, match="^hf-hub:levit-128S is not a Hub source: write hf-hub:ORG/NAME"):
        create_model("levit_128s", weights="hf-hub:levit-128S")


class _HubWithout(http.server.BaseHTTPRequestHandler):
    """A Hub that answers every request as the real one answers for a missing repository or revision."""

    error_code = "RepoNotFound"

    def do_GET(self):  # noqa: N802 - the http.server hook name
        body = json.dumps({"error": "not found"}).encode()
        self.send_response(404)
        self.send_header("X-Error-Code", self.error_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("error_code, source, message", [
    ("RepoNotFound", "hf-hub:facebook/levit-999",
     "hf-hub:facebook/levit-999: no such repository on the Hugging Face Hub (or it is private: log in with hf auth login)"),
    ("RevisionNotFound", "hf-hub:facebook/levit-128S@v9",
     "hf-hub:facebook/levit-128S@v9: the repository has no revision v9"),
])
def test_a_missing_repository_or_revision_online_is_one_line(error_code, source, message, monkeypatch):
    handler = type("Handler", (_HubWithout,), {"error_code": error_code})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        result = _cli("export", "--model", "levit_128s", "--weights", source)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"levit-bench export: error: {message}"]
