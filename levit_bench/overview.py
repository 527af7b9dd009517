"""What `levit-bench models` and `levit-bench info` report, as plain data."""

from __future__ import annotations

from levit_bench import environment, registry


def model_rows(names: list[str] | None = None) -> list[dict]:
    """One row per model (all, or the named ones in the order given)."""
    specs = [registry.get_spec(n) for n in names] if names else list(registry.REGISTRY.values())
    rows = []
    for spec in specs:
        params, macs = spec.measured_counts()
        reported = spec.reported
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "params": params,
                "macs": macs,
                "resolution": spec.resolution,
                "top1": reported.top1,
                "top1_source": "reported" if reported.top1 is not None else None,
                "reported": {
                    "params": None if reported.params_m is None else round(reported.params_m * 1e6),
                    "macs": None if reported.macs_m is None else round(reported.macs_m * 1e6),
                    "top1": reported.top1,
                    "images_per_s": dict(reported.images_per_s),
                    "extra_top1": dict(reported.extra_top1),
                    "source": reported.source,
                },
                "preprocessing": {
                    "resize": spec.preprocessing.resize,
                    "crop": spec.preprocessing.crop,
                    "interpolation": spec.preprocessing.interpolation,
                    "mean": list(spec.preprocessing.mean),
                    "std": list(spec.preprocessing.std),
                },
                "weights_url": spec.weights_url,
            }
        )
    return rows


def info() -> dict:
    return {"host": environment.host_info().as_dict(), "versions": environment.package_versions()}
