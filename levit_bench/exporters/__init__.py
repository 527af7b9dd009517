"""From a PyTorch model to a verified, simplified ONNX file and its sidecar."""

from levit_bench.exporters.fuse import fuse_for_inference

__all__ = ["fuse_for_inference"]
