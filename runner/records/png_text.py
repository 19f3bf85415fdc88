"""Embed text in PNG files without re-encoding the pixels (iTXt chunks after IHDR)."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def with_text(png: bytes, texts: dict[str, str]) -> bytes:
    """The same PNG with one UTF-8 iTXt chunk per entry, placed right after the header chunk."""
    if not png.startswith(SIGNATURE):
        raise ValueError("not a PNG file")
    ihdr_end = len(SIGNATURE) + 8 + struct.unpack(">I", png[8:12])[0] + 4
    chunks = b"".join(
        # keyword, null, compression flag 0, method 0, empty language tag, empty translated keyword, text
        _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))
        for key, value in texts.items()
    )
    return png[:ihdr_end] + chunks + png[ihdr_end:]
