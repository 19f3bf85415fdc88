"""The limits an operator may set through the environment (RUNNER_MAX_*): their defaults, and reading them.

A value is read where it is used, not at import (a Session or a test that sets the variable is obeyed). Empty or
unset means the default; a whole number from 1 to 10^18 the limit; anything else (32MP, -1, nan) is a CommandError
naming the variable and the fix (exit status 2), never a traceback. `check_limits` reads them all: the command line
calls it before any command, so a malformed value stops every command at its start, whatever it would have read.
"""

from __future__ import annotations

import os

from .errors import CommandError, Location, Problem

MP = 2**20
# variable -> (default, unit, what it bounds, a larger example and how to say it)
LIMITS: dict[str, tuple[int, str, str, str]] = {
    "RUNNER_MAX_GENERATION_PIXELS": (32 * MP, "pixels", "the pixels one generation call may make",
                                     f"{64 * MP} (64 MP)"),
    "RUNNER_MAX_PIXELS": (8192 * 8192, "pixels", "the largest image a grid or upscale node makes",
                          f"{16384 * 16384} (16384 x 16384)"),
    "RUNNER_MAX_INPUT_PIXELS": (8192 * 8192, "pixels", "the largest image load_image decodes",
                                f"{16384 * 16384} (16384 x 16384)"),
    "RUNNER_MAX_INPUT_BYTES": (256 * MP, "bytes", "the largest input file runner reads", f"{1024 * MP} (1 GiB)"),
}
MOST = 10**18


def env_limit(variable: str, default: int | None = None) -> int:
    """The limit `variable` sets, or `default` (LIMITS' own when None) where it is unset or empty."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return LIMITS[variable][0] if default is None else default
    try:
        value = int(text) if len(text) <= 40 else 0  # int() also takes 1_000 and other scripts' digits
    except ValueError:
        value = 0
    if 1 <= value <= MOST:
        return value
    standard, unit, bounds, example = LIMITS[variable]
    shown = text if len(text) <= 40 else f"{text[:30]}... ({len(text):,} characters)"
    described = f" ({standard // MP} MP)" if unit == "pixels" and standard % MP == 0 else \
        f" ({standard // MP} MiB)" if unit == "bytes" else ""
    raise CommandError([Problem(Location(f"{variable}={shown!r}"), (),
                                f"the environment variable is not a whole number of {unit} from 1 to 10^18",
                                f"set it to {bounds}, e.g. {variable}={example}, or unset it for the default of "
                                f"{standard:,}{described}")])


def pixels(count: int) -> str:
    """A pixel count as a person reads it: megapixels, or the count where it is under one."""
    return f"{count / 1e6:.0f} MP" if count >= 10**6 else f"{count:,} pixels"


def check_limits() -> None:
    """Read every limit variable: a malformed one is the CommandError of env_limit."""
    for variable in LIMITS:
        env_limit(variable)
