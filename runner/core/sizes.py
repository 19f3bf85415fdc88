"""Sizes in bytes as people write them: '16GB', '512MB', '1.5GiB' (GB and GiB both mean 2**30 here)."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?i?B?)?\s*$", re.I)


def parse_size(text: str | int | float | None) -> int | None:
    """'16GB', '512MB', '1.5GiB', '2048' (bytes) -> bytes; None stays None. GB and GiB both mean 2**30 here."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else int(text)
    found = _SIZE.match(str(text))
    if not found:
        raise ValueError(f"'{text}' is not a size: write e.g. 16GB, 512MB or 1.5GiB")
    number, unit = float(found.group(1)), (found.group(2) or "B").upper().replace("I", "")
    return int(number * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40,
                         "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit])


def format_size(count: int | None) -> str:
    if count is None:
        return "unknown"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count} B"
