"""`--set dotted.path=value` overrides, applied to the document before validation."""

from __future__ import annotations

import copy
import re
from typing import Any

from .errors import Location, Problem, WorkflowError, did_you_mean, option_location
from .yaml_source import MAX_DEPTH, SourceMap, load_yaml

_INDEX = re.compile(r"\[(\d+)\]")
_INDEX_DIGITS_MAX = 18  # a list index beyond this many digits names no item of any list that fits in memory


def split_path(raw_path: str, where: Location) -> tuple:
    """'nodes.a.controlnet[0].image' -> ('nodes', 'a', 'controlnet', 0, 'image'). Raises WorkflowError."""
    parts: list[Any] = []
    for piece in _INDEX.sub(r".\1", raw_path.strip()).split("."):
        if piece == "":
            raise WorkflowError([Problem(where, (), f"'{_short(raw_path)}' is not a dotted path", "e.g. nodes.restyled.steps")])
        if piece.isascii() and piece.isdigit():
            if len(piece) > _INDEX_DIGITS_MAX:
                raise WorkflowError([Problem(where, (), f"list index {_short(piece)} is too large",
                                             "a list index is the item's position: 0, 1, 2, ...")])
            parts.append(int(piece))
        else:
            parts.append(piece)
    if len(parts) > MAX_DEPTH:
        raise WorkflowError([Problem(where, (), f"the path has {len(parts)} parts, more than a workflow nests ({MAX_DEPTH} levels)",
                                     "use a path that the workflow file has, e.g. nodes.NODE.FIELD or params.NAME")])
    return tuple(parts)


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def parse_override(text: str) -> tuple[tuple, Any]:
    """'nodes.a.size=[64, 64]' -> (('nodes', 'a', 'size'), [64, 64]). Raises WorkflowError."""
    where = option_location("--set", text)
    if "=" not in text:
        raise WorkflowError([Problem(where, (), "an override needs the form PATH=VALUE", "e.g. --set params.prompt='a red barn'")])
    raw_path, raw_value = text.split("=", 1)
    parts = split_path(raw_path, where)
    try:
        # the value sits under as many levels as the path has parts: they count towards the nesting limit
        value, _ = load_yaml(raw_value, "value", outer_depth=len(parts)) if raw_value.strip() else ("", None)
    except WorkflowError as exc:
        for problem in exc.problems:  # the value alone was parsed: point at the option, and into the value
            if problem.location.line > 1:
                problem.message += f" (line {problem.location.line}, column {problem.location.column} of the value)"
            elif problem.location.line:
                problem.message += f" (column {problem.location.column} of the value)"
            problem.location = where
            if problem.message.startswith("YAML syntax error"):
                problem.hint = "quote the value, e.g. --set params.prompt='\"a: b\"'"
        raise
    return parts, value


def apply_overrides(document: Any, overrides: list[str], smap: SourceMap) -> Any:
    """Return a copy of `document` with each override applied; record their locations in `smap`.

    Every segment but the last must already exist; the last may name a new key
    of an existing mapping (a field left at its default, a new param).
    """
    document = copy.deepcopy(document)
    problems: list[Problem] = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except WorkflowError as exc:
            problems.extend(exc.problems)
            continue
        where = option_location("--set", text)
        target = document
        ok = True
        for depth, part in enumerate(path[:-1]):
            found, target = _step(target, part)
            if not found:
                problems.append(_missing(where, path[: depth + 1], target, part))
                ok = False
                break
        if not ok:
            continue
        last = path[-1]
        if isinstance(target, dict) and not isinstance(last, int):
            target[last] = value
        elif isinstance(target, list) and isinstance(last, int) and last < len(target):
            target[last] = value
        else:
            problems.append(_missing(where, path, target, last))
            continue
        for key in [k for k in smap.marks if k[: len(path)] == path]:
            del smap.marks[key]
        smap.marks[path] = where
    if problems:
        raise WorkflowError(problems)
    return document


def _step(container: Any, part: Any) -> tuple[bool, Any]:
    if isinstance(container, dict) and part in container:
        return True, container[part]
    if isinstance(container, list) and isinstance(part, int) and part < len(container):
        return True, container[part]
    return False, container


def _missing(where: Location, path: tuple, container: Any, part: Any) -> Problem:
    from .errors import dotted

    if isinstance(container, dict):
        hint = did_you_mean(part, container.keys())
        message = f"--set path '{dotted(path)}' does not exist: no '{part}' here{hint}"
    elif isinstance(container, list):
        message = f"--set path '{dotted(path)}' does not exist: the list has {len(container)} items"
    else:
        message = f"--set path '{dotted(path)}' does not exist: '{dotted(path[:-1])}' is a single value, not a mapping"
    return Problem(where, (), message, "use a path that the workflow file has, e.g. nodes.NODE.FIELD or params.NAME")
