"""Wall time of export + simplify + verify per LeViT variant (goal: LeViT-384 under 60 s).

Each variant gets random weights with non-trivial BatchNorm statistics and attention biases
(so nothing folds away as zero), saved as a checkpoint and exported through the same pipeline
as `levit-bench export`. Run: .venv/bin/python benchmarks/export_time.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from levit_reference import randomise  # noqa: E402

from levit_bench.environment import host_info  # noqa: E402
from levit_bench.exporters.pipeline import ExportOptions, export_model  # noqa: E402
from levit_bench.models.checkpoints import save_weights  # noqa: E402
from levit_bench.models.levit import LEVIT_CONFIGS  # noqa: E402
from levit_bench.registry import get_spec  # noqa: E402

GOAL_S = {"levit_384": 60.0}
STEPS = ("load", "fuse", "export", "simplify", "check", "verify", "total")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="exports per variant (median reported)")
    parser.add_argument("--models", nargs="*", default=list(LEVIT_CONFIGS))
    args = parser.parse_args()
    host = host_info()
    print(f"host: {host.cpu_model}, {host.usable_cores} usable cores ({host.fingerprint})")
    print(f"{'model':<11}" + "".join(f"{s:>10}" for s in STEPS) + "   goal")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            weights = Path(tmp) / f"{name}.safetensors"
            save_weights(randomise(get_spec(name).build()), weights, name)
            runs = [export_model(ExportOptions(model=name, out_dir=Path(tmp) / "out", weights=str(weights)))
                    .sidecar["timings_s"] for _ in range(args.repeat)]
            medians = {s: statistics.median(r[s] for r in runs) for s in STEPS}
            goal = GOAL_S.get(name)
            verdict = ""
            if goal is not None:
                ok = medians["total"] < goal
                failed |= not ok
                verdict = f"   < {goal:.0f} s: {'met' if ok else 'MISSED'}"
            print(f"{name:<11}" + "".join(f"{medians[s]:>9.1f}s" for s in STEPS) + verdict)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
