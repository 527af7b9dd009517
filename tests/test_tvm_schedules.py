"""TVM's default CPU schedules (runners/tvm/schedules.py): every matmul-like kernel is tiled, and
outputs stay what the plain loops compute."""

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from levit_bench.runners.tvm.schedules import default_schedules  # noqa: E402
from levit_bench.runners.tvm.target import host_target  # noqa: E402


def _module(rng):
    """A dense layer with a Hardswish epilogue chain (bias, +3, clip, /6, product) and an
    attention-like batched matmul whose 49 rows no tile of 8 divides."""
    from tvm import relax
    from tvm.script import relax as R

    weight = rng.standard_normal((40, 48)).astype("float32")
    bias = rng.standard_normal((48,)).astype("float32")
    builder = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((98, 40), "float32"))
    q = relax.Var("q", R.Tensor((2, 3, 49, 20), "float32"))
    k = relax.Var("k", R.Tensor((2, 3, 20, 64), "float32"))
    with builder.function("main", [x, q, k]):
        with builder.dataflow():
            y = builder.emit(relax.op.add(relax.op.matmul(x, relax.const(weight)), relax.const(bias)))
            gate = builder.emit(relax.op.divide(relax.op.clip(relax.op.add(y, relax.const(3.0)), 0.0, 6.0),
                                                relax.const(6.0)))
            dense = builder.emit(relax.op.multiply(y, gate))
            scores = builder.emit(relax.op.matmul(q, k))
            out = builder.emit_output(relax.Tuple([dense, scores]))
        builder.emit_func_output(out)
    return builder.get(), weight, bias


def test_default_schedules_tile_matmuls_and_keep_outputs():
    from tvm import relax

    rng = np.random.default_rng(0)
    mod, weight, bias = _module(rng)
    target = tvm.target.Target(host_target(1))
    with target:
        mod = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                        relax.transform.FuseOps(), relax.transform.FuseTIR()])(mod)
        scheduled = default_schedules()(mod)
        executable = tvm.compile(scheduled, target=target)
    matmuls = {gv.name_hint: f for gv, f in scheduled.functions_items()
               if isinstance(f, tvm.tirx.PrimFunc) and "matmul" in gv.name_hint}
    assert len(matmuls) == 2
    for name, func in matmuls.items():
        assert func.attrs["tirx.is_scheduled"], name
        assert "T.vectorized" in func.script() and "local" in func.script(), name  # a register tile

    x = rng.standard_normal((98, 40)).astype("float32")
    q = rng.standard_normal((2, 3, 49, 20)).astype("float32")
    k = rng.standard_normal((2, 3, 20, 64)).astype("float32")
    vm = relax.VirtualMachine(executable, tvm.cpu())
    dense, scores = vm["main"](*(tvm.runtime.tensor(a) for a in (x, q, k)))
    y = x @ weight + bias
    np.testing.assert_allclose(dense.numpy(), y * np.clip(y + 3, 0, 6) / 6, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores.numpy(), q @ k, rtol=1e-5, atol=1e-5)
