"""Hugging Face's file conventions: `hf-hub:ORG/NAME[@REVISION]` sources and model directories.

A model directory (what `save_pretrained` writes, and what a Hub snapshot holds) is a
`config.json` beside `model.safetensors` or `pytorch_model.bin`. A Hub source is downloaded by
`huggingface_hub` into its own cache (`HF_HUB_CACHE`, `HF_HOME`), only the config and one
weights file, and read from there when `HF_HUB_OFFLINE=1`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from levit_bench.errors import CheckpointError, one_line

HUB_PREFIX = "hf-hub:"
CONFIG_FILE = "config.json"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_source(source: str) -> bool:
    return source.startswith(HUB_PREFIX)


def parse_hub_source(source: str) -> tuple[str, str | None]:
    """`hf-hub:ORG/NAME[@REVISION]` -> (repo id, revision or None)."""
    repo, _, revision = source.removeprefix(HUB_PREFIX).partition("@")
    if not _REPO_ID.match(repo) or (revision == "" and "@" in source):
        raise CheckpointError(f"{source} is not a Hub source: write hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION")
    return repo, revision or None


def _offline() -> bool:
    """Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when first imported."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def download(source: str) -> Path:
    """The local directory holding `source`'s weights file and its config.json, if it has one.

    Online, the Hub's file list says which weights file to fetch (safetensors first). Offline
    (`HF_HUB_OFFLINE=1`), or when the Hub cannot be reached, the cache answers alone.
    """
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError, GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError,
        )
        from huggingface_hub.utils import logging as hub_logging
    except ImportError:
        raise CheckpointError("hf-hub: weights need huggingface_hub: pip install huggingface_hub") from None
    repo, revision = parse_hub_source(source)
    offline = _offline()
    hub_logging.set_verbosity_error()  # its retry warnings are not ours to print

    def fetch(filename: str, cached_only: bool) -> Path | None:
        try:
            return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=_cache_dir(),
                                        local_files_only=cached_only))
        except EntryNotFoundError:  # not in the repository, or (cached_only) not in the cache
            return None

    listed: set[str] | None = None
    if not offline:
        try:
            listed = {sibling.rfilename for sibling in HfApi().model_info(repo, revision=revision).siblings or ()}
        except GatedRepoError:
            raise CheckpointError(f"{source}: the repository is gated; accept its terms on the Hub and log in "
                                  "(hf auth login) first") from None
        except RepositoryNotFoundError:
            raise CheckpointError(f"{source}: no such repository on the Hugging Face Hub "
                                  "(or it is private: log in with hf auth login)") from None
        except RevisionNotFoundError:
            raise CheckpointError(f"{source}: the repository has no revision {revision}") from None
        except HfHubHTTPError as e:
            raise CheckpointError(f"{source}: the Hugging Face Hub answered {one_line(e)}") from None
        except Exception:  # noqa: BLE001 - unreachable (DNS, proxy, timeout): the cache may still hold it
            listed = None
    names = [name for name in WEIGHTS_FILES if listed is None or name in listed]
    if listed is not None and not names:
        raise CheckpointError(f"{source}: the repository holds no {' or '.join(WEIGHTS_FILES)}")
    try:
        weights = next((path for name in names if (path := fetch(name, listed is None)) is not None), None)
        if weights is not None and (listed is None or CONFIG_FILE in listed):
            fetch(CONFIG_FILE, listed is None)
    except Exception as e:  # noqa: BLE001 - a download cut off, a full disk, ...
        raise CheckpointError(f"{source}: cannot fetch it from the Hugging Face Hub: {one_line(e)}") from None
    if weights is None:
        where = "the Hugging Face cache (HF_HUB_OFFLINE=1)" if offline else \
            "the Hugging Face cache, and the Hub cannot be reached (offline?)"
        raise CheckpointError(f"{source}: no {' or '.join(WEIGHTS_FILES)} in {where}")
    return weights.parent


def weights_in_directory(directory: Path) -> Path:
    """The weights file of a model directory."""
    for name in WEIGHTS_FILES:
        if (directory / name).is_file():
            return directory / name
    sharded = sorted(p.name for p in directory.glob("*.index.json"))
    if sharded:
        raise CheckpointError(f"{directory} holds a sharded checkpoint ({sharded[0]}); "
                              "merge it into one file first")
    raise CheckpointError(f"{directory} holds no weights: expected {' or '.join(WEIGHTS_FILES)} there")


def read_config(directory: Path) -> dict | None:
    """The `config.json` of a model directory, or None where there is none."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {one_line(e, name_foreign=False)}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return config


def config_num_classes(config: dict | None) -> int | None:
    """The number of classes a config declares: transformers' id2label or num_labels, timm's num_classes."""
    if not config:
        return None
    for value in (config.get("num_classes"), config.get("num_labels"), len(config.get("id2label") or {})):
        if isinstance(value, int) and value > 0:
            return value
    return None
