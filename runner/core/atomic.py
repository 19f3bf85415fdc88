"""Writing files and folders so that a reader sees the old version or the whole new one, never a torn one."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterator


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path` (atomic on POSIX).

    The file gets the permission bits a plain `open(path, "w")` would give: those of the file it replaces, else
    0666 less the umask (the temporary file is made 0600, which would keep teammates out of shared folders)."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
            try:
                os.chmod(out.fileno(), _mode_for(path))
            except OSError:
                pass  # a file system without permission bits
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def staged_folder(final: Path, *, replace: bool = False,
                  guard: Callable[[], ContextManager] | None = None) -> Iterator[Path]:
    """A temporary folder beside `final` to fill; on a clean exit it is renamed to `final`.

    When `final` exists already (another writer of the same content landed first), the staged copy is
    dropped and the existing folder kept, unless `replace`: then the old folder is moved aside first.
    `guard()` (a lock) is held around the swap only, not while the folder is filled.
    """
    final = Path(final)
    for attempt in range(5):
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{final.name[:24]}.", suffix=".tmp", dir=final.parent))
            try:  # mkdtemp makes it 0700: give it what a plain mkdir would (0777 less the umask), for shared caches
                os.chmod(staging, 0o777 & ~_umask())
            except OSError:
                pass  # a file system without permission bits
            break
        except FileNotFoundError:
            # the parent was removed between the two calls (a `runner cache clear` removes shard folders it
            # empties): make it again
            if attempt == 4:
                raise
    try:
        yield staging
        with guard() if guard is not None else nullcontext():
            old = None
            if replace and final.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{final.name[:24]}.", suffix=".old", dir=final.parent))
                try:
                    os.rename(final, old / "entry")
                except OSError:
                    pass  # gone meanwhile
            try:
                os.rename(staging, final)
            except OSError:
                if not final.is_dir():
                    raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    """The process's umask: from /proc on Linux (setting it to read it would race with other threads' writes), else
    by setting it and putting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()
