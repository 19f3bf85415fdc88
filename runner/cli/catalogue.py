"""`runner nodes`: the node catalogue, read from the declarations."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..language.fields import Accepts, InputFile, ModelField, find_marker, nested_models
from ..nodes import NODE_TYPES, NodeType


def print_catalogue(console: Console) -> None:
    table = Table(title="runner node types", show_lines=False)
    table.add_column("type", style="bold cyan", no_wrap=True)
    table.add_column("purpose")
    table.add_column("outputs (default first)")
    for node_type in NODE_TYPES.values():
        outputs = ", ".join(f"{name}: {kind}" for name, kind in node_type.outputs.items()) or "-"
        table.add_row(node_type.name, escape(node_type.doc), outputs)
    console.print(table)
    console.print("Details of one type: runner nodes TYPE")


def print_node_type(console: Console, node_type: NodeType, every: bool = False) -> None:
    """One type's fields, one per line with its description below: never cut to the terminal width, easy to grep.
    A field left to the pipeline names the defaults of the classes the node's families call; `every` (--all): of
    each class its task's AutoPipelines derive, none left out."""
    console.print(f"[bold cyan]{node_type.name}[/] (implementation version {node_type.version})", soft_wrap=True)
    console.print(escape(node_type.doc), soft_wrap=True)
    _print_fields(console, f"{node_type.name} fields", node_type.fields, every)
    for name, model in nested_models(node_type.fields).items():
        _print_fields(console, f"{name}: each item", model, every)
    console.print()
    if node_type.outputs:
        outputs = ", ".join(f"{name}: {kind}" + (" (default)" if index == 0 else "")
                            for index, (name, kind) in enumerate(node_type.outputs.items()))
        console.print(f"[bold]outputs[/]: {outputs}", soft_wrap=True)
    else:
        console.print("[bold]outputs[/]: none (writes files into the run folder)", soft_wrap=True)


@dataclass(frozen=True)
class FieldFacts:
    """One field as a person reads it: shared by `runner nodes TYPE` and the generated node reference."""

    name: str  # as written in a workflow (the alias where there is one)
    type: str  # describe_type's words: "integer (optional)", "link: image", "model", ...
    required: bool
    default: str  # as Python writes it ('', 1.0, []); - for none
    pipeline_default: str  # "default: the pipeline's (7.5 for A, B; ...)" for a field left to the pipeline, else ""
    bounds: str  # ">= 1, <= 1000", or ""
    description: str

    @property
    def default_text(self) -> str:
        return "required" if self.required else self.pipeline_default or f"default {self.default}"


def field_facts(model: type[BaseModel], every: bool = False) -> list[FieldFacts]:
    """The fields of `model` in declaration order; fields left to the pipeline say each pipeline class's default
    (`every`: of every class the task's AutoPipelines derive, not only those of runner's families)."""
    from ..nodes.pipeline_defaults import field_defaults

    pipeline_defaults = field_defaults(model, every)
    facts = []
    for name, info in model.model_fields.items():
        written = info.alias or name
        facts.append(FieldFacts(written, describe_type(info.annotation, info.metadata), info.is_required(),
                                _show_default(info), pipeline_defaults.get(written, ""), _bounds(info),
                                info.description or ""))
    return facts


def _print_fields(console: Console, title: str, model: type[BaseModel], every: bool = False) -> None:
    console.print()
    console.print(f"[bold]{escape(title)}[/]", soft_wrap=True)
    rows = [(field.name, "; ".join(filter(None, (field.type, field.default_text, field.bounds))), field.description)
            for field in field_facts(model, every)]
    width = max((len(row[0]) for row in rows), default=0)
    for field_name, facts, description in rows:
        console.print(f"  [bold]{escape(field_name.ljust(width))}[/]  {escape(facts)}", soft_wrap=True)
        if description:
            console.print(f"  {' ' * width}  [dim]{escape(description)}[/]", soft_wrap=True)


def _show_default(info) -> str:
    if info.default_factory is not None:
        return repr(info.default_factory())
    if info.default is PydanticUndefined or info.default is None:
        return "-"
    return repr(info.default)


def _bounds(info) -> str:
    parts = []
    for meta in list(info.metadata) + _inner_metadata(info.annotation):
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("multiple_of", "multiple of"),
                             ("min_length", "min length"), ("pattern", "matches")):
            value = getattr(meta, attr, None)
            if value is not None and not isinstance(meta, type):
                text = f"{symbol} {value}"
                if text not in parts:
                    parts.append(text)
    return ", ".join(parts)


def _inner_metadata(annotation) -> list:
    found = list(getattr(annotation, "__metadata__", ()))
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(annotation):
            found.extend(getattr(arg, "__metadata__", ()))
    return [m for m in found if isinstance(m, (annotated_types.BaseMetadata, annotated_types.GroupedMetadata)) or hasattr(m, "pattern")]


def describe_type(annotation: Any, metadata: list | None = None) -> str:
    for meta in metadata or ():
        if isinstance(meta, Accepts):
            return _link_text(meta)
    accepts = find_marker(annotation, Accepts)
    if accepts is not None:
        text = _link_text(accepts)
        return text + (" (optional)" if _optional(annotation) else "")
    if find_marker(annotation, ModelField) or any(isinstance(m, ModelField) for m in metadata or ()):
        return "model" + (" (optional)" if _optional(annotation) else "")
    if find_marker(annotation, InputFile) or any(isinstance(m, InputFile) for m in metadata or ()):
        return "file path" + (" (optional)" if _optional(annotation) else "")
    return _plain(annotation)


def _link_text(accepts: Accepts) -> str:
    kinds = "|".join(sorted(accepts.kinds - {"images"}))
    if accepts.mapping:
        return f"mapping (a value may be a link: {kinds})"
    if accepts.many:
        return f"link(s): images or [{kinds}, ...]"
    return f"link: {kinds}"


def _optional(annotation) -> bool:
    return type(None) in typing.get_args(annotation)


def _plain(annotation) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _plain(args[0])
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [_plain(a) for a in args if a is not type(None)]
        text = " | ".join(inner)
        return text + (" (optional)" if type(None) in args else "")
    if origin in (list, tuple):
        if origin is tuple and args:
            return "[" + ", ".join(_plain(a) for a in args) + "]"
        return f"list of {_plain(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return annotation.__name__
        return {"str": "text", "int": "integer", "float": "number", "bool": "boolean"}.get(annotation.__name__, annotation.__name__)
    return str(annotation)
