"""`$` references: links between nodes, params, models, and `${}` text interpolation.

- ``$id`` / ``$id.out``  -> a Link to a node output (resolved against the graph later)
- ``$params.name``       -> the param's value, with its YAML type
- ``$models.name``       -> kept as text; the model registry resolves it
- ``${params.name}``     -> inside longer text, the param's value as text
- ``$$``                 -> a literal ``$``

A ``$`` that starts none of these (``costs $5``) is kept as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import Problem, did_you_mean
from .yaml_source import SourceMap

NODE_ID = re.compile(r"^[a-z_][a-z0-9_]*$")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
RESERVED = ("params", "models", "env")

EXACT_REF = re.compile(r"^\$([a-z_][a-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?$")
TEXT_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}")
LINK_PATTERN = r"^\$[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$"
MODEL_REF_PREFIX = "$models."


@dataclass(frozen=True)
class Link:
    """A reference to a node output. `output` None means the node's default output."""

    node: str
    output: str | None = None
    path: tuple = field(default=(), compare=False)

    def __str__(self) -> str:
        return f"${self.node}" + (f".{self.output}" if self.output else "")


def resolve_references(document: dict, smap: SourceMap, origins: dict[tuple, str] | None = None) -> tuple[dict, list[Problem]]:
    """Replace param references and interpolations in `models` and `nodes`; turn links into Link objects.

    Links are checked against the graph later (their target's outputs are typed);
    params and models are checked here. `origins`, when given, receives path -> param name for every value
    that is a whole `$params.NAME` (so that a problem with the value can name the param's definition too).
    """
    problems: list[Problem] = []
    params = document.get("params") if isinstance(document.get("params"), dict) else {}
    models = document.get("models") if isinstance(document.get("models"), dict) else {}

    def walk(value: Any, path: tuple, links_allowed: bool) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, path + (k,), links_allowed) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path + (i,), links_allowed) for i, v in enumerate(value)]
        if isinstance(value, str):
            return _resolve_string(value, path, links_allowed)
        return value

    def _resolve_string(text: str, path: tuple, links_allowed: bool) -> Any:
        exact = EXACT_REF.match(text)
        if exact:
            head, tail = exact.groups()
            if head == "params":
                if tail is None:
                    return _problem(path, "'$params' needs a name: $params.NAME", text)
                if tail not in params:
                    return _problem(path, f"unknown param '{tail}'{did_you_mean(tail, params)}", text,
                                    "add it under params: or fix the name")
                if origins is not None:
                    origins[path] = tail
                return params[tail]
            if head == "models":
                if tail is None or tail not in models:
                    name = tail or ""
                    return _problem(path, f"unknown model '{name}'{did_you_mean(name, models)}", text,
                                    "add it under models: or write the source inline (model: tiny:sd15)")
                return text
            if head == "env":
                return _problem(path, "'$env' is reserved and not available in workflow format v1", text,
                                "put the value in params: and pass it with --set params.NAME=VALUE")
            if links_allowed:
                return Link(head, tail, path)
        # text with interpolations and escapes
        out, last = [], 0
        for token in TEXT_TOKEN.finditer(text):
            out.append(text[last : token.start()])
            last = token.end()
            if token.group(0) == "$$":
                out.append("$")
                continue
            expr = token.group(1).strip()
            if not expr.startswith("params."):
                problems.append(Problem(smap.locate(path), path,
                                        f"'${{{expr}}}' is not supported: only ${{params.NAME}} can be interpolated",
                                        "write $$ for a literal $"))
                continue
            name = expr[len("params."):]
            if name not in params:
                problems.append(Problem(smap.locate(path), path,
                                        f"unknown param '{name}' in '${{{expr}}}'{did_you_mean(name, params)}",
                                        "add it under params: or fix the name"))
                continue
            out.append(_as_text(params[name]))
        out.append(text[last:])
        return "".join(out)

    def _problem(path: tuple, message: str, text: str, hint: str = "") -> str:
        problems.append(Problem(smap.locate(path), path, message, hint))
        return text

    resolved = dict(document)
    if isinstance(models, dict):
        resolved["models"] = walk(models, ("models",), links_allowed=False)
    if isinstance(document.get("nodes"), dict):
        resolved["nodes"] = {
            node_id: walk(body, ("nodes", node_id), links_allowed=True)
            for node_id, body in document["nodes"].items()
        }
    return resolved, problems


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_as_text(v) for v in value)
    return str(value)


def unresolve(value: Any) -> Any:
    """Plain data for printing/hashing: Links back to their `$` text."""
    if isinstance(value, Link):
        return str(value)
    if isinstance(value, dict):
        return {k: unresolve(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unresolve(v) for v in value]
    return value
