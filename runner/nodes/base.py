"""A node type is declared once; schema, `runner nodes`, validation, links and cache keys derive from it."""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, create_model

from ..core.kinds import OUTPUT_KINDS
from ..language.fields import Fields


@dataclass(frozen=True)
class Batching:
    """A node type whose tasks may share one call when they differ only in their seed and the `varying` fields (a
    sweep's variants): `run(contexts, fields, lead) -> [outputs of each]`, one context and fields per task, `lead`
    the index of the task the executor was asked for (its context reports progress). Whether a call really batches
    is the run's to decide (a model family may not): it may compute the tasks one by one."""

    run: Callable[[list, list, int], list[dict[str, Any]]]
    varying: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeType:
    name: str
    fields: type[Fields]
    outputs: dict[str, str]  # output name -> kind; the first is the default output
    version: int  # implementation version: bump when the same fields would give other results
    doc: str
    run: Callable[..., dict[str, Any]]
    # Writes files into the run folder from the node's (possibly cached) inputs; runs on hits too.
    publish: Callable[..., list[str]] | None = None
    # Checks beyond the fields' own types, at validation, without loading models or importing torch:
    # `check(fields, context: CheckContext) -> [(path inside the node, message, hint)]`.
    check: Callable[..., list[tuple[tuple, str, str]]] | None = None
    # The files `publish` writes into the run folder, known at validation: `writes(fields, node_id) -> [RunFolderFile]`
    # (two nodes writing the same file are a validation error).
    writes: Callable[..., list] | None = None
    # Writes the node as plain diffusers/PIL code into an export script (runner.engine.export.Script):
    # `export(script, fields)`; None: `runner export` refuses the node, naming it.
    export: Callable[..., None] | None = None
    # Tasks that differ only in seed (and `varying` fields) may run as one batched call (runner run --batch N)
    batch: Batching | None = None

    def __post_init__(self) -> None:
        assert all(kind in OUTPUT_KINDS for kind in self.outputs.values()), self.name

    @functools.cached_property
    def model(self) -> type[BaseModel]:
        """The node's model: its fields and `type: NAME`. Made on first use (validating a node of this type, the
        schema, `runner nodes`), not when the type is declared: a run pays only for the node types its workflow uses
        (a model's making is most of a declaration's cost, bench/start_time.py)."""
        _complete_nested(self.fields)
        return create_model(
            _class_name(self.name),
            __base__=self.fields,
            __doc__=self.doc,
            type=(Literal[self.name], ...),  # type: ignore[valid-type]
        )

    @property
    def default_output(self) -> str | None:
        return next(iter(self.outputs), None)

    @property
    def takes_seed(self) -> bool:
        return "seed" in self.fields.model_fields


def _complete_nested(fields: type[BaseModel]) -> None:
    """Build, once, the validators of the models a node's fields hold (a LoRA entry, a ControlNet, a step cache):
    declared with defer_build, each would otherwise be built again inside the model of every node type holding it
    (about a seventh of making txt2img's, img2img's and inpaint's models, bench/start_time.py)."""
    seen: set[type] = set()

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen and not annotation.__pydantic_complete__:  # a complete one's are complete
                seen.add(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
                annotation.model_rebuild()
            return
        for argument in typing.get_args(annotation):
            visit(argument)

    for field in fields.model_fields.values():
        visit(field.annotation)


def _class_name(type_name: str) -> str:
    return "".join(part.capitalize() for part in type_name.split("_")) + "Node"


NODE_TYPES: dict[str, NodeType] = {}


def node_type(name: str, *, fields: type[Fields], outputs: dict[str, str], version: int = 1, publish=None, check=None,
              writes=None, export=None, batch: Batching | None = None):
    """Decorator registering `run(ctx, fields, inputs) -> {output: value}` as node type `name`."""

    def register(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        if name in NODE_TYPES:
            raise ValueError(f"node type {name!r} declared twice")
        doc = (run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else name
        NODE_TYPES[name] = NodeType(name, fields, dict(outputs), version, doc, run, publish, check, writes, export,
                                     batch)
        return run

    return register
