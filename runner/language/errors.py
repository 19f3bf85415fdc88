"""Problems found in a workflow, each tied to a place in a file or on the command line."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import Location, Problem, Problems, Refused, dotted, option_location
from ..core.suggest import did_you_mean

__all__ = ["Invalid", "Location", "Problem", "WorkflowError", "did_you_mean", "dotted", "exactly_one", "option_location"]

class Invalid(Refused, ValueError):
    """Raised by a field validator: what is wrong (the message) and how to fix it (`hint`, the problem's fix line)."""


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
class WorkflowError(Problems):
    """One or more problems that make a workflow invalid: its text, overrides, the files and models it names
    (exit status 2)."""
