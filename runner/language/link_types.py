"""Link typing: which node outputs may feed which fields (an image into a mask input, latents only into latent
inputs, ...), and the located problems when a link does not fit, names nothing, or stands where no link may."""

from __future__ import annotations

from typing import Any

from .errors import Problem, did_you_mean, dotted
from .fields import Accepts, NodeDeclaration, find_marker
from .plain_words import inner_model
from .refs import RESERVED, Link
from .yaml_source import SourceMap


def links_in(value: Any) -> list[Link]:
    """Every Link in resolved node data, in document order."""
    if isinstance(value, Link):
        return [value]
    if isinstance(value, dict):
        return [link for item in value.values() for link in links_in(item)]
    if isinstance(value, list):
        return [link for item in value for link in links_in(item)]
    return []


def accepts_at(model: Any, relative: tuple) -> Accepts | None:
    """The Accepts marker of the link field at `relative` inside a node's fields model, or None (a plain field)."""
    for part in relative:
        if isinstance(part, int):
            continue
        if model is None:
            return None
        info = model.model_fields.get(part) or next((i for i in model.model_fields.values() if i.alias == part), None)
        if info is None:
            return None
        marker = next((m for m in info.metadata if isinstance(m, Accepts)), None) or find_marker(info.annotation, Accepts)
        if marker is not None:
            return marker
        model = inner_model(info.annotation)
    return None


def raw_inputs(body: Any) -> Any:
    """A node's body as written, with its `$` links turned into Links (what it takes its inputs from)."""
    from .refs import EXACT_REF

    if isinstance(body, dict):
        return {key: raw_inputs(value) for key, value in body.items() if key != "type"}
    if isinstance(body, list):
        return [raw_inputs(value) for value in body]
    if isinstance(body, str):
        found = EXACT_REF.match(body)
        if found and found.group(1) not in RESERVED:
            return Link(found.group(1), found.group(2))
    return body


def stray_link(node_type: NodeDeclaration, link: Link, smap: SourceMap) -> Problem:
    field_name = dotted(link.path[2:])
    return Problem(smap.locate(link.path), link.path,
                   f"'{link}' links a node output, but {node_type.name} field '{field_name}' takes plain values only: "
                   f"links go in fields that take images or latents",
                   f"see 'runner nodes {node_type.name}' for the link fields; write $${str(link)[1:]} for literal text")


def check_link(node_type: NodeDeclaration, link: Link, accepts: Accepts, nodes: dict[str, Any], typed_only: dict[str, NodeDeclaration],
                raw_nodes: dict, smap: SourceMap, problems: list[Problem]) -> bool:
    where = smap.locate(link.path)
    target_type = nodes[link.node].type if link.node in nodes else typed_only.get(link.node)
    if target_type is None:
        if link.node in raw_nodes:
            return False  # that node's type is unknown; its own problem is reported
        problems.append(Problem(where, link.path, f"unknown node '{link.node}' in '{link}'{did_you_mean(link.node, raw_nodes)}",
                                "link to a node defined under nodes:, or write $$ for a literal $"))
        return False
    outputs = target_type.outputs
    if not outputs:
        feeds = [str(item) for item in links_in(raw_inputs(raw_nodes.get(link.node)))]
        problems.append(Problem(where, link.path, f"node '{link.node}' ({target_type.name}) has no outputs to link to",
                                f"link what '{link.node}' takes instead, e.g. {feeds[0]}" if feeds else
                                f"link a node that has outputs ('runner nodes {target_type.name}' lists none)"))
        return False
    output = link.output or target_type.default_output
    if output not in outputs:
        close = did_you_mean(output, outputs)
        suggested = close.split("'")[1] if close else target_type.default_output
        problems.append(Problem(where, link.path,
                                f"node '{link.node}' ({target_type.name}) has no output '{output}'{close}; "
                                f"its outputs: {', '.join(outputs)}",
                                f"link one of them, e.g. ${link.node}.{suggested} (${link.node} alone is its "
                                f"{target_type.default_output})"))
        return False
    kind = outputs[output]
    if kind in accepts.kinds:
        return True
    wanted = "latents" if accepts.kinds == {"latents"} else "one image"
    if accepts.many:
        wanted = "images"
    if kind == "images":
        fix = f"link one image, e.g. ${link.node}.image (the first image)"
        what = "a list of images where one image is needed"
    elif kind == "latents":
        fix = f"link the decoded image instead: ${link.node}.image"
        what = "latents where pixels are needed"
    else:
        fix = ""
        if wanted == "latents":
            fix = (f"link its latents output: ${link.node}.latents" if "latents" in outputs
                   else "link the latents output of a generation node, e.g. $base.latents")
        what = f"{kind} where {wanted} is needed"
    problems.append(Problem(where, link.path, f"link type mismatch: '{link}' is {kind} ({target_type.name} output '{output}'), "
                                              f"but {node_type.name} field '{dotted(link.path[2:])}' takes {wanted}: {what}", fix))
    return False
