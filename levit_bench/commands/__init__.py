"""One module per command: each `register`s its parser and handler with the CLI."""

from levit_bench.commands import catalogue, export, measurements, report, results

MODULES = (catalogue, export, measurements, results, report)
