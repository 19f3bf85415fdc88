"""JSON Schema of the workflow format, derived from the node declarations.

Emitted as draft-07 (what yaml-language-server understands best): pydantic's
`$defs` become `definitions`, `prefixItems` become positional `items`.
Fields that take numbers or booleans (and the items of lists, such as
`size: [$params.w, $params.h]`) also accept a `$params.NAME` reference, so
files that use params validate in the editor too.
"""

from __future__ import annotations

import json
from typing import Any

PARAM_REF = {"type": "string", "pattern": r"^\$params\.[A-Za-z_][A-Za-z0-9_-]*$", "description": "a $params.NAME reference"}


def workflow_json_schema() -> dict[str, Any]:
    from .language.refs import RESERVED
    from .language.workflow import workflow_schema_model
    from .nodes import NODE_TYPES

    schema = workflow_schema_model(NODE_TYPES).model_json_schema(by_alias=True, ref_template="#/definitions/{model}")
    schema = _draft07(schema)
    definitions = schema.get("definitions", {})
    takes_params = _param_models()
    for name, definition in definitions.items():
        if name in takes_params:
            for prop_name, prop in definition.get("properties", {}).items():
                if prop_name != "type":
                    definition["properties"][prop_name] = _accept_param_ref(prop)
    # pydantic emits a dict with constrained keys as patternProperties only, which lets any other key through
    for prop in schema.get("properties", {}).values():
        if "patternProperties" in prop:
            prop["additionalProperties"] = False
    schema["properties"]["nodes"]["propertyNames"] = {"not": {"enum": list(RESERVED)}}
    _describe_pipeline_defaults(definitions, NODE_TYPES)
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://github.com/runner/runner/schemas/workflow.schema.json",
        **schema,
    }
    return schema


def _describe_pipeline_defaults(definitions: dict, node_types: dict) -> None:
    """Fields left to the pipeline say what each pipeline class's own default is (from diffusers' source)."""
    from .language.fields import nested_models
    from .nodes.pipeline_defaults import field_defaults

    models = {}
    for node_type in node_types.values():
        models[node_type.model.__name__] = node_type.model
        models.update({model.__name__: model for model in nested_models(node_type.fields).values()})
    for name, model in models.items():
        properties = definitions.get(name, {}).get("properties", {})
        for field, text in field_defaults(model).items():
            if field in properties:
                description = properties[field].get("description", "")
                properties[field]["description"] = description.replace("default: the pipeline's", text) \
                    if "default: the pipeline's" in description else f"{description}; {text}".lstrip("; ")


def schema_text() -> str:
    return json.dumps(workflow_json_schema(), indent=2, sort_keys=False) + "\n"


def _draft07(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$defs":
                out["definitions"] = _draft07(value)
            elif key == "prefixItems":
                out["items"] = _draft07(value)
                out["additionalItems"] = False
            else:
                out[key] = _draft07(value)
        return out
    if isinstance(node, list):
        return [_draft07(v) for v in node]
    return node


def _param_models() -> set[str]:
    """Names of the models whose values may be `$params.NAME`: every node's fields (and their items) and model entries."""
    from .core.model_entry import ModelEntry
    from .language.fields import Fields

    names, pending = {ModelEntry.__name__}, [Fields]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def _accept_param_ref(prop: dict) -> dict:
    """Let a non-text field also hold a $params.NAME reference (resolved before validation)."""
    if _is_plain_string(prop):
        return prop
    description = prop.get("description")
    inner = _refs_inside({k: v for k, v in prop.items() if k not in ("description", "default", "title")})
    wrapped = {"anyOf": [inner, PARAM_REF]}
    if "title" in prop:
        wrapped["title"] = prop["title"]
    if description:
        wrapped["description"] = description
    if "default" in prop:
        wrapped["default"] = prop["default"]
    return wrapped


def _refs_inside(schema: dict) -> dict:
    """The items of arrays (inside unions too) may be $params references as well."""
    if "anyOf" in schema:
        return {**schema, "anyOf": [_refs_inside(member) for member in schema["anyOf"]]}
    if schema.get("type") == "array" and "items" in schema:
        items = schema["items"]
        items = [_accept_param_ref(item) for item in items] if isinstance(items, list) else _accept_param_ref(items)
        return {**schema, "items": items}
    return schema


def _is_plain_string(prop: dict) -> bool:
    if prop.get("type") == "string" and "pattern" not in prop and "enum" not in prop:
        return True
    return any(_is_plain_string(p) for p in prop.get("anyOf", []))
