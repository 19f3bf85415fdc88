"""Content hashes of files, remembered by (path, size, mtime) so that big weights are hashed once."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from .atomic import write_atomic

HASHED_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".bin", ".ckpt", ".pt", ".pth")


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


class FileHashCache:
    """sha256 of files, remembered by (path, size, mtime) in a JSON file so big weights hash once. Safe to share
    between threads (a Session's runs plan in their callers' threads): the memo is read and written under a lock,
    files are hashed outside it."""

    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[str, list] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            try:
                entries = json.loads(self.path.read_text())
            except (OSError, ValueError, RecursionError):
                entries = {}
            self._entries = entries if isinstance(entries, dict) else {}
        return self._entries

    def file_digest(self, path: Path) -> str:
        stat = path.stat()
        key = str(path.resolve())
        with self._lock:
            known = self._load().get(key)
        if (isinstance(known, list) and len(known) == 3 and known[0] == stat.st_size and known[1] == stat.st_mtime_ns
                and isinstance(known[2], str)):
            return known[2]
        digest = sha256_file(path)
        with self._lock:
            self._load()[key] = [stat.st_size, stat.st_mtime_ns, digest]
            self._dirty = True
        return digest

    def tree_digest(self, root: Path, suffixes: tuple[str, ...] = HASHED_SUFFIXES) -> str:
        """One digest over every weight/config file (relative path + content hash); `suffixes`: which files count."""
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes)
        hasher = hashlib.sha256()
        for file in files:
            relative = file.name if root.is_file() else file.relative_to(root).as_posix()
            hasher.update(f"{relative}\0{self.file_digest(file)}\n".encode())
        self.save()
        return hasher.hexdigest()[:16]

    def save(self) -> None:
        with self._lock:
            if not self._dirty or self._entries is None:
                return
            text = json.dumps(self._entries)
            self._dirty = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, text)
        except OSError:
            return  # a read-only cache folder: the memo only saves time, the hashes stay right in this process
