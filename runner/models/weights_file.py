"""Reading a .safetensors file's header (tensor names, dtypes, shapes) without torch.

Files come from anywhere (a download, a model folder a stranger filled), so the header is read bounded: at most
MAX_HEADER_BYTES (a real checkpoint's header is a few MB: about 100 bytes a tensor), and checked in shape before
anyone uses it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

MAX_HEADER_BYTES = 16 << 20  # 160,000 tensors' worth; the format allows 100 MB, which parsing takes GBs for
MAX_DIMENSIONS = 16  # the rank of a tensor in any checkpoint is far below this


def safetensors_header(path: Path) -> dict | None:
    """The JSON header of a .safetensors file, {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}};
    None when it cannot be read, is larger than MAX_HEADER_BYTES, or is not of that shape (nested, non-numeric or
    infinite shapes, lists where mappings belong)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER_BYTES:
                return None
            data = handle.read(length)
    except (OSError, struct.error):
        return None
    try:
        header = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nested thousands deep (a header nests three levels)
        return None
    return header if _well_formed(header) else None


def _well_formed(header) -> bool:
    if not isinstance(header, dict):
        return False
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                return False
            continue
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str):
            return False
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS or not all(_count(side) for side in shape):
            return False
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(offset) for offset in offsets):
            return False
    return True


def _count(value) -> bool:
    """A size or offset: a whole number from 0 (not a bool, a float, a string or infinity)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63  # JSON's Infinity is a float
