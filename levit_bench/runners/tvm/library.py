"""Where TVM's products live in the work directory: tuning databases and compiled libraries.

    <workdir>/tvm/tuning/<target-key>/tvm-<version>/   MetaSchedule's JSON database, models.json
    <workdir>/tvm/libraries/<model>/<target-key>/<onnx-sha>-<schedules>/<model>.so + manifest.json

A database is keyed by target and TVM version and shared by every model tuned for that target:
a kernel is one workload however many models call it (LeViT sizes share many shapes), so a
second model starts from what the first one's tuning measured. `models.json` lists the models
tuned into it; a `run` of one of them uses it (mode `tuned`).

A library is written with a manifest (target, TVM version, input shape,
sha256s) so that it can be copied to a device and still says what it is; a manifest that
matches the artifact, the target and the database lets a later run skip the compile.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import RunnerError
from levit_bench.runners.tvm.api import tvm_version
from levit_bench.runners.tvm.compile import compile_module, database_records, export_library
from levit_bench.runners.tvm.target import target_key
from levit_bench.workdir import atomic_path, write_atomic

SCHEDULES = ("tuned", "untuned")
MODELS_FILE = "models.json"
MANIFEST_FORMAT = 2  # 2: the manifest maps kernel calls to graph tensors (`wiring`); older ones are rebuilt


def database_dir(workdir: Path, target: dict) -> Path:
    return workdir / "tvm" / "tuning" / target_key(target) / f"tvm-{tvm_version()}"


def tuned_models(database: Path) -> dict[str, dict]:
    """The models tuned into a database: name -> {batches, trials, seconds} ({}: none)."""
    try:
        return json.loads((database / MODELS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def add_tuned_model(database: Path, model: str, batch: int, trials: int, seconds: float) -> None:
    models = tuned_models(database)
    entry = models.setdefault(model, {"batches": [], "trials": 0, "seconds": 0.0})
    entry["batches"] = sorted({*entry["batches"], batch})
    entry["trials"] += trials
    entry["seconds"] = round(entry["seconds"] + seconds, 1)
    write_atomic(database / MODELS_FILE, (json.dumps(models, indent=2, sort_keys=True) + "\n").encode())


def has_tuning(workdir: Path, model: str) -> bool:
    """Whether `model` was tuned into any database here (cheap: no TVM import)."""
    return any(model in tuned_models(d) for d in (workdir / "tvm" / "tuning").glob("*/tvm-*"))


def resolve_schedules(workdir: Path, model: str, target: dict, asked: str | None) -> str:
    """`tuned` when asked for or when `model` was tuned for `target`, else `untuned`."""
    if asked is not None and asked not in SCHEDULES:
        raise RunnerError(f"tvm modes are {', '.join(SCHEDULES)}, not {asked}")
    database = database_dir(workdir, target)
    records = database_records(database)
    if asked == "tuned" and records == 0:
        raise RunnerError(
            f"no tuning database for {model} on {target_key(target)} with TVM {tvm_version()}: "
            f"run `levit-bench tune --model {model}` first"
        )
    return asked or ("tuned" if records and model in tuned_models(database) else "untuned")


@dataclass(frozen=True)
class Library:
    path: Path
    manifest: dict

    @property
    def sha256(self) -> str:
        return self.manifest["library_sha256"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiler_fingerprint() -> str:
    """The hash of the modules that decide what a library contains (the Relax pipeline and the
    default schedules): a library built by other code than this is never reused."""
    from levit_bench.runners.tvm import compile as compile_module_source, schedules, wiring

    digest = hashlib.sha256()
    for module in (compile_module_source, schedules, wiring):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _reusable(directory: Path, wanted: dict) -> Library | None:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        library = directory / manifest["library"]
        if all(manifest.get(k) == v for k, v in wanted.items()) and _sha256(library) == manifest["library_sha256"]:
            return Library(library, manifest)
    except (OSError, ValueError, KeyError):
        pass
    return None


def build_library(workdir: Path, artifact: Artifact, target: dict, schedules: str) -> Library:
    """Compile `artifact` for `target` (with the tuning database when `schedules` is tuned)."""
    database = database_dir(workdir, target)
    records = database_records(database) if schedules == "tuned" else 0
    wanted = {
        "format": MANIFEST_FORMAT, "model": artifact.model, "onnx_sha256": artifact.sha256, "target": target,
        "tvm_version": tvm_version(), "schedules": schedules, "database_records": records,
        "compiler_sha256": compiler_fingerprint(),  # a change to how levit-bench compiles rebuilds
    }
    directory = (workdir / "tvm" / "libraries" / artifact.model / target_key(target)
                 / f"{artifact.sha256[:12]}-{schedules}")
    found = _reusable(directory, wanted)
    if found is not None:
        return found
    compiled = compile_module(artifact.onnx_path, target, database if schedules == "tuned" else None)
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / f"{artifact.model}.so"
    with atomic_path(library) as staged:  # never a half-written library under the final name
        export_library(compiled.executable, staged, target)
    manifest = {
        **wanted,
        "library": library.name,
        "library_sha256": _sha256(library),
        "input_name": artifact.sidecar.get("input_name", "input"),
        "input_shape": artifact.sidecar["input_shape"],
        "input_dtype": "float32",
        "tasks": compiled.tasks,
        "tuned_tasks": compiled.tuned_tasks,
        "wiring": compiled.wiring,
        "database": str(database) if schedules == "tuned" else None,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_atomic(directory / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return Library(library, manifest)
