"""Reading a .safetensors file's header (tensor names, dtypes, shapes) without torch."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def safetensors_header(path: Path) -> dict | None:
    """The JSON header of a .safetensors file; None when it cannot be read (or claims more than 100 MB)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 << 20:
                return None
            return json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None
