"""Scenarios drive runners: MLPerf LoadGen's single-stream, multi-stream, server and offline.

The load generator knows nothing of the model, and a runner nothing of the scenario: the
system under test here takes a runner's stream functions (`Runner.stream_calls`) and a batch
of images, and LoadGen decides when each query arrives.
"""
