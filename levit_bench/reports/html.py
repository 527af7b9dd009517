"""index.html: one self-contained page (figures embedded as data URIs), rendered by jinja2 with
autoescaping on, so a model or host name holding markup shows as text."""

from __future__ import annotations

import base64
import struct
from importlib import resources
from pathlib import Path

import jinja2


def _fmt(value, scale: float = 1.0, decimals: int = 1) -> str:
    return "–" if value is None else f"{value / scale:.{decimals}f}"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def embed(path: Path, caption: str) -> dict:
    data = path.read_bytes()
    width, height = png_size(data)
    return {"data": base64.b64encode(data).decode("ascii"), "file": path.name, "caption": caption,
            "width": width, "height": height}


def render(context: dict) -> str:
    template = (resources.files("levit_bench.reports") / "templates" / "index.html.j2").read_text()
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=False, lstrip_blocks=False)
    return environment.from_string(template).render(fmt=_fmt, **context)
