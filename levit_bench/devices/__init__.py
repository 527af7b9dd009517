"""Devices levit-bench can stand up itself to run builds on (not runtimes: a runner runs on them)."""
