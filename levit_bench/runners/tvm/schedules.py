"""Default CPU schedules for the kernels tuning has not scheduled.

TVM 0.27 applies DLight on GPU targets only, so on a CPU an untuned kernel is the plain loop
nest that legalisation wrote (levit_128s ran at 1/60 of ONNX Runtime). Here every kernel with
one reduction block whose spatial axes come before its reduction axes (dense and batched
matmul, convolution in NHWC) gets a register-tiled schedule: `ROWS` output rows x `VECTORS`
vectors of the last output axis accumulate in a local tile while the reduction runs, the
tile's last axis vectorised at the target's vector width; the kernel's element-wise prologue
and epilogue (bias, activation, residual) are inlined into the tile's loads and write-back.
Softmax-like kernels go to DLight's CPU `Reduction` rule. A tuning database's schedules win:
these apply only where it has none. Tuning measures each default schedule first and records it
as the task's first candidate (`default_schedule` returns it with its trace), so a tuned build
is never slower than these by the tuner's own measurement.
"""

from __future__ import annotations

from levit_bench.runners.tvm.api import import_tvm

ROWS = (8, 7, 6, 4, 3, 2)  # rows per register tile, the first that divides the rows
VECTORS = (2, 1)  # vectors per tile row, likewise for the last output axis


def default_schedules():
    """The pass that schedules what is not scheduled yet (apply it under a target)."""
    import_tvm()
    from tvm.s_tir import dlight

    tiled, injective = _rules()
    return dlight.ApplyDefaultSchedule(tiled, dlight.cpu.Reduction(), injective)


def default_schedule(func, target):
    """The default schedule of one PrimFunc, as a traced `Schedule` (None: no rule applies),
    exactly as `default_schedules()` would schedule it."""
    import_tvm()
    from tvm.s_tir import dlight

    tiled, injective = _rules()
    for rule in (tiled, dlight.cpu.Reduction(), injective):
        schedule = rule.apply(func, target, False)
        if schedule is not None:
            return schedule
    return None


def _lanes(target) -> int:
    from tvm.target.codegen import llvm_get_vector_width

    bits = llvm_get_vector_width(target)
    return max((bits if bits > 0 else 128) // 32, 1)


def _parallel(target) -> bool:
    """Whether a kernel's outer loop should be split over threads: not on a one-core target
    (every platform here measures one pinned thread; a parallel launch would only add its cost)."""
    return int(target.attrs.get("num-cores", 0) or 0) != 1


def _tile_width(columns: int, lanes: int) -> int:
    for width in [v * lanes for v in VECTORS] + [8, 4, 2]:
        if columns % width == 0:
            return width
    return 1


def _constant(extent) -> int | None:
    """A loop extent as an int (None: not a constant)."""
    value = getattr(extent, "value", extent)
    return value if isinstance(value, int) else None


def _rules() -> tuple:
    """The two rules of levit-bench's own (DLight's `Reduction` sits between them)."""
    from tvm import s_tir, tirx
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

    class Rule(CPUScheduleRule):
        def apply(self, func, target, _tunable):
            if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
                return None
            sch = s_tir.Schedule(func)
            blocks = normalize_prim_func(sch)
            return self.schedule(sch, blocks, target) if blocks else None

    class TiledReduction(Rule):
        def schedule(self, sch, blocks, target):
            reducing = [i for i, block in enumerate(blocks) if not block.is_injective()]
            if len(reducing) != 1:
                return None
            main = blocks[reducing[0]]
            kinds = main.dom_kind()
            spatial = len(kinds) - len(kinds.lstrip("S"))
            extents = [_constant(e) for e in main.dom()]
            if spatial < 2 or set(kinds[spatial:]) != {"R"} or None in extents:
                return None
            for block in blocks[:reducing[0]]:  # padding, transposes: read in place
                _try(sch.compute_inline, block.block_rv)
            _tile(sch, main.block_rv, extents, spatial, _lanes(target), blocks[reducing[0] + 1:], _parallel(target))
            return sch

    class Injective(Rule):
        """Element-wise and data-movement kernels: every block inlined into the last one (a
        transpose there and back, as channels-last leaves around Hardswish, composes away), its
        innermost loop vectorised, its outermost parallel on a multi-core target."""

        def schedule(self, sch, blocks, target):
            if not all(block.is_injective() for block in blocks):
                return None
            for block in blocks[:-1]:
                _try(sch.compute_inline, block.block_rv)
            lanes = _lanes(target)
            for block in normalize_prim_func(sch) or []:
                loops = sch.get_loops(block.block_rv)
                extent = _constant(block.dom()[-1]) if block.dom() else None
                if extent and extent % lanes == 0:
                    _, inner = sch.split(loops[-1], factors=[None, lanes])
                    sch.vectorize(inner)
                    loops = sch.get_loops(block.block_rv)
                if len(loops) > 1 and _parallel(target):
                    sch.parallel(loops[0])
            return sch

    return TiledReduction(), Injective()


def _try(primitive, block) -> bool:
    """Apply a schedule primitive that may refuse a block (the schedule is then unchanged)."""
    from tvm.s_tir.schedule import ScheduleError

    try:
        primitive(block)
    except ScheduleError:
        return False
    return True


def _tile(sch, block, extents: list[int], spatial: int, lanes: int, epilogues: list, parallel: bool) -> None:
    """Rows are the second-last spatial axis, columns the last: a tile never crosses the outer
    axes (batch, head), so its write-back covers exactly the rows it computed."""
    loops = sch.get_loops(block)[-len(extents):]
    outer, row_loop, column_loop, reduction = loops[:spatial - 2], loops[spatial - 2], loops[spatial - 1], loops[spatial:]
    rows = next((r for r in ROWS if extents[spatial - 2] % r == 0), 1)
    width = _tile_width(extents[spatial - 1], lanes)
    row_outer, row_inner = sch.split(row_loop, factors=[None, rows])
    column_outer, column_inner = sch.split(column_loop, factors=[None, width])
    sch.reorder(*outer, row_outer, column_outer, *reduction, row_inner, column_inner)
    tile = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(tile, column_outer, preserve_unit_loops=True)
    # an epilogue chain (bias, Hardswish's clip and product) is folded forward into its last
    # block, which then joins the tile's write-back; a block that refuses runs after the tile
    for epilogue in epilogues[:-1]:
        _try(sch.compute_inline, epilogue.block_rv)
    for epilogue in epilogues[-1:]:
        _try(sch.reverse_compute_inline, epilogue.block_rv)
    sch.unroll(row_inner)
    if width > 1:
        sch.vectorize(column_inner)
        sch.vectorize(sch.get_loops(tile)[-1])
    if parallel:
        sch.parallel(sch.fuse(*outer, row_outer) if outer else row_outer)
    # the accumulator's zeroing, split off last: its loops keep the kinds given above
    sch.decompose_reduction(block, reduction[0])
