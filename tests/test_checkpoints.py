"""Checkpoint import: the three layouts, safe loading, all-or-nothing fitting, downloads."""

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from levit_bench.errors import CheckpointError
from levit_bench.models.checkpoints import fit, read_checkpoint, save_weights, to_native
from levit_bench.models.levit import LEVIT_CONFIGS, build_levit
from levit_bench.models.levit_layouts import LEVIT_LAYOUTS
from levit_bench.registry import create_model, get_spec

from levit_reference import native_to_official, official_logits, official_to_timm, randomise

NAME = "levit_128s"  # the smallest variant; its stages have different depths (2, 3, 4)


@pytest.fixture(scope="module")
def source():
    """A randomised model, its official-layout state dict, and a batch of images."""
    torch.manual_seed(1)
    model = randomise(build_levit(NAME), seed=1).eval()
    official = native_to_official(model.state_dict(), model.config)
    images = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        logits = model(images)
    return model, official, images, logits


def _logits(model, images):
    with torch.no_grad():
        return model(images)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_foreign_layouts_use_the_published_key_names(source):
    model, official, _, _ = source
    timm = official_to_timm(official, model.config)
    for key in ("patch_embed.0.c.weight", "blocks.0.m.qkv.c.weight", "blocks.0.m.attention_biases",
                "head.l.weight", "head_dist.bn.running_var", "blocks.4.kv.c.weight", "blocks.4.q.1.c.weight"):
        assert key in official, key
    for key in ("stem.conv1.linear.weight", "stages.0.blocks.0.attn.qkv.linear.weight",
                "stages.1.downsample.attn_downsample.q.ln.linear.weight",
                "stages.1.downsample.attn_downsample.q.ln.bn.running_var", "head.linear.weight",
                "head_dist.linear.bias"):
        assert key in timm, key
    # LeViT-128S: 2 + 3 + 4 attention/MLP pairs and two shrinking blocks = 22 official blocks
    assert max(int(k.split(".")[1]) for k in official if k.startswith("blocks.")) == 21


def test_official_checkpoint_gives_the_official_logits(source, tmp_path):
    model, official, images, logits = source
    path = tmp_path / "LeViT-128S-test.pth"
    torch.save({"model": official, "epoch": 999}, path)  # the release's {"model": ...} container
    loaded, info = create_model(NAME, weights=str(path))
    assert info.layout == "official" and info.sha256 == _sha256(path)
    ours = _logits(loaded, images)
    assert torch.equal(ours, logits)
    assert torch.equal(ours, official_logits(official, model.config, images))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_checkpoint_gives_the_same_logits(source, tmp_path, suffix):
    model, official, images, logits = source
    timm = official_to_timm(official, model.config)
    path = tmp_path / f"levit_128s{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in timm.items()}, str(path))
    else:
        torch.save(timm, path)
    loaded, info = create_model(NAME, weights=str(path))
    assert info.layout == "timm"
    assert torch.equal(_logits(loaded, images), logits)


def test_timm_conv_mode_weights_are_accepted(source, tmp_path):
    """timm's levit_conv_* store the 1x1 projections as (out, in, 1, 1) conv weights."""
    model, official, images, logits = source
    timm = official_to_timm(official, model.config)
    conv = {k: (v[:, :, None, None] if k.endswith("linear.weight") and v.dim() == 2
                and not k.startswith("head") else v) for k, v in timm.items()}
    path = tmp_path / "levit_conv_128s.pth"
    torch.save(conv, path)
    loaded, _ = create_model(NAME, weights=str(path))
    assert torch.equal(_logits(loaded, images), logits)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_native_round_trip(source, tmp_path, suffix):
    model, _, images, logits = source
    path = tmp_path / f"mine{suffix}"
    save_weights(model, path, NAME)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    loaded, info = create_model(NAME, weights=str(path))
    assert info.layout == "levit-bench"
    assert torch.equal(_logits(loaded, images), logits)


@pytest.mark.parametrize("name", sorted(LEVIT_CONFIGS))
def test_every_variant_converts_key_for_key(name):
    """Official and timm layouts map onto exactly the native keys and shapes, for all five."""
    with torch.device("meta"):
        model = build_levit(name)
    native = model.state_dict()
    official = native_to_official(native, model.config)
    for layout, foreign in (("official", official), ("timm", official_to_timm(official, model.config))):
        converted, detected = to_native(foreign, model, LEVIT_LAYOUTS)
        assert detected == layout
        assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in native.items()}


def test_checkpoint_for_another_model_is_refused(source, tmp_path):
    model, _, _, _ = source
    path = tmp_path / "mine.pth"
    save_weights(model, path, NAME)
    with pytest.raises(CheckpointError, match="holds weights for levit_128s, not levit_128$"):
        create_model("levit_128", weights=str(path))


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_carrying_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "payload": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"^refusing to load .*evil\.pth: it holds Python objects"):
        create_model(NAME, weights=str(path))
    assert not marker.exists()


def _assert_untouched(model, before):
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _fit_error(tmp_path, state_dict) -> str:
    """Load `state_dict` into a fresh model; return the error and check nothing was loaded."""
    spec = get_spec(NAME)
    model = spec.build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "bad.pth"
    torch.save(state_dict, path)
    with pytest.raises(CheckpointError) as raised:
        fit(model, read_checkpoint(str(path)), spec.checkpoint_layouts, model_name=spec.name)
    _assert_untouched(model, before)
    return str(raised.value)


def test_wrong_shape_missing_and_unexpected_keys_in_one_error(source, tmp_path):
    _, official, _, _ = source
    bad = dict(official)
    bad["blocks.0.m.qkv.c.weight"] = torch.zeros(3, 3)
    del bad["head_dist.l.bias"]
    bad["blocks.99.m.extra"] = torch.zeros(1)
    message = _fit_error(tmp_path, {"model": bad})
    assert message.startswith("checkpoint (official layout) does not fit LeViT: ")
    assert "1 missing [head_dist.linear.bias]" in message
    assert "1 unexpected [blocks.99.m.extra]" in message
    assert "1 wrong shape [stages.0.blocks.0.attn.qkv.linear.weight (3, 3) != (256, 128)]" in message
    assert "\n" not in message


@pytest.mark.parametrize("problem", ["wrong shape", "missing", "unexpected"])
def test_each_misfit_alone_is_reported(source, tmp_path, problem):
    model, _, _, _ = source
    state = dict(model.state_dict())
    if problem == "wrong shape":
        state["head.linear.weight"] = torch.zeros(10, 384)
    elif problem == "missing":
        del state["stages.2.blocks.3.mlp.reduce.bn.running_var"]
    else:
        state["stages.0.blocks.0.attn.extra"] = torch.zeros(2)
    message = _fit_error(tmp_path, state)
    assert f"1 {problem} [" in message


def test_unreadable_and_missing_files(tmp_path):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        create_model(NAME, weights=str(broken))
    broken_st = tmp_path / "broken.safetensors"
    broken_st.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="cannot read safetensors file"):
        create_model(NAME, weights=str(broken_st))
    with pytest.raises(CheckpointError, match="weights file not found"):
        create_model(NAME, weights=str(tmp_path / "absent.pth"))
    tensorless = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, tensorless)
    with pytest.raises(CheckpointError, match="holds no tensors"):
        create_model(NAME, weights=str(tensorless))


@pytest.fixture()
def http_server(tmp_path):
    """A real HTTP server on loopback serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_download_verifies_the_hash_in_the_name(source, tmp_path, http_server):
    model, official, images, logits = source
    served, base = http_server
    staging = tmp_path / "staging.pth"
    torch.save({"model": official}, staging)
    digest = _sha256(staging)
    good = served / f"LeViT-128S-{digest[:8]}.pth"
    staging.rename(good)
    loaded, info = create_model(NAME, weights=f"{base}/{good.name}")
    assert torch.equal(_logits(loaded, images), logits)
    cached = tmp_path / "cache" / good.name
    assert info.path == cached and _sha256(cached) == digest

    bad = served / f"LeViT-128S-{'0' * 8}.pth"
    bad.write_bytes(good.read_bytes())
    with pytest.raises(CheckpointError, match="does not start with 00000000 as its name says"):
        create_model(NAME, weights=f"{base}/{bad.name}")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [good.name]  # nothing partial

    with pytest.raises(CheckpointError, match="HTTP 404"):
        create_model(NAME, weights=f"{base}/LeViT-128S-12345678.pth")


def test_unreachable_url_says_offline(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot download .*\(offline\?"):
        create_model(NAME, weights="http://127.0.0.1:9/LeViT-192-92712e41.pth")
    assert not any((tmp_path / "cache").glob("*.pth"))
