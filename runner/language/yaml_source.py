"""Read YAML safely into plain Python data, remembering where every value came from.

Only the YAML core types are accepted (mappings, sequences, strings, numbers,
booleans, null). Tags such as ``!!python/object`` are refused with a located
error instead of being constructed: nothing in a workflow can import code.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import yaml

from .errors import Location, Problem, WorkflowError

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null")}


class SourceMap:
    """Document path -> Location of that entry (its key for mapping entries)."""

    def __init__(self, source: str):
        self.source = source
        self.marks: dict[tuple, Location] = {}

    def add(self, path: tuple, mark: yaml.Mark) -> None:
        self.marks[path] = Location(self.source, mark.line + 1, mark.column + 1)

    def locate(self, path: tuple) -> Location:
        """The closest recorded location at or above `path`."""
        path = tuple(path)
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, Location(self.source))


def _mark_location(source: str, mark) -> Location:
    if mark is None:
        return Location(source)
    return Location(source, mark.line + 1, mark.column + 1)


def load_yaml(text: str, source: str) -> tuple[Any, SourceMap]:
    """Parse YAML text with the safe loader; return (data, source map) or raise WorkflowError."""
    smap = SourceMap(source)
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = f"YAML syntax error: {exc.problem or exc}"
            hint = "check indentation, colons and quotes on that line"
            if exc.context:
                context_mark = exc.context_mark
                started = ""
                if context_mark is not None and mark is not None and context_mark.line != mark.line:
                    started = f" that starts at line {context_mark.line + 1}, column {context_mark.column + 1}"
                    hint = f"close the brackets or quotes opened at line {context_mark.line + 1}, or fix the indentation"
                message += f" ({exc.context}{started})"
            raise WorkflowError(
                [Problem(_mark_location(source, mark), (), message, hint)]
            ) from None
        except yaml.YAMLError as exc:
            raise WorkflowError([Problem(Location(source), (), f"YAML error: {exc}")]) from None
        if root is None:
            return None, smap
        problems: list[Problem] = []
        data = _to_data(root, (), loader, smap, problems)
        if problems:
            raise WorkflowError(problems)
        return data, smap
    finally:
        loader.dispose()


def _to_data(node, path: tuple, loader: yaml.SafeLoader, smap: SourceMap, problems: list[Problem]) -> Any:
    if path not in smap.marks:
        smap.add(path, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        if node.tag != _CORE + "map":
            problems.append(_bad_tag(node, path, smap))
            return None
        loader.flatten_mapping(node)  # YAML merge keys (<<)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(_mark_location(smap.source, key_node.start_mark), path, "mapping keys must be plain text"))
                continue
            key = loader.construct_scalar(key_node)
            child = path + (key,)
            if key in result:
                problems.append(
                    Problem(_mark_location(smap.source, key_node.start_mark), child, f"duplicate key '{key}'", "keep only one of them")
                )
                continue
            smap.add(child, key_node.start_mark)
            result[key] = _to_data(value_node, child, loader, smap, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _CORE + "seq":
            problems.append(_bad_tag(node, path, smap))
            return None
        return [_to_data(item, path + (i,), loader, smap, problems) for i, item in enumerate(node.value)]
    # scalars
    if node.tag in _SCALAR_TAGS:
        return loader.construct_object(node, deep=True)
    if node.tag == _CORE + "timestamp":
        return node.value  # keep dates as the text the user wrote
    problems.append(_bad_tag(node, path, smap))
    return None


def _bad_tag(node, path: tuple, smap: SourceMap) -> Problem:
    return Problem(
        _mark_location(smap.source, node.start_mark),
        path,
        f"YAML tag '{node.tag}' is not allowed: workflows hold plain data only (no Python objects, no code)",
        "remove the tag and write the value as plain text, a number, a list or a mapping",
    )


def load_yaml_file(path: FsPath) -> tuple[Any, SourceMap]:
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError([Problem(Location(str(path)), (), "file not found", "check the path")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError([Problem(Location(str(path)), (), f"cannot read file: {exc}")]) from None
    return load_yaml(text, str(path))
