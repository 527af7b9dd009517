"""Runtimes behind one interface, the measurement protocol, runs and sweeps.

Which runtimes exist, their modes and precisions, is the table in `levit_bench.runtimes`;
each runner module imports its third-party package only when a runner is made, so that a
missing runtime is one clear error and the rest of the tool works without it.
"""
