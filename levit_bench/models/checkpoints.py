"""Checkpoint import: fetch, read safely, recognise the key layout, fit all-or-nothing.

Reading never unpickles code: `.pth/.pt/.bin` go through `torch.load(weights_only=True)`,
`.safetensors` through safetensors. A URL is downloaded into a cache; when its file name
carries a hash prefix (`LeViT-192-92712e41.pth`), the download must match it. An
`hf-hub:ORG/NAME[@REVISION]` source or a Hugging Face model directory (`huggingface.py`) gives
a weights file whose directory may hold a `config.json`, which is read with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from levit_bench.errors import CheckpointError, one_line
from levit_bench.models import huggingface
from levit_bench.workdir import atomic_path

StateDict = dict[str, torch.Tensor]

NATIVE_LAYOUT = "levit-bench"
NATIVE_FORMAT = "levit-bench/1"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_CONTAINER_KEYS = ("state_dict", "model", "model_ema")
_OPTIONAL_KEYS = ("num_batches_tracked",)  # BN bookkeeping; eval and fine-tuning do not need it


@dataclass(frozen=True)
class CheckpointLayout:
    """A foreign key layout: recognised by one key, converted to the native layout."""

    name: str
    marker: str
    to_native: Callable[[Mapping[str, torch.Tensor], nn.Module], StateDict]
    # raises CheckpointError where a config.json read with the weights describes another model
    check_config: Callable[[Mapping, nn.Module, str], None] | None = None


@dataclass(frozen=True)
class LoadedWeights:
    """What was loaded, for provenance: where it came from and exactly which bytes."""

    source: str
    path: Path
    sha256: str
    layout: str
    dtype: str = "float32"  # the floating dtype(s) stored in the file; the model computes in float32


def default_cache_dir() -> Path:
    if "LEVIT_BENCH_CACHE" in os.environ:
        return Path(os.environ["LEVIT_BENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "levit-bench" / "checkpoints"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


def resolve(source: str, cache_dir: Path | None = None) -> Path:
    """The local weights file for `source`: a file, a model directory's weights file, or a
    URL or Hub source downloaded into its cache first."""
    if huggingface.is_hub_source(source):
        return huggingface.weights_in_directory(huggingface.download(source))
    if is_url(source):
        return download(source, cache_dir or default_cache_dir())
    path = Path(source).expanduser()
    if path.is_dir():
        path = huggingface.weights_in_directory(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {source}")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"weights file is not readable: {source}")
    return path


def download(url: str, cache_dir: Path) -> Path:
    """Download `url` into `cache_dir` (atomically), verifying the hash prefix in its name."""
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise CheckpointError(f"cannot tell a file name from URL {url}")
    match = _HASH_IN_NAME.search(name)
    expected = match.group(1) if match else None
    target = cache_dir / name
    if target.is_file() and (expected is None or sha256_of(target).startswith(expected)):
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create checkpoint cache {cache_dir}: {e.strerror}") from None
    try:
        with atomic_path(target) as tmp:
            digest = hashlib.sha256()
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if expected is not None and not actual.startswith(expected):
                raise CheckpointError(
                    f"download of {url} is corrupt or not the named file: sha256 {actual[:len(expected)]}... "
                    f"does not start with {expected} as its name says"
                )
    except urllib.error.HTTPError as e:
        raise CheckpointError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise CheckpointError(
            f"cannot download {url}: {reason} (offline? download it elsewhere and pass the file path)"
        ) from None
    return target


def read_state_dict(path: Path) -> tuple[StateDict, dict[str, str]]:
    """Tensors and metadata from a checkpoint file, without running any code it may carry."""
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _unpickling_error(path, str(e)) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {one_line(e, name_foreign=False)}") from None
    except Exception:  # noqa: BLE001 - torch.load reads any other file (e.g. text) as a broken pickle
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint or safetensors file") from None
    return _unwrap(obj, path)


def _unpickling_error(path: Path, message: str) -> CheckpointError:
    """Tell a pickle that refers to code apart from one that is merely not a checkpoint."""
    code = (re.search(r"Unsupported global: GLOBAL (\S+)", message)
            or re.search(r"unsupported GLOBAL (\S+)", message))
    if code:
        return CheckpointError(
            f"refusing to load {path}: it holds Python objects beyond tensors and plain data "
            f"(it calls {code.group(1)}), and only weights-only loading is allowed"
        )
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    reason = detail.group(1).strip() if detail else "unreadable pickle"
    return CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint ({reason})")


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            return {k: f.get_tensor(k) for k in f.keys()}, metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read safetensors file {path}: {one_line(e, name_foreign=False)}") from None


def _unwrap(obj: object, path: Path) -> tuple[StateDict, dict[str, str]]:
    """Find the state dict inside the usual containers ({"model": ...}, {"state_dict": ...})."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    metadata = {k: str(v) for k, v in obj.items() if k in ("format", "model_name", "num_classes")}
    if _is_class_list(obj.get("classes")):  # the trainer's class names, kept as safetensors would keep them
        metadata["classes"] = json.dumps(obj["classes"])
    for key in _CONTAINER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(sorted(map(str, obj))[:8])
        raise CheckpointError(f"{path} holds no tensors (top-level keys: {keys})")
    if all(k.startswith("module.") for k in tensors):  # saved from DistributedDataParallel
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors, metadata


def detect_layout(
    state_dict: Mapping[str, torch.Tensor], layouts: Iterable[CheckpointLayout],
    metadata: Mapping[str, str] | None = None,
) -> CheckpointLayout | None:
    """The foreign layout whose marker key the state dict holds; None for the native layout."""
    if (metadata or {}).get("format") == NATIVE_FORMAT:
        return None
    return next((layout for layout in layouts if layout.marker in state_dict), None)


def to_native(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, layouts: Iterable[CheckpointLayout],
    metadata: Mapping[str, str] | None = None,
) -> tuple[StateDict, str]:
    """Convert a foreign layout to the model's own keys; anything else is taken as native."""
    layout = detect_layout(state_dict, layouts, metadata)
    if layout is None:
        return dict(state_dict), NATIVE_LAYOUT
    return layout.to_native(state_dict, model), layout.name


def check_fit(model: nn.Module, state_dict: Mapping[str, torch.Tensor], layout: str) -> None:
    """Raise one error naming every missing, unexpected and wrongly-shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith(_OPTIONAL_KEYS)]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if not (missing or unexpected or wrong_shape):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            parts.append(f"{len(keys)} {label} [{_abbreviate(keys)}]")
    raise CheckpointError(
        f"checkpoint ({layout} layout) does not fit {type(model).__name__}: " + "; ".join(parts)
    )


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk (or the cache), not yet fitted to a model."""

    source: str
    path: Path
    sha256: str
    state_dict: StateDict
    metadata: dict[str, str]
    config: dict | None = None  # the config.json beside the weights file, if any

    @property
    def num_classes(self) -> int | None:
        value = self.metadata.get("num_classes", "")
        return int(value) if value.isdigit() else huggingface.config_num_classes(self.config)

    @property
    def classes(self) -> list[str] | None:
        """The class names in output order (the trainer's `classes`, a JSON list in the metadata);
        None where the checkpoint names none.

        A Hugging Face config's id2label is not taken for them: its labels are readable names
        ("tench, Tinca tinca") or placeholders ("LABEL_0"), not a dataset's folder names.
        """
        try:
            names = json.loads(self.metadata.get("classes", "null"))
        except json.JSONDecodeError:
            return None
        return names if _is_class_list(names) else None


def _is_class_list(value: object) -> bool:
    """Distinct class names, one per output: anything else names no classes to check data against."""
    return (isinstance(value, list) and bool(value) and all(isinstance(name, str) for name in value)
            and len(set(value)) == len(value))


def weights_id(weights: dict | None) -> str | None:
    """The identity of a set of weights as a record or sidecar keeps them (`source`, `sha256` or
    `seed`): a checkpoint's sha256, or the seed of a random init."""
    if not weights:
        return None
    return weights.get("sha256") or f"random-init:{weights.get('seed')}"


_last_read: list[tuple[tuple, Checkpoint]] = []  # the most recent checkpoint read, by file identity


def read_checkpoint(source: str, cache_dir: Path | None = None) -> Checkpoint:
    """The checkpoint at `source` (a path, model directory, URL or Hub source), read and hashed
    once while its file is unchanged.

    A measurement asks for its weights several times (to name the artifact, to export, to
    build the reference); the last checkpoint read is kept, keyed by the identity (path, inode,
    size, mtime) of its file and of the config.json beside it, so the file is read once and a
    changed one is read again.
    Callers share its tensors and must not change them.
    """
    path = resolve(source, cache_dir)
    key = tuple(_file_identity(p) for p in (path, path.parent / huggingface.CONFIG_FILE))
    if _last_read and _last_read[0][0] == key:
        return dataclasses.replace(_last_read[0][1], source=source)
    state_dict, metadata = read_state_dict(path)
    config = huggingface.read_config(path.parent)
    checkpoint = Checkpoint(source, path, sha256_of(path), state_dict, metadata, config)
    _last_read[:] = [(key, checkpoint)]
    return checkpoint


def _file_identity(path: Path) -> tuple | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns


def fit(
    model: nn.Module,
    checkpoint: Checkpoint,
    layouts: Iterable[CheckpointLayout] = (),
    model_name: str | None = None,
) -> LoadedWeights:
    """Load `checkpoint` into `model`, all or nothing."""
    declared = checkpoint.metadata.get("model_name")
    if model_name and declared and declared != model_name:
        raise CheckpointError(f"{checkpoint.source} holds weights for {declared}, not {model_name}")
    foreign = detect_layout(checkpoint.state_dict, layouts, checkpoint.metadata)
    if foreign is None:
        native, layout = dict(checkpoint.state_dict), NATIVE_LAYOUT
    else:
        if foreign.check_config is not None and checkpoint.config is not None:
            foreign.check_config(checkpoint.config, model, model_name or type(model).__name__)
        native, layout = foreign.to_native(checkpoint.state_dict, model), foreign.name
    check_fit(model, native, layout)
    model.load_state_dict(native, strict=False)  # strictness checked above, with a better message
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in checkpoint.state_dict.values()
                     if v.is_floating_point()})
    return LoadedWeights(source=checkpoint.source, path=checkpoint.path, sha256=checkpoint.sha256, layout=layout,
                         dtype="+".join(dtypes) or "float32")


def save_weights(model: nn.Module, path: Path, model_name: str) -> None:
    """Write the model's weights in the native layout, atomically (.safetensors or .pth)."""
    path = Path(path)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    num_classes = str(getattr(model, "num_classes", ""))
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            metadata = {"format": NATIVE_FORMAT, "model_name": model_name, "num_classes": num_classes}
            save_file(state_dict, str(tmp), metadata=metadata)
        else:
            torch.save(
                {"format": NATIVE_FORMAT, "model_name": model_name, "num_classes": num_classes,
                 "state_dict": state_dict},
                tmp,
            )


DROP = None  # a leaf rule target: derived data the native model rebuilds itself


def rename_modules(
    state_dict: Mapping[str, torch.Tensor],
    modules: dict[str, tuple[str, str]],
    rules: dict[str, list[tuple[str, str | None]]],
    model: nn.Module,
) -> StateDict:
    """Rename a foreign state dict module by module.

    `modules` maps a foreign module name to (native module name, kind); `rules[kind]` maps a
    foreign leaf prefix to the native one (or DROP). Keys it does not recognise are kept as
    they are, to be reported as unexpected.
    """
    targets = model.state_dict()
    out: StateDict = {}
    for key, value in state_dict.items():
        new_key = key
        module, _, leaf = key.rpartition(".")
        while module and module not in modules:  # walk up to the longest known module name
            module, _, head = module.rpartition(".")
            leaf = f"{head}.{leaf}"
        if module:
            native, kind = modules[module]
            for old, new in rules[kind]:
                if leaf.startswith(old):
                    if new is DROP:
                        new_key = None
                    else:
                        new_key = f"{native}.{new}{leaf[len(old):]}"
                    break
        if new_key is not None:
            out[new_key] = _adapt(value, targets.get(new_key))
    return out


def _adapt(value: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Reshape a flat bias table, or a 1x1 conv weight (timm's conv mode) into a linear one."""
    if target is None or value.shape == target.shape or value.numel() != target.numel():
        return value
    flat_bias = value.dim() == 2 and target.dim() == 3
    pointwise_conv = value.dim() == 4 and value.shape[2:] == (1, 1) and target.dim() == 2
    return value.reshape(target.shape) if flat_bias or pointwise_conv else value


def _abbreviate(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... {len(keys) - limit} more" if len(keys) > limit else "")

