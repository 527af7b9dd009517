"""TVM targets (JSON dicts) for the platforms: this host's CPU for xeon, aarch64+NEON for arm."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from levit_bench.runners.base import RunnerError
from levit_bench.runners.tvm.api import import_tvm

ARM_TRIPLE = "aarch64-linux-gnu"

_VECTOR_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512bf16",
                    "avx512fp16", "amx-tile", "neon", "fp-armv8", "dotprod", "sve", "sve2", "i8mm")


def host_target(threads: int | None) -> dict:
    """The LLVM target of this CPU as TVM detects it (e.g. mcpu `znver4`)."""
    import_tvm()
    from tvm.target import codegen

    target: dict[str, Any] = {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())}
    if threads:
        target["num-cores"] = threads
    return target


def arm_target(mcpu: str | None, threads: int | None) -> dict:
    """aarch64 with NEON; `mcpu` (e.g. `neoverse-n1` for Graviton2) when the user names the core."""
    target: dict[str, Any] = {"kind": "llvm", "mtriple": ARM_TRIPLE, "mattr": ["+neon"]}
    if mcpu:
        target["mcpu"] = mcpu
    if threads:
        target["num-cores"] = threads
    return target


def target_features(target: dict) -> list[str]:
    """The vector ISA features LLVM enables for `target` (what its kernels may use)."""
    tvm = import_tvm()
    from tvm.target import codegen

    try:
        features = codegen.llvm_get_cpu_features(tvm.target.Target(target))
    except Exception:  # noqa: BLE001 - a CPU name LLVM does not know: no feature list
        return []
    return sorted(f for f in (str(f) for f in features) if f in _VECTOR_FEATURES)


def check_target(target: dict) -> None:
    """Refuse a target LLVM cannot build for (e.g. a misspelt `--mcpu`) in one line."""
    tvm = import_tvm()
    from tvm.target import codegen

    mcpu = target.get("mcpu")
    if not mcpu:
        return
    archlist = [str(c) for c in codegen.llvm_get_cpu_archlist(tvm.target.Target({k: v for k, v in target.items() if k != "mcpu"}))]
    if archlist and mcpu not in archlist:
        raise RunnerError(f"LLVM knows no CPU {mcpu!r} for {target.get('mtriple', 'this host')}")


def target_key(target: dict) -> str:
    """A directory-safe name for a target: triple-or-host, cpu, and a hash of the whole dict."""
    digest = hashlib.sha256(json.dumps(target, sort_keys=True).encode()).hexdigest()[:8]
    arch = "aarch64" if target.get("mtriple", "").startswith("aarch64") else "host"
    return f"{arch}-{target.get('mcpu', 'generic')}-{digest}"


def is_cross(target: dict) -> bool:
    return "mtriple" in target
