"""The persistent, content-addressed node cache.

An entry is a folder named by the node's cache key, holding one file per
output value and `entry.json`. Entries are written into a temporary folder
and renamed into place, so a reader sees a whole entry or none: a crash or
Ctrl-C mid-write leaves at most a stray temporary folder, never a torn entry.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from ..core.atomic import staged_folder
from ..core.hashing import FileHashCache
from ..core.paths import default_cache_dir

__all__ = ["NodeCache", "default_cache_dir"]

ENTRY_FILE = "entry.json"
MARKER_FILE = ".runner-cache"  # written with the first entry: what makes a folder runner's cache, for `cache clear`
KEY = re.compile(r"^[0-9a-f]{64}$")


class NotACache(Exception):
    """The folder holds no runner cache marker: runner deletes nothing there."""


class NodeCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.nodes = self.root / "nodes"
        self._hashes = None

    @property
    def hashes(self):
        """The file-hash memo kept beside the entries: one per cache, shared by everything a run does."""
        if self._hashes is None:
            self._hashes = FileHashCache(self.root / "file-hashes.json")
        return self._hashes

    def entry_dir(self, key: str) -> Path:
        return self.nodes / key[:2] / key

    def has(self, key: str) -> bool:
        return (self.entry_dir(key) / ENTRY_FILE).is_file()

    def read_entry(self, key: str) -> dict:
        return json.loads((self.entry_dir(key) / ENTRY_FILE).read_text())

    def output(self, key: str, name: str | None = None) -> tuple[str, list[Path]]:
        """(kind, files) of one stored output; `name` None is the node's default output."""
        entry = self.read_entry(key)
        record = entry["outputs"][name or entry["default_output"]]
        folder = self.entry_dir(key)
        return record["kind"], [folder / file for file in record["files"]]

    def put(self, key: str, outputs: dict[str, tuple[str, Any]], write_value: Callable[[str, Any, Path], list[str]],
            info: dict, *, replace: bool = False) -> None:
        """Store outputs {name: (kind, value)} atomically; `write_value(kind, value, stem)` returns the file names written.

        An entry that landed meanwhile (another process computed the same key) is kept, unless `replace`
        (a --no-cache run re-computed it: its fresh outputs win).
        """
        self.mark()
        with staged_folder(self.entry_dir(key), replace=replace) as staging:
            record = {"key": key, **info, "outputs": {}}
            for name, (kind, value) in outputs.items():
                files = [Path(f).name for f in write_value(kind, value, staging / name)]
                digests = [hashlib.sha256((staging / f).read_bytes()).hexdigest() for f in files]
                record["outputs"][name] = {"kind": kind, "files": files, "sha256": digests}
            (staging / ENTRY_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))

    def stats(self) -> tuple[int, int]:
        entries = size = 0
        if self.nodes.is_dir():
            for entry in self.nodes.glob("*/*/" + ENTRY_FILE):
                entries += 1
                size += sum(f.stat().st_size for f in entry.parent.iterdir() if f.is_file())
        return entries, size

    def mark(self) -> None:
        marker = self.root / MARKER_FILE
        if not marker.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            marker.write_text('{"runner_cache": 1}\n')

    def clear(self) -> int:
        """Delete the node results runner stored (entries it recognises, stray staging folders) and nothing else."""
        if not self.nodes.is_dir():
            return 0
        if not (self.root / MARKER_FILE).is_file():
            raise NotACache(f"{self.root} has no {MARKER_FILE} marker, so it is not a runner cache (or one written before "
                            "the marker existed): nothing was deleted")
        count = 0
        for shard in sorted(self.nodes.iterdir()):
            if not (shard.is_dir() and not shard.is_symlink() and re.fullmatch(r"[0-9a-f]{2}", shard.name)):
                continue
            for entry in sorted(shard.iterdir()):
                ours = entry.is_dir() and not entry.is_symlink() and (
                    (KEY.match(entry.name) and entry.name.startswith(shard.name) and (entry / ENTRY_FILE).is_file())
                    or (entry.name.startswith(".") and entry.name.endswith((".tmp", ".old"))))
                if ours:
                    count += not entry.name.startswith(".")
                    shutil.rmtree(entry, ignore_errors=True)
            try:
                shard.rmdir()  # only when nothing else is left in it
            except OSError:
                pass
        return count
