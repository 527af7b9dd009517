"""A stored measurement as a run would write it, for tests of the store, merges and reports."""

import uuid


def make_record(**overrides) -> dict:
    record = {
        "uid": uuid.uuid4().hex, "run_id": "r1", "created_at": "2026-11-21T10:00:00+00:00",
        "model": "levit_128s", "runtime": "onnxruntime", "runtime_version": "1.31.1", "mode": None,
        "platform": "xeon", "precision": "fp32", "batch": 16, "threads": 1, "cores": 1, "streams": 1,
        "host": "abc123def456",
        "cpu_model": "AMD EPYC", "artifact_sha256": "f" * 64, "protocol": "default", "status": "ok",
        "error": None, "images_per_s": 100.0, "median_ms": 160.0, "p90_ms": 170.0, "cv": 0.02,
        "max_abs_diff": 1e-5, "samples_ms": [160.0, 161.0, 159.0],
    }
    record.update(overrides)
    return record
