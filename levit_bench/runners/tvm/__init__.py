"""Apache TVM: the runner and everything it needs, one idea per module.

    api.py      the version check and the import (the only door to `tvm`)
    target.py   targets for the platforms (this host's CPU; aarch64+NEON)
    compile.py  ONNX -> Relax -> a library, with a tuning database's schedules
    library.py  where compiled libraries and tuning databases live in the work directory
    tuning.py   MetaSchedule tuning of a model for a platform, into its database
    rpc.py      devices behind TVM RPC (servers, trackers, the ARM emulator's address)
    vm.py       the Relax VM, here or on a device
    runner.py   the Runner
"""
