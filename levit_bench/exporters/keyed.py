"""Files built once from an exported artifact and reused while what made them holds.

A runtime that compiles the PyTorch model itself (AOTInductor's `.pt2`, ExecuTorch's `.pte`)
keeps its product in the work directory under a key of everything that decides its bytes (the
model, the artifact it was built from and so its weights, the batch, the precision, the
compiler's version, levit-bench's own code that builds it), with a sidecar saying so:

    <workdir>/models/<kind>/<model>/<key>/<file> + <file stem>.json

A later run, in any process, loads the file when the sidecar matches what it wants and the
file's sha256 is the sidecar's; otherwise it builds again. A build is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from levit_bench.models.checkpoints import sha256_of
from levit_bench.workdir import atomic_path, write_atomic


@dataclass(frozen=True)
class Built:
    path: Path
    sidecar: dict
    built_now: bool  # False: found in the work directory, nothing compiled

    @property
    def sha256(self) -> str:
        return self.sidecar["sha256"]


def code_fingerprint(*modules: ModuleType) -> str:
    """The hash of the modules that decide what a build contains: one built by other code than
    this is never reused."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def key_of(wanted: dict) -> str:
    return hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _reusable(path: Path, wanted: dict) -> dict | None:
    try:
        sidecar = json.loads(path.with_suffix(".json").read_text())
        if all(sidecar.get(k) == v for k, v in wanted.items()) and sha256_of(path) == sidecar["sha256"]:
            return sidecar
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def build_keyed(workdir: Path, kind: str, model: str, filename: str, wanted: dict,
                build: Callable[[Path], dict]) -> Built:
    """The file `filename` made for `wanted`: found, or made by `build(staged_path)`, which writes
    it and returns what the sidecar adds (besides `wanted`, the file's sha256, the build time)."""
    wanted = json.loads(json.dumps(wanted, default=str))  # as the sidecar will read back
    path = workdir / "models" / kind / model / key_of(wanted) / filename
    found = _reusable(path, wanted)
    if found is not None:
        return Built(path, found, built_now=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with atomic_path(path) as staged:
        facts = build(staged)
    sidecar = {**wanted, **facts, "file": path.name, "sha256": sha256_of(path),
               "build_s": round(time.perf_counter() - t0, 2),
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_atomic(path.with_suffix(".json"), (json.dumps(sidecar, indent=2, default=str) + "\n").encode())
    return Built(path, sidecar, built_now=True)
