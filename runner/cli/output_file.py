"""Writing a command's output file (`--out`, `-o`): the one way every command does it.

What the user names is what receives the bytes, and nothing else is harmed:
- `-` is standard output;
- a regular file is replaced atomically (a reader sees the old or the whole new text), keeping its permission
  bits; a file that holds something else is kept unless `--force` (an empty file, or one already holding exactly
  these bytes, loses nothing); missing parent folders are made;
- a symlink is followed: its target is written, the link stays;
- a character device (`/dev/null`, a terminal) or a FIFO is streamed into, never replaced by a regular file (a
  rename over it would replace the device node itself);
- a folder, an empty name, a block device or a socket is refused with a located message (exit 2).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

from ..core.atomic import write_atomic
from ..core.errors import CommandError, Location, Problem


def write_output(target: str | Path, data: str | bytes, *, option: str = "--out", force: bool = False) -> str:
    """Write `data` where `target` names (see the module); returns how to name where it went ("standard output",
    or the path). CommandError, located at `option TARGET`, when it cannot or must not be written."""
    raw = os.fspath(target)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    where = Location(f"{option} {raw}" if raw else f"{option} ''")

    def refuse(message: str, hint: str) -> CommandError:
        return CommandError([Problem(where, (), message, hint)])

    if raw == "-":
        sys.stdout.buffer.write(blob) if hasattr(sys.stdout, "buffer") else sys.stdout.write(blob.decode("utf-8"))
        sys.stdout.flush()
        return "standard output"
    if not raw.strip():
        raise refuse("the output file name is empty", f"name a file, e.g. {option} workflow.yaml (or {option} - for "
                                                      "standard output)")
    if "\0" in raw:
        raise refuse("the output file name contains a NUL character", "remove the NUL (\\0) from the name")
    path = Path(raw).expanduser()
    try:
        info = os.stat(path)  # follows symlinks: what the name leads to
    except FileNotFoundError:
        info = None  # nothing there yet (or a link to nothing: its target is created)
    except OSError as exc:
        loop = exc.errno == errno.ELOOP
        raise refuse(f"{raw}: {'symbolic links point at each other in a loop' if loop else exc.strerror}",
                     "name another file") from None
    if (info is not None and stat.S_ISDIR(info.st_mode)) or raw.endswith(("/", os.sep)):
        raise refuse(f"{raw} is a folder", f"name a file in it, e.g. {option} {os.path.join(raw, 'workflow.yaml')}")
    if info is not None and (stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
        _stream(path, blob, refuse)
        return raw
    if info is not None and not stat.S_ISREG(info.st_mode):
        kind = "a block device" if stat.S_ISBLK(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a file"
        raise refuse(f"{raw} is {kind}: runner writes only files, character devices and FIFOs", "name a file")
    real = path.resolve() if path.is_symlink() else path  # write the link's target; the link stays a link
    if info is not None and not force and info.st_size and not _holds(real, blob, info.st_size):
        raise refuse(f"{raw} exists and holds something else ({info.st_size:,} bytes): it is kept",
                     "add --force to replace it, or name another file")
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(real, blob)
    except OSError as exc:
        raise refuse(f"cannot write {raw}: {exc.strerror or exc}", "name a file in a folder you can write") from None
    return raw


def _stream(path: Path, blob: bytes, refuse) -> None:
    """Write into a character device or FIFO as a shell redirection would (a FIFO waits for its reader)."""
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise refuse(f"cannot write into {path}: {exc.strerror or exc}", "name a file") from None


def _holds(path: Path, blob: bytes, size: int) -> bool:
    """Whether the file already holds exactly `blob` (read only when the sizes agree)."""
    if size != len(blob):
        return False
    try:
        return path.read_bytes() == blob
    except OSError:
        return False
