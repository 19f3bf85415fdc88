"""Errors that carry their fix, and the located problems runner reports (exit status 2 on the command line).

`Refused` is the one base of what runner will not do as asked: its message says why, `hint` how to fix it (the
"fix:" line). Single refusals (an input file outside the allowed folders, a model that cannot be loaded, a field
value a validator rejects, a node input that cannot be used) are Refused subclasses raised where they are found;
`Problems` collects located ones (a file position, a command-line option) and prints them the way the CLI does.
Two kinds of Problems: `WorkflowError` (runner.language: the workflow and the files it names) and `CommandError`
(what a command line or an API call was given: options, folders, run names, Session arguments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


class Refused(Exception):
    """Something runner will not do as asked: the message says why, `hint` how to fix it."""

    def __init__(self, message: str = "", hint: str = ""):
        super().__init__(message)
        self.hint = hint


def fix_of(error: BaseException) -> str:
    """The fix an error carries ("" for errors that are not runner's refusals)."""
    return str(error.hint or "") if isinstance(error, Refused) else ""


def dotted(path: Iterable) -> str:
    """('nodes', 'a', 'controlnet', 0, 'image') -> 'nodes.a.controlnet[0].image'."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


@dataclass(frozen=True)
class Location:
    """Where a value came from: a file position, or a command-line option (--set, --out, ...) or API argument."""

    source: str  # file path, or '--set' for overrides
    line: int = 0  # 1-based; 0 when unknown
    column: int = 0  # 1-based

    def __str__(self) -> str:
        if self.line:
            return f"{self.source}:{self.line}:{self.column}"
        return self.source


def option_location(option: str, text: str) -> Location:
    """The place of a command-line option such as '--set PATH=VALUE', as a printable line.

    A very long one is shortened (it is echoed in every message); line breaks and
    control characters are shown as escapes (\\n, \\x01), so each problem stays one line.
    """
    if len(text) > 100:
        text = f"{text[:80]}... ({len(text):,} characters)"
    return Location(f"{option} {''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)}")


@dataclass
class Problem:
    location: Location
    path: tuple
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        at = f"{dotted(self.path)}: " if self.path else ""
        text = f"{where}{at}{self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


@dataclass
class Problems(Refused):
    """One or more located problems (exit status 2); `str()` is exactly what the CLI prints."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        Refused.__init__(self, "", "; ".join(problem.hint for problem in self.problems if problem.hint))

    def __str__(self) -> str:
        """One 'error:' block per problem, then the count."""
        count = len(self.problems)
        lines = [f"error: {problem}" for problem in self.problems]
        return "\n".join(lines + [f"{count} problem{'s' if count != 1 else ''} found"])


@dataclass
class CommandError(Problems):
    """What a command line or an API call was given cannot be used (an option, a folder, a run's name, a Session
    argument): not the workflow's fault."""


__all__ = ["CommandError", "Location", "Problem", "Problems", "Refused", "dotted", "fix_of", "option_location"]
