"""Default factories for pydantic fields that start empty: `Field(default_factory=empty_list)`.

pydantic reads a default factory's signature when it builds a model's validator (to see whether it takes the data
validated so far). For the builtins `list` and `dict` that signature is text, parsed by Python's tokenizer: about
1 M instructions a field, paid for each node type a workflow uses on every start (bench/start_time.py, issue 28).
A Python function's signature is read directly; the values made are the same.
"""

from __future__ import annotations

from typing import Any


def empty_list() -> list[Any]:
    return []


def empty_dict() -> dict[Any, Any]:
    return {}


__all__ = ["empty_dict", "empty_list"]
