"""Files a workflow reads: inside its own folder (or a folder the user allows), regular files of a bounded size.

A workflow is a file people share. Without these rules a shared workflow could read any file the user can
(`path: /home/me/photos/x.jpg`, or a symlink beside it pointing there), copy it into its outputs and report,
or hang the run on a FIFO or /dev/zero before anything starts (inputs are hashed when the run is planned).
Validation, planning and the node that reads the file all go through here.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Iterable

from .errors import Refused
from .limits import LIMITS, env_limit

# the largest input file read (RUNNER_MAX_INPUT_BYTES overrides, in bytes), checked by stat before hashing
MAX_INPUT_BYTES = LIMITS["RUNNER_MAX_INPUT_BYTES"][0]  # read at each use (runner.core.limits)

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


class InputRefused(Refused, ValueError):
    """An input file the rules refuse; `hint` says how to fix it."""


def allowed_roots(base_dir: Path, allow_paths: Iterable[Path] = (), *, home: bool = True) -> list[Path]:
    """The folders inputs may come from: the workflow's folder (unless `home` is False), then the ones the user
    allows, all fully resolved."""
    return [*([Path(base_dir).resolve()] if home else []), *(Path(folder).resolve() for folder in allow_paths)]


def confined_path(base_dir: Path, written: str, allow_paths: Iterable[Path] = (), *, home: bool = True) -> Path:
    """The real path of `written` (relative to `base_dir`, or absolute), symlinks resolved; InputRefused unless it lies
    inside `base_dir` (with `home`) or one of `allow_paths`. A file that does not exist is not refused here (reading it
    reports that).

    `home` False is for a workflow whose folder was named by data, not by the user (the `runner:workflow_path` text of
    a PNG, the path a run folder's manifest records): relative paths still start there, but only the folders the user
    allows may be read."""
    if "\0" in written:
        raise InputRefused(f"the path {written!r} contains a NUL character", "remove the NUL (\\0) from the path")
    if len(written) > 4096:
        raise InputRefused(f"the path is {len(written)} characters long; paths are at most 4096", "shorten the path")
    try:
        real = (Path(base_dir) / written).resolve()
    except RuntimeError as exc:  # pathlib's "Symlink loop from ..."
        raise InputRefused(f"the path {written} cannot be followed: {exc}",
                           "point the path at the file itself (a link leads round in a circle)") from None
    roots = allowed_roots(base_dir, allow_paths, home=home)
    if any(real == root or root in real.parents for root in roots):
        return real
    shown = f"{written} (resolves to {real})" if str(real) != written else written
    fix = f"allow its folder with --allow-path {real.parent} (Python: allow_paths=[...])"
    if not home:
        raise InputRefused(f"{shown} is outside the folders this workflow may read from ({', '.join(map(str, roots))}): "
                           "a workflow recovered from an image or a run folder reads input files only from the folders "
                           "you allow, never from one its own text names",
                           f"if you trust this workflow, {fix}")
    widened = "" if len(roots) == 1 else f" or the allowed folders {', '.join(str(r) for r in roots[1:])}"
    raise InputRefused(f"{shown} is outside the workflow's folder {roots[0]}{widened}: a workflow reads files only "
                       f"from its own folder",
                       f"put the file beside the workflow, or {fix}")


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _size(count: int) -> str:
    return f"{count / 2**20:.0f} MiB" if count >= 2**20 else f"{count:,} bytes"


def check_regular(info: os.stat_result, written: str) -> None:
    """InputRefused unless `info` is a regular file of at most MAX_INPUT_BYTES."""
    if not stat.S_ISREG(info.st_mode):
        raise InputRefused(f"{written} is {kind_of(info.st_mode)}: only regular files are read",
                           "point the path at an image file")
    limit = env_limit("RUNNER_MAX_INPUT_BYTES", MAX_INPUT_BYTES)
    if info.st_size > limit:
        raise InputRefused(f"{written} is {_size(info.st_size)}, more than the limit of "
                           f"{_size(limit)} for an input file",
                           "use a smaller file, or raise RUNNER_MAX_INPUT_BYTES")


def check_input(base_dir: Path, written: str, allow_paths: Iterable[Path] = (), *, home: bool = True) -> Path:
    """What validation asks: confined, and when the file exists, a regular file of a bounded size (by stat: nothing
    is opened, so a FIFO or a device cannot block). Returns the real path."""
    real = confined_path(base_dir, written, allow_paths, home=home)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        return real  # reported when the run is planned: "No such file or directory"
    except OSError as exc:
        raise InputRefused(f"{written}: {exc.strerror}", "fix the path (relative to the workflow file's folder)") from None
    check_regular(info, written)
    return real


def _open_checked(path: Path, written: str) -> int:
    """A descriptor of the regular file at `path`, opened without blocking (a FIFO swapped in after validation cannot
    hang the open) and checked by fstat (what is read is what was checked)."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        check_regular(os.fstat(fd), written)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_input(path: Path, written: str | None = None) -> bytes:
    """The bytes of an input file, by the rules above (at most MAX_INPUT_BYTES, also when it grows meanwhile)."""
    written = written or str(path)
    limit = env_limit("RUNNER_MAX_INPUT_BYTES", MAX_INPUT_BYTES)
    fd = _open_checked(Path(path), written)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputRefused(f"{written} grew beyond the limit of {_size(limit)} while being read")
    return data


def sha256_input(path: Path, written: str | None = None) -> str:
    """sha256 of an input file, by the rules above."""
    written = written or str(path)
    limit = env_limit("RUNNER_MAX_INPUT_BYTES", MAX_INPUT_BYTES)
    fd = _open_checked(Path(path), written)
    hasher, size = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            size += len(block)
            if size > limit:
                raise InputRefused(f"{written} grew beyond the limit of {_size(limit)} while being read")
            hasher.update(block)
    return hasher.hexdigest()
