"""Pydantic's validation errors in plain words: each becomes one located problem saying what is wrong with the value
as written (not pydantic's type names), with a fix line built from the field's type, bounds and description."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ..core.errors import fix_of
from .errors import Problem, did_you_mean, dotted
from .refs import Link, unresolve
from .yaml_source import SourceMap


def pydantic_problems(exc: ValidationError, base: tuple, data: Any, smap: SourceMap, what: str,
                      root: type[BaseModel]) -> list[Problem]:
    """Turn pydantic errors into located problems; union-member tags in `loc` are dropped, messages merged."""
    grouped: dict[tuple, list[dict]] = {}
    for error in exc.errors():
        path, missing_key = _real_path(error["loc"], data, error["type"])
        if isinstance(missing_key, int):  # a too-short tuple: one problem for all its missing items
            missing_key = _MISSING_ITEMS
        grouped.setdefault((path, missing_key), []).append(error)
    # A union such as `str | ModelEntry` fails on every member; when a member got further (errors
    # deeper inside the value), the "should be a valid string" of the other members is noise.
    deeper = {path[:i] for path, _ in grouped for i in range(len(path))}
    grouped = {key: errors for key, errors in grouped.items()
               if not (key[1] is None and key[0] in deeper and all(e["type"].endswith("_type") for e in errors))}
    problems = []
    for (path, missing_key), errors in grouped.items():
        full = base + path
        first = errors[0]
        kind = first["type"]
        info = _field_at(root, path)
        if missing_key is _MISSING_ITEMS:
            given = first.get("input")
            needed = max(e["loc"][-1] for e in errors) + 1
            expected = f": {info.description}" if info is not None and info.description else ""
            problems.append(Problem(smap.locate(full), full,
                                    f"too few items: {needed} needed, got {len(given) if isinstance(given, list) else 0} "
                                    f"({_show(given)})", f"give {needed} items{expected}"))
        elif kind == "missing":
            key = missing_key
            hint = "add 'version: 1' at the top of the file" if key == "version" and not base else ""
            if key == "nodes" and not base:
                hint = "add a 'nodes:' section, e.g. nodes: {photo: {type: load_image, path: in.png}}"
            elif not hint:
                missing = _field_at(root, path + (key,))
                hint = f"add '{key}:' to {_describe(full, what)}" + (
                    f" ({missing.description})" if missing is not None and missing.description else "")
            problems.append(Problem(smap.locate(full), full, f"missing required field '{key}' on {_describe(full, what)}", hint))
        elif kind == "extra_forbidden":
            key = full[-1]
            known = _known_fields(root, path)
            params = data.get("params") if not base and isinstance(data, dict) else None
            if len(full) == 1 and isinstance(params, dict) and key in params:  # --set steps=4 for a param 'steps'
                problems.append(Problem(smap.locate(full), full, f"unknown field '{key}' on {_describe(full[:-1], what)}; "
                                        f"the workflow has a param '{key}'",
                                        f"params are set as params.{key} (--set params.{key}=VALUE)"))
                continue
            problems.append(Problem(smap.locate(full), full,
                                    f"unknown field '{key}' on {_describe(full[:-1], what)}{did_you_mean(key, known)}",
                                    f"known fields: {', '.join(known)}" if known else ""))
        else:
            value = first.get("input")
            if isinstance(value, Link):
                message = f"takes a plain value, not a link: '{value}' refers to a node output here"
                hint = f"write $${str(value)[1:]} for literal text"
            elif kind == "literal_error" and len(errors) == 1:
                choices = [c.strip(" '") for c in first["ctx"]["expected"].replace(" or ", ", ").split(", ")]
                if path == ("version",):
                    message = f"version {_show(value)} is not supported: the only workflow format version is 1"
                    hint = "set 'version: 1'"
                else:
                    message = f"{_show(value)} is not allowed{did_you_mean(value, choices)}"
                    hint = "choose one of: " + ", ".join(choices)
            else:
                messages = []
                for error in errors:
                    msg = _plain_message(error)
                    if messages and msg.startswith("should be "):
                        msg = msg[len("should be "):]
                    if msg not in messages:
                        messages.append(msg)
                message = " or ".join(messages)
                # the value is shown unless our own validator's message does, or it is a whole mapping (a rule across fields)
                if kind != "value_error" and not isinstance(value, dict):
                    message += f" (got {_show(value)})"
                hint = _hint_for(full, value) or _validator_hint(first) or _type_hint(first, info, value)
                if not hint and info is not None and info.description and kind in _DESCRIBED_KINDS:
                    hint = f"expected: {info.description}"
            problems.append(Problem(smap.locate(full), full, message, hint))
    return problems


_MISSING_ITEMS = "<missing items>"

# errors whose pydantic message says little about what the value should be: the field description is the hint
_DESCRIBED_KINDS = ("string_pattern_mismatch", "too_long", "too_short", "string_too_short", "string_too_long")


def _describe(path: tuple, what: str) -> str:
    if not path or (path[0] == "nodes" and len(path) <= 2):
        return f"the {what}"
    if path[0] == "nodes":
        return f"{dotted(path)} of the {what}"
    return dotted(path)


def _real_path(loc: tuple, data: Any, kind: str) -> tuple[tuple, Any]:
    """Keep the loc segments that exist in the data; the rest are pydantic's union-member tags."""
    path: list[Any] = []
    current = data
    for index, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            path.append(part)
            current = current[part]
        elif kind == "missing" and index == len(loc) - 1:
            return tuple(path), part
        elif kind == "extra_forbidden" and index == len(loc) - 1:
            return tuple(path) + (part,), None
    return tuple(path), None


def _known_fields(root: type[BaseModel], path: tuple) -> list[str]:
    """Field names of the model at `path` (for did-you-mean on unknown fields)."""
    model = _model_at(root, path[:-1])
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items() if name != "type"]


def _model_at(root: type[BaseModel], path: tuple):
    """The model whose fields hold the values at `path` (list indexes and mapping keys stepped over)."""
    import typing

    model = root
    key_next = False  # the previous field was a mapping: this part is one of its keys
    for part in path:
        if model is None:
            return None
        if isinstance(part, int) or key_next:
            key_next = False
            continue
        info = _field_info(model, part)
        if info is None:
            return None
        key_next = typing.get_origin(info.annotation) is dict
        model = inner_model(info.annotation)
    return model


def _field_at(root: type[BaseModel], path: tuple):
    """The pydantic FieldInfo of the field at `path`, or None."""
    if not path or isinstance(path[-1], int):
        path = path[:-1] if path else path
    if not path or isinstance(path[-1], int):
        return None
    model = _model_at(root, path[:-1])
    return _field_info(model, path[-1]) if model is not None else None


def _field_info(model, name: str):
    return model.model_fields.get(name) or next((i for i in model.model_fields.values() if i.alias == name), None)


def inner_model(annotation):
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = inner_model(arg)
        if found is not None:
            return found
    return None


# pydantic's words for a value of the wrong type or size, in the words of a YAML file
_PLAIN_TYPES = {
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "text", "tuple_type": "a list", "list_type": "a list", "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)", "model_attributes_type": "a mapping (key: value)",
}
_PLAIN_BOUNDS = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le"),
                 "greater_than": ("more than", "gt"), "less_than": ("less than", "lt"),
                 "multiple_of": ("a multiple of", "multiple_of")}


def _plain_message(error: dict) -> str:
    """What the value should be, in plain words where pydantic speaks Python ('a valid tuple', 'greater than or
    equal to 0'); pydantic's own message otherwise."""
    kind = error["type"]
    if kind in _PLAIN_TYPES:
        return f"should be {_PLAIN_TYPES[kind]}"
    if kind in _PLAIN_BOUNDS:
        words, key = _PLAIN_BOUNDS[kind]
        return f"should be {words} {_number(error.get('ctx', {}).get(key))}"
    message = _clean_message(error)
    return "should be " + message[len("Input should be "):] if message.startswith("Input should be ") else message


def _validator_hint(error: dict) -> str:
    """The fix a node's own validator gave with its message (runner.language.errors.Invalid)."""
    raised = error.get("ctx", {}).get("error")
    return fix_of(raised) if isinstance(raised, BaseException) else ""


def _type_hint(error: dict, info, value: Any) -> str:
    """A fix line for a value of the wrong type or out of bounds: what to write, with the field's bounds and doc."""
    kind = error["type"]
    about = f" ({info.description})" if info is not None and info.description else ""
    bounds = _bounds(info)
    if kind in ("multiple_of",) and isinstance(value, (int, float)):
        step = error.get("ctx", {}).get("multiple_of")
        below, above = int(value // step * step), int(value // step * step + step)
        return f"use a multiple of {step}, e.g. {below} or {above}" if below > 0 else f"use a multiple of {step}, e.g. {above}"
    if kind in _PLAIN_BOUNDS:
        return f"use a value {bounds}{about}" if bounds else f"use a value {_plain_message(error)[len('should be '):]}{about}"
    if kind in _PLAIN_TYPES:
        what = _PLAIN_TYPES[kind]
        if kind in ("tuple_type", "list_type") and not isinstance(value, (list, tuple)):
            items = _tuple_length(info.annotation) if info is not None else None
            example = ", ".join([_show(value)] * items) if items else f"{_show(value)}, ..."
            return f"write a list in brackets, e.g. [{example}]{about}"
        if kind == "string_type":
            if isinstance(value, (dict, list)):
                return f"write text here, not a {'mapping' if isinstance(value, dict) else 'list'}{about}"
            return f"write text; quote it ('{_show(value)}') when YAML would read it as a number or true/false{about}"
        return f"write {what}{' ' + bounds if bounds and kind.startswith(('int', 'float')) else ''}{about}"
    return ""


def _tuple_length(annotation) -> int | None:
    """N for a fixed-length tuple annotation (inside Optional/Annotated), else None."""
    import typing

    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        return None if not args or args[-1] is Ellipsis else len(args)
    for arg in typing.get_args(annotation):
        found = _tuple_length(arg)
        if found:
            return found
    return None


def _bounds(info) -> str:
    """'from 1 to 1000', 'of at least 0', ... from a field's annotated bounds ('' when it has none)."""
    if info is None:
        return ""
    low = high = None
    for meta in info.metadata:
        low = getattr(meta, "ge", None) if getattr(meta, "ge", None) is not None else low
        high = getattr(meta, "le", None) if getattr(meta, "le", None) is not None else high
        if getattr(meta, "gt", None) is not None:
            low = f"above {meta.gt}"
        if getattr(meta, "lt", None) is not None:
            high = f"below {meta.lt}"
    low = _number(low) if low is not None and not isinstance(low, str) else low
    high = _number(high) if high is not None and not isinstance(high, str) else high
    if low is not None and high is not None:
        return f"from {low} to {high}" if not low.startswith("above") and not high.startswith("below") else f"{low} and {high}"
    if low is not None:
        return low if low.startswith("above") else f"of at least {low}"
    if high is not None:
        return high if high.startswith("below") else f"of at most {high}"
    return ""


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _clean_message(error: dict) -> str:
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return message.replace(" or instance of ", " (") + ")" if " or instance of " in message else message


def _show(value: Any) -> str:
    text = repr(unresolve(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _hint_for(path: tuple, value: Any) -> str:
    if path == ("version",):
        return "set 'version: 1' (the only format version)"
    if len(path) == 2 and path[0] == "models" and value == "":
        return ("give the model a source: a hub id (org/name), a folder, a .safetensors file or tiny:NAME; or remove "
                "the entry")
    return ""
