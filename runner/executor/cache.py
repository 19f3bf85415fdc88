"""The persistent, content-addressed node cache, shared safely by any number of processes.

An entry is a folder named by the node's cache key, holding one file per
output value and `entry.json` (kinds, file names, sizes and sha256 of every
file). Entries are written into a temporary folder and renamed into place, so
a reader sees a whole entry or none: a crash or Ctrl-C mid-write leaves at most
a stray temporary folder, never a torn entry.

Concurrency: each key has a lock file (`locks/ab/KEY.lock`, the filelock
package: an OS lock, released by the kernel when its process dies). A process
computes a missing entry while holding its lock, so others wait for it and then
reuse it instead of computing it again. An entry is swapped into place, replaced
(`--no-cache`), quarantined or removed only under its lock, and `cache clear`
and `cache prune` skip entries whose lock is held. Readers look first without
the lock: an entry that checks whole (and, for `read_output`, is still the same
version after the read) is used as it is; anything else is looked at again under
the lock, where damage is quarantined. So a fully cached run takes no lock (and
never imports filelock: its start, issue 28).

Integrity: every read checks the files against `entry.json` (sizes on every
read, sha256 once per process and entry version). A damaged entry (a missing or
changed file, unreadable `entry.json`, a file where its folder should be) is
moved to `quarantine/` with the reason, and the node runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from filelock import FileLock

from ..core.atomic import staged_folder
from ..core.hashing import FileHashCache, sha256_file as _sha256
from ..core.kinds import OUTPUT_KINDS
from ..core.paths import default_cache_dir

__all__ = ["CannotRemove", "NodeCache", "default_cache_dir", "EntryMissing", "NotACache", "remove"]

ENTRY_FILE = "entry.json"
MARKER_FILE = ".runner-cache"  # written with the first entry: what makes a folder runner's cache, for `cache clear`
KEY = re.compile(r"^[0-9a-f]{64}$")
SHA256 = KEY
MAX_RECORD_BYTES = 16 << 20  # an entry.json lists a few files: anything near this is damage, not a record
LOCK_POLL_S = 0.2
_LOCKS: dict[str, FileLock] = {}  # one lock object per lock file in this process: re-entrant, never self-blocking
# the file lock excludes other processes only (it is re-entrant across this process's threads); threads that share a
# cache (a sweep's variants run side by side) exclude each other with a per-key RLock taken first
_THREAD_LOCKS: dict[str, threading.RLock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class NotACache(Exception):
    """The folder holds no runner cache marker: runner deletes nothing there."""


class CannotRemove(OSError):
    """An entry cannot be removed (a read-only cache folder); what was removed before it stays removed."""

    def __init__(self, path: Path):
        super().__init__(f"cannot remove {path}: the cache folder is not writable (read-only or not yours)")
        self.path = path


class EntryMissing(Exception):
    """A cache entry a node needs is gone (cleared or pruned by another process) or was damaged and moved aside."""

    def __init__(self, key: str, reason: str = "not in the cache"):
        super().__init__(f"cache entry {key[:12]}: {reason}")
        self.key, self.reason = key, reason


def _wait_until(take: Callable[[], bool], waiting: Callable[[], None] | None) -> None:
    """Call `take()` (which waits up to LOCK_POLL_S) until it succeeds, and `waiting()` after each failure."""
    while not take():
        if waiting is not None:
            waiting()


def _took(lock: FileLock) -> bool:
    from filelock import Timeout  # imported where a lock is taken: see Concurrency above

    try:
        lock.acquire(timeout=LOCK_POLL_S, poll_interval=0.05)
        return True
    except Timeout:
        return False


def _read_record(path: Path) -> tuple[bytes, int]:
    """An entry.json's bytes (up to one past MAX_RECORD_BYTES) and its inode, which tells the versions of an entry
    apart (a replaced entry is a new folder with a new entry.json)."""
    with open(path, "rb") as handle:
        return handle.read(MAX_RECORD_BYTES + 1), os.fstat(handle.fileno()).st_ino


def record_problem(record: Any, key: str) -> str | None:
    """What is wrong with the shape of an entry's record (None: nothing), checked before any of it is used: a
    record damaged by hand, by a disk or by another program must be quarantined, never crash a reader or be served.
    The key it records must be its folder's: an entry moved under another key would serve the wrong result."""
    if not isinstance(record, dict):
        return "not a mapping"
    if record.get("key") != key:
        return f"it records the key {str(record.get('key'))[:16]!r}, not its folder's {key[:16]!r}"
    outputs = record.get("outputs")
    if not isinstance(outputs, dict):
        return "'outputs' is not a mapping"
    default = record.get("default_output")
    if not (default is None or isinstance(default, str)) or outputs and default not in outputs:
        return f"'default_output' {default!r} names none of its outputs"
    if not isinstance(record.get("info", {}), dict):
        return "'info' is not a mapping"
    for name, output in outputs.items():
        if not isinstance(output, dict):
            return f"output {name!r} is not a mapping"
        if output.get("kind") not in OUTPUT_KINDS:
            return f"output {name!r} has an unknown kind {output.get('kind')!r}"
        files, digests, sizes = output.get("files"), output.get("sha256"), output.get("sizes")
        if not isinstance(files, list) or not all(
                isinstance(f, str) and f and Path(f).name == f and f not in (".", "..") for f in files):
            return f"output {name!r}: 'files' is not a list of file names"
        if len(set(files)) != len(files) or output["kind"] != "images" and len(files) != 1:
            return f"output {name!r}: 'files' lists {len(files)} files for a {output['kind']}"
        if not isinstance(digests, list) or len(digests) != len(files) or not all(
                isinstance(d, str) and SHA256.match(d) for d in digests):
            return f"output {name!r}: 'sha256' is not one digest per file"
        if sizes is not None and (not isinstance(sizes, list) or len(sizes) != len(files) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes)):
            return f"output {name!r}: 'sizes' is not one byte count per file"
    return None


def _own_folder(path: Path) -> None:
    """Make `path` a real folder of the cache: a symbolic link (or a file) planted in its place is removed first (the
    link only, never what it points to), so runner never writes through it outside the cache."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)


class NodeCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.nodes = self.root / "nodes"
        self.locks = self.root / "locks"
        self.quarantine_dir = self.root / "quarantine"
        self._hashes = None
        self._verified: set[tuple[str, int, str]] = set()  # (key, entry.json inode, its sha256): sha256 checked in this process
        self.on_problem: Callable[[str, str], None] | None = None  # (key, what was wrong): told when an entry is quarantined

    @property
    def hashes(self):
        """The file-hash memo kept beside the entries: one per cache, shared by everything a run does."""
        if self._hashes is None:
            self._hashes = FileHashCache(self.root / "file-hashes.json")
        return self._hashes

    def entry_dir(self, key: str) -> Path:
        return self.nodes / key[:2] / key

    # -- locking -------------------------------------------------------------------------------------------------

    def lock_path(self, key: str) -> Path:
        return self.locks / key[:2] / f"{key}.lock"

    def lock(self, key: str) -> FileLock:
        """The key's lock: one object per key in this process (re-entrant), an OS lock across processes."""
        path = self.lock_path(key)
        lock = _LOCKS.get(str(path))
        if lock is None:
            _own_folder(self.locks)
            _own_folder(path.parent)
            from filelock import FileLock

            lock = _LOCKS[str(path)] = FileLock(str(path), thread_local=False)
        return lock

    @contextmanager
    def acquire(self, key: str, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the key's lock for the `with` block, waiting as long as another process (or thread) holds it; while it
        waits, `waiting()` is called every LOCK_POLL_S seconds (it may raise to give up: a stop request). Ctrl-C works."""
        with _THREAD_LOCKS_GUARD:
            in_process = _THREAD_LOCKS.setdefault(str(self.lock_path(key)), threading.RLock())
        with ExitStack() as held:
            _wait_until(lambda: in_process.acquire(timeout=LOCK_POLL_S), waiting)
            held.callback(in_process.release)
            try:
                lock = self.lock(key)
                _wait_until(lambda: _took(lock), waiting)
                held.callback(lock.release)
            except OSError:
                pass  # no lock file can be made here (a read-only cache): nothing can be written here either
            yield

    # -- reading -------------------------------------------------------------------------------------------------

    def has(self, key: str) -> bool:
        """Whether an entry is there (not checked: `lookup` checks it)."""
        return (self.entry_dir(key) / ENTRY_FILE).is_file()

    def read_entry(self, key: str) -> dict:
        """The entry's record; EntryMissing when there is none (or it cannot be read)."""
        try:
            with open(self.entry_dir(key) / ENTRY_FILE, "rb") as handle:
                text = handle.read(MAX_RECORD_BYTES + 1)
            record = json.loads(text) if len(text) <= MAX_RECORD_BYTES else None
        except FileNotFoundError:
            raise EntryMissing(key) from None
        except (OSError, ValueError, RecursionError) as exc:
            raise EntryMissing(key, f"entry.json cannot be read ({str(exc)[:200]})") from None
        problem = record_problem(record, key) if record is not None else "larger than a record can be"
        if problem is not None:
            raise EntryMissing(key, f"entry.json is damaged ({problem})")
        return record

    def entry(self, key: str) -> dict | None:
        """The entry's record without checking its files, or None: for what only describes an entry (manifests)."""
        try:
            return self.read_entry(key)
        except EntryMissing:
            return None

    def lookup(self, key: str) -> dict | None:
        """The checked entry, or None when there is none; a damaged one is quarantined (and None returned)."""
        folder = self.entry_dir(key)
        if not os.path.lexists(folder):
            return None
        whole = self._whole(key)
        if whole is not None:
            return whole[0]
        with self.acquire(key):
            return self._checked(key)

    def _whole(self, key: str) -> tuple[dict, tuple] | None:
        """(record, stamp) of the entry if it checks whole now, looked at without its lock (an entry only ever
        changes by a whole folder being swapped in or moved away, so an entry that checks whole is one that was
        written whole); None when it does not: the caller looks again under the lock, where a damaged entry is
        quarantined. Most reads are of whole entries: they take no lock, and a fully cached run imports no lock
        library (its start, issue 28)."""
        problem, record, stamp = self._inspect(key)
        if problem is not None:
            return None
        self._touch(key)
        return record, stamp

    def _touch(self, key: str) -> None:
        try:
            os.utime(self.entry_dir(key) / ENTRY_FILE)  # last use, for `cache prune`
        except OSError:
            pass  # a read-only cache, or removed meanwhile

    def _checked(self, key: str) -> dict | None:
        """(Lock held.) The entry if whole, else quarantine it and return None."""
        folder = self.entry_dir(key)
        if not os.path.lexists(folder):
            return None
        problem = self.problem(key)
        if problem is None:
            self._touch(key)
            return self.read_entry(key)
        if problem == "gone":
            return None
        self.quarantine(key, problem)
        return None

    def problem(self, key: str, *, full: bool = False) -> str | None:
        """What is wrong with an entry (None: nothing; 'gone': removed meanwhile). `full` hashes even if checked before."""
        return self._inspect(key, full=full)[0]

    def _stamp(self, key: str) -> tuple | None:
        """(key, entry.json's inode, its sha256): which version of the entry is in place now (None: none)."""
        try:
            text, inode = _read_record(self.entry_dir(key) / ENTRY_FILE)
        except OSError:
            return None
        return key, inode, hashlib.sha256(text).hexdigest()

    def _inspect(self, key: str, *, full: bool = False) -> tuple[str | None, dict | None, tuple | None]:
        """(problem, record, stamp): `problem` as `problem` says it; the record and the entry's stamp (see `_stamp`)
        when there is none."""
        folder = self.entry_dir(key)
        if folder.is_symlink() or not folder.is_dir():
            return ("gone" if not os.path.lexists(folder) else "a file where the entry's folder should be"), None, None
        try:
            text, inode = _read_record(folder / ENTRY_FILE)
        except FileNotFoundError:
            return ("gone" if not folder.exists() else "entry.json is missing"), None, None
        except OSError as exc:
            return f"entry.json cannot be read ({exc})", None, None
        if len(text) > MAX_RECORD_BYTES:
            return f"entry.json is larger than {MAX_RECORD_BYTES >> 20} MiB", None, None
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return f"entry.json is damaged ({type(exc).__name__}: {str(exc)[:200]})", None, None
        shape = record_problem(record, key)
        if shape is not None:
            return f"entry.json is damaged ({shape})", None, None
        checks = [(name, out["files"], out["sha256"], out.get("sizes")) for name, out in record["outputs"].items()]
        # the entry as written (a replaced entry has a new entry.json): hashed once per process, sizes every time
        stamp = (key, inode, hashlib.sha256(text).hexdigest())
        hash_now = full or stamp not in self._verified
        for name, files, digests, sizes in checks:
            for index, file in enumerate(files):
                path = folder / file
                if path.is_symlink() or not path.is_file():
                    return f"output file {file} is missing", None, None
                if sizes is not None and path.stat().st_size != sizes[index]:
                    return f"output file {file} has {path.stat().st_size} bytes, not the {sizes[index]} written", None, None
                if hash_now and _sha256(path) != digests[index]:
                    return f"output file {file} does not match the sha256 recorded when it was written", None, None
        if hash_now:
            self._verified.add(stamp)
        return None, record, stamp

    def output(self, key: str, name: str | None = None) -> tuple[str, list[Path]]:
        """(kind, files) of one checked output; `name` None is the node's default output. EntryMissing if gone or
        damaged. The files may be replaced or removed by another process afterwards: read them with `read_output`."""
        whole = self._whole(key)
        if whole is not None:
            return self._files_of(key, whole[0], name)
        with self.acquire(key):
            return self._output(key, name)

    def _output(self, key: str, name: str | None) -> tuple[str, list[Path]]:
        entry = self._checked(key)
        if entry is None:
            raise EntryMissing(key)
        return self._files_of(key, entry, name)

    def _files_of(self, key: str, entry: dict, name: str | None) -> tuple[str, list[Path]]:
        output = name or entry["default_output"]
        if output not in entry["outputs"]:
            raise EntryMissing(key, f"has no output {output!r}")
        record = entry["outputs"][output]
        folder = self.entry_dir(key)
        return record["kind"], [folder / file for file in record["files"]]

    def read_output(self, key: str, name: str | None, reader: Callable[[str, list[Path]], Any]) -> Any:
        """`reader(kind, files)` on one checked output, of one version of the entry: read without the lock when the
        entry checks whole before and is the same version after (readers only read: one that saw the entry swapped
        or removed meanwhile reads again), else with the entry locked (nothing replaces it meanwhile)."""
        whole = self._whole(key)
        if whole is not None:
            record, stamp = whole
            kind, files = self._files_of(key, record, name)
            try:
                value = reader(kind, files)
            except FileNotFoundError:
                pass  # removed meanwhile: look again under the lock
            else:
                if self._stamp(key) == stamp:
                    return value
        with self.acquire(key):
            kind, files = self._output(key, name)
            try:
                return reader(kind, files)
            except FileNotFoundError as exc:
                raise EntryMissing(key, f"a file vanished while it was read ({exc.filename})") from None

    # -- writing -------------------------------------------------------------------------------------------------

    def put(self, key: str, outputs: dict[str, tuple[str, Any]], write_value: Callable[[str, Any, Path], list[str]],
            info: dict, *, replace: bool = False) -> None:
        """Store outputs {name: (kind, value)} atomically; `write_value(kind, value, stem)` returns the file names written.

        An entry that landed meanwhile (another process computed the same key) is kept, unless `replace` (a
        --no-cache run re-computed it: its fresh outputs win). The files are written unlocked; the swap into place
        is done under the key's lock, so no reader sees it half-done.
        """
        self.mark()
        folder = self.entry_dir(key)
        self._clear_way(folder.parent)
        with staged_folder(folder, replace=replace, guard=lambda: self._swapping(key, replace)) as staging:
            record = {"key": key, **info, "outputs": {}}
            for name, (kind, value) in outputs.items():
                files = [Path(f).name for f in write_value(kind, value, staging / name)]
                digests = [_sha256(staging / f) for f in files]
                sizes = [(staging / f).stat().st_size for f in files]
                record["outputs"][name] = {"kind": kind, "files": files, "sha256": digests, "sizes": sizes}
            (staging / ENTRY_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))

    def export_entry(self, key: str) -> tuple[dict, dict[str, bytes]]:
        """A checked entry as data (its record and the bytes of each file), for another machine's cache."""
        with self.acquire(key):
            record = self._checked(key)
            if record is None:
                raise EntryMissing(key)
            folder = self.entry_dir(key)
            files = {name: (folder / name).read_bytes() for output in record["outputs"].values() for name in output["files"]}
            return record, files

    def import_entry(self, key: str, record: dict, files: dict[str, bytes], *, replace: bool = False) -> None:
        """Store an entry another cache exported, checking its record's shape and its files against the record's
        sha256 first."""
        problem = record_problem(record, key)
        if problem is not None:
            raise ValueError(f"entry {key[:12]}: its record is damaged ({problem})")
        for output in record["outputs"].values():
            for name, digest in zip(output["files"], output["sha256"]):
                if Path(name).name != name or name not in files or hashlib.sha256(files[name]).hexdigest() != digest:
                    raise ValueError(f"entry {key[:12]}: file {name} does not match its recorded sha256")
        self.mark()
        folder = self.entry_dir(key)
        self._clear_way(folder.parent)
        with staged_folder(folder, replace=replace, guard=lambda: self._swapping(key, replace)) as staging:
            for name, data in files.items():
                (staging / name).write_bytes(data)
            (staging / ENTRY_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))

    @contextmanager
    def _swapping(self, key: str, replace: bool) -> Iterator[None]:
        """The key's lock around the swap into place; a damaged entry in the way is quarantined, not kept."""
        with self.acquire(key):
            folder = self.entry_dir(key)
            if not replace and os.path.lexists(folder):
                problem = self.problem(key)
                if problem not in (None, "gone"):
                    self.quarantine(key, problem)
            elif replace and os.path.lexists(folder) and (folder.is_symlink() or not folder.is_dir()):
                self.quarantine(key, "a file where the entry's folder should be")
            yield

    def _clear_way(self, shard: Path) -> None:
        """A file (or link) where a shard folder should be is moved aside, so the entry can be written."""
        if os.path.lexists(shard) and (shard.is_symlink() or not shard.is_dir()):
            self._move_aside(shard, f"shard-{shard.name}", "a file where a folder of the cache should be")

    def mark(self) -> None:
        marker = self.root / MARKER_FILE
        if not marker.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            marker.write_text('{"runner_cache": 1}\n')

    # -- damage ---------------------------------------------------------------------------------------------------

    def quarantine(self, key: str, reason: str) -> None:
        """(Lock held.) Move a damaged entry to quarantine/ with the reason, and tell `on_problem`."""
        self._move_aside(self.entry_dir(key), key, reason)
        self.forget(key)
        if self.on_problem is not None:
            self.on_problem(key, reason)

    def forget(self, key: str) -> None:
        """Forget that the entry was checked (it is gone or replaced): the next read hashes it again."""
        self._verified = {stamp for stamp in self._verified if stamp[0] != key}

    def _move_aside(self, path: Path, name: str, reason: str) -> None:
        try:
            _own_folder(self.quarantine_dir)
            target = self.quarantine_dir / f"{name}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}"
            target.mkdir()
            os.rename(path, target / "entry")
            (target / "reason.txt").write_text(reason + "\n")
        except FileNotFoundError:
            pass  # removed meanwhile
        except OSError:
            remove(path)  # cannot keep it (a read-only or full cache folder): at least never read it again

def remove(path: Path) -> bool:
    """Remove a folder (or file) so that no reader ever sees it half-deleted: renamed away first, then deleted.
    False when it cannot be (a read-only cache): then it is left whole."""
    if not os.path.lexists(path):
        return True
    if path.is_symlink() or not path.is_dir():
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            return False
    gone = path.with_name(f".{path.name[:24]}.{os.getpid()}.{time.monotonic_ns()}.old")
    try:
        os.rename(path, gone)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    shutil.rmtree(gone, ignore_errors=True)
    return True
