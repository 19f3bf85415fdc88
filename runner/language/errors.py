"""Problems found in a workflow, each tied to a place in a file or on the command line."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable

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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close choice exists, else ''."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if not close and len(str(word)) >= 3:  # a shortened name: 'save' -> 'save_image'
        close = [c for c in choices if c.startswith(str(word))][:2]
        close = close if len(close) == 1 else []
    return f" (did you mean '{close[0]}'?)" if close else ""


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
class WorkflowError(Exception):
    """One or more problems that make a workflow or command line invalid (exit status 2)."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
