"""One module per command: each `register`s its parser and handler with the CLI."""

from levit_bench.commands import catalogue, export, measurements, results

MODULES = (catalogue, export, measurements, results)
