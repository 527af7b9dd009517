"""Apache TVM: the runner and everything it needs, one idea per module.

    api.py      the version check and the import (the only door to `tvm`)
    target.py   targets for the platforms (this host's CPU; aarch64+NEON)
    compile.py  ONNX -> Relax -> a library, with a tuning database's schedules
    schedules.py default CPU schedules for what tuning has not scheduled
    wiring.py   which graph tensors each compiled kernel runs (for `profile`)
    library.py  where compiled libraries and tuning databases live in the work directory
    tasks.py    the tuning tasks of one or more models, each distinct kernel once
    measuring.py how candidates are built and timed (cores apart), default schedules first
    tuning.py   MetaSchedule tuning of models for a platform, into the target's shared database
    rpc.py      devices behind TVM RPC (servers, trackers, the ARM emulator's address)
    vm.py       the Relax VM, here or on a device
    runner.py   the Runner
"""
