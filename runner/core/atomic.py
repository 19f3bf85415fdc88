"""Writing files and folders so that a reader sees the old version or the whole new one, never a torn one."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterator


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path` (atomic on POSIX)."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
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
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name[:24]}.", suffix=".tmp", dir=final.parent))
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
