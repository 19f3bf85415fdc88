"""Problems found in a workflow, each tied to a place in a file or on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..core.suggest import did_you_mean

__all__ = ["Invalid", "Location", "Problem", "WorkflowError", "did_you_mean", "dotted", "exactly_one", "option_location"]

Path = tuple  # a dotted document path as a tuple of str keys and int indexes


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
    """Where a value came from: a file position, or a --set override."""

    source: str  # file path, or '--set' for overrides
    line: int = 0  # 1-based; 0 when unknown
    column: int = 0  # 1-based

    def __str__(self) -> str:
        if self.line:
            return f"{self.source}:{self.line}:{self.column}"
        return self.source


def option_location(option: str, text: str) -> "Location":
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


class Invalid(ValueError):
    """Raised by a field validator: what is wrong (the message) and how to fix it (`hint`, the problem's fix line)."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def _listed(names: list[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def exactly_one(values: dict, message: str | None = None) -> None:
    """Invalid unless exactly one of `values` (field name -> value) is set; the fix says which to add or remove."""
    given = [name for name, value in values.items() if value is not None]
    if len(given) == 1:
        return
    names = list(values)
    if given:
        hint = f"keep one of {_listed(given)} and remove the other" + ("s" if len(given) > 2 else "")
    else:
        hint = f"add {_listed(names)}"
    raise Invalid(message or f"give exactly one of {_listed(names)}", hint)


@dataclass
class WorkflowError(Exception):
    """One or more problems that make a workflow or command line invalid (exit status 2)."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        """Exactly what the CLI prints for it: one 'error:' block per problem, then the count."""
        count = len(self.problems)
        lines = [f"error: {problem}" for problem in self.problems]
        return "\n".join(lines + [f"{count} problem{'s' if count != 1 else ''} found"])
