"""Looking after a whole cache folder: what it holds (`runner cache info`), checking every entry (`verify`), evicting
the least recently used (`prune`) and deleting node results (`clear`). Entries another process is using are skipped
or waited for; nothing but runner's own entries is ever deleted."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator

from filelock import Timeout

from .cache import ENTRY_FILE, KEY, MARKER_FILE, CannotRemove, NodeCache, NotACache, remove


def _listing(folder: Path) -> list[Path]:
    """The folder's children, sorted; none when it is gone (another process's `cache clear` removes emptied shards
    while this one walks them) or not a folder."""
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def keys(cache: NodeCache) -> Iterator[str]:
    """Every key with a folder (whole or not) under nodes/."""
    if not cache.nodes.is_dir():
        return
    for shard in _listing(cache.nodes):
        if not (shard.is_dir() and not shard.is_symlink() and re.fullmatch(r"[0-9a-f]{2}", shard.name)):
            continue
        for entry in _listing(shard):
            if KEY.match(entry.name) and entry.name.startswith(shard.name):
                yield entry.name


def stats(cache: NodeCache) -> tuple[int, int]:
    entries = size = 0
    if cache.nodes.is_dir():
        for entry in cache.nodes.glob("*/*/" + ENTRY_FILE):
            entries += 1
            size += _tree_size(entry.parent)
    return entries, size


def info(cache: NodeCache) -> dict[str, tuple[int, int]]:
    """What the cache folder holds, by kind: {kind: (count, bytes)}; everything under it is counted somewhere."""
    counts: dict[str, list[int]] = {}

    def add(kind: str, count: int, size: int) -> None:
        counts.setdefault(kind, [0, 0])
        counts[kind][0] += count
        counts[kind][1] += size

    if not cache.root.is_dir():
        return {}
    for child in sorted(cache.root.iterdir()):
        if child == cache.nodes and child.is_dir() and not child.is_symlink():
            for shard in _listing(child):
                for entry in _listing(shard) if shard.is_dir() and not shard.is_symlink() else [shard]:
                    if entry.parent == child:
                        add("other files", 1, _tree_size(entry))
                    elif KEY.match(entry.name) and (entry / ENTRY_FILE).is_file():
                        add("node results", 1, _tree_size(entry))
                    elif entry.name.startswith(".") and entry.name.endswith((".tmp", ".old")):
                        add("unfinished writes", 1, _tree_size(entry))
                    else:
                        add("other files", 1, _tree_size(entry))
        elif child.name == "models" and child.is_dir():
            for model in child.iterdir():
                if model.name == "tiny" and model.is_dir() and not model.is_symlink():  # one folder per tiny model
                    for tiny in model.iterdir():
                        if tiny.name.startswith("."):  # a build in progress (or left by a killed one)
                            add("unfinished writes", 1, _tree_size(tiny))
                        else:
                            add("built tiny models", 1, _tree_size(tiny))
                else:
                    add("built models", 1, _tree_size(model))
        elif child.name == "signatures" and child.is_dir():
            for file in child.iterdir():
                add("pipeline signatures", 1, _tree_size(file))
        elif child.name == "file-hashes.json":
            try:
                known = len(json.loads(child.read_text()))
            except (OSError, ValueError, TypeError):
                known = 0
            add("remembered file hashes", known, _tree_size(child))
        elif child == cache.locks and child.is_dir():
            add("lock files", sum(1 for p in child.rglob("*.lock")), _tree_size(child))
        elif child == cache.quarantine_dir and child.is_dir():
            for item in child.iterdir():
                add("quarantined entries", 1, _tree_size(item))
        elif child.name == MARKER_FILE:
            continue
        else:
            add("other files", 1, _tree_size(child))
    return {kind: (count, size) for kind, (count, size) in counts.items()}


def verify(cache: NodeCache) -> tuple[int, list[tuple[str, str]]]:
    """Check every entry's files against its record (hashing all of them); damaged ones are quarantined.
    Returns (entries checked, [(key, problem)]); entries in use by another process are checked after it."""
    checked, damaged = 0, []
    for key in list(keys(cache)):
        with cache.acquire(key):
            problem = cache.problem(key, full=True)
            if problem == "gone":
                continue
            checked += 1
            if problem is not None:
                damaged.append((key, problem))
                cache.quarantine(key, problem)
    return checked, damaged


def prune(cache: NodeCache, *, max_size: int | None = None, older_than_s: float | None = None,
          now: float | None = None) -> tuple[int, int, int]:
    """Evict entries last used more than `older_than_s` ago, then the least recently used until the entries
    total at most `max_size` bytes. Entries in use (locked by another process) are kept.
    Returns (removed, bytes freed, skipped because in use)."""
    now = time.time() if now is None else now
    entries = []
    for key in keys(cache):
        folder = cache.entry_dir(key)
        try:
            used = (folder / ENTRY_FILE).stat().st_mtime
        except OSError:
            used = 0.0  # damaged: the first to go
        entries.append((used, key, _tree_size(folder)))
    entries.sort()
    total = sum(size for _used, _key, size in entries)
    removed = freed = skipped = 0
    for used, key, size in entries:
        old = older_than_s is not None and now - used > older_than_s
        big = max_size is not None and total > max_size
        if not (old or big):
            continue
        done = _remove_unless_in_use(cache, key)
        if done:
            removed += 1
            freed += size
            total -= size
        elif done is None:
            skipped += 1
        else:
            raise CannotRemove(cache.entry_dir(key))
    return removed, freed, skipped


def _remove_unless_in_use(cache: NodeCache, key: str) -> bool | None:
    """True: removed; None: in use by another process (kept); False: cannot be removed (read-only)."""
    try:
        lock = cache.lock(key)
        lock.acquire(timeout=0)
    except Timeout:
        return None
    except OSError:  # no lock file can be made (a read-only cache): nobody else can be writing here either
        return remove(cache.entry_dir(key))
    try:
        cache.forget(key)
        return remove(cache.entry_dir(key))
    finally:
        lock.release()


def clear(cache: NodeCache) -> tuple[int, int]:
    """Delete the node results runner stored (entries it recognises, stray staging folders, quarantined entries)
    and nothing else; entries in use by a running process are kept. Returns (removed, skipped as in use)."""
    if not cache.nodes.is_dir():
        return 0, 0
    if not (cache.root / MARKER_FILE).is_file():
        raise NotACache(f"{cache.root} has no {MARKER_FILE} marker, so it is not a runner cache (or one written before "
                        "the marker existed): nothing was deleted")
    count = skipped = 0
    for shard in _listing(cache.nodes):
        if not (shard.is_dir() and not shard.is_symlink() and re.fullmatch(r"[0-9a-f]{2}", shard.name)):
            continue
        for entry in _listing(shard):
            if entry.is_symlink() or not entry.is_dir():
                continue
            if KEY.match(entry.name) and entry.name.startswith(shard.name) and (entry / ENTRY_FILE).is_file():
                done = _remove_unless_in_use(cache, entry.name)
                if done:
                    count += 1
                elif done is None:
                    skipped += 1
                else:
                    raise CannotRemove(entry)
            elif entry.name.startswith(".") and entry.name.endswith(".old"):
                remove(entry)
            elif entry.name.startswith(".") and entry.name.endswith(".tmp") and time.time() - _mtime(entry) > 3600:
                remove(entry)  # a writer's staging folder: only once no live writer can still be filling it
        try:
            shard.rmdir()  # only when nothing else is left in it
        except OSError:
            pass
    if cache.quarantine_dir.is_dir() and not cache.quarantine_dir.is_symlink():
        for item in cache.quarantine_dir.iterdir():
            if (item / "reason.txt").is_file():
                remove(item)
    return count, skipped


def _tree_size(path: Path) -> int:
    try:
        if path.is_symlink() or path.is_file():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
