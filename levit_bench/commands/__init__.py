"""One module per command: each `register`s its parser and handler with the CLI."""

from levit_bench.commands import (
    arm_emulator, capacity, catalogue, compare, data, evaluate, export, fleet, measurements, profile, quantize, report,
    results, train, tune,
)

MODULES = (catalogue, export, quantize, measurements, capacity, profile, results, compare, report, tune, arm_emulator, fleet,
           data, train, evaluate)
