"""The schema and `runner nodes` offer a field on a node type only where some model family that runs the node type
can do it: an editor completing from the schema never completes into a validation error (a field every family
refuses, such as LoRA on interpolate, is left out and refused with its reason)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import REPO, run_cli, write_workflow
from runner.models import families
from runner.nodes import NODE_TYPES

# what each family-dependent field needs of a family running the node's task
NEEDS = {
    "lora": lambda family, task: family.lora,
    "controlnet": lambda family, task: bool(task.controlnet and family.controlnet_class),
    "ip_adapter": lambda family, task: family.ip_adapter,
    "adapter": lambda family, task: bool(family.adapter_pipeline),
    "adapter_conditioning_factor": lambda family, task: family.adapter_factor,
    "freeu": lambda family, task: family.freeu,
    **{name: (lambda family, task: family.runtime_options)
       for name in ("vae_slicing", "channels_last", "attention", "compile", "quantize")},
    "step_cache": lambda family, task: family.runtime_options and family.step_cache,
}
# offered wherever some family running the node applies them (not only never where none does)
BOTH_WAYS = ("vae_slicing", "channels_last", "attention", "compile", "quantize", "step_cache")


def generation_types():
    return [node_type for node_type in NODE_TYPES.values() if getattr(node_type.fields, "spec", None) is not None]


@pytest.mark.parametrize("node_type", generation_types(), ids=lambda node_type: node_type.name)
def test_every_family_dependent_field_is_one_some_family_of_the_node_can_use(node_type):
    schema = json.loads((REPO / "schemas" / "workflow.schema.json").read_text())
    definitions = schema.get("$defs") or schema.get("definitions")
    offered = next(set(d["properties"]) for d in definitions.values()
                   if d.get("properties", {}).get("type", {}).get("const") == node_type.name)
    runners = [(family, family.task(node_type.fields.spec.task)) for family in families.for_task(node_type.fields.spec.task)]
    assert runners, node_type.name
    for field, need in NEEDS.items():
        if field in offered:
            assert any(need(family, task) for family, task in runners), (node_type.name, field)
        elif field in BOTH_WAYS:
            assert not any(need(family, task) for family, task in runners), (node_type.name, field, "not offered")


def test_lora_on_interpolate_is_refused_with_its_reason(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nnodes:\n  i: {type: interpolate, model: tiny:kandinsky22, "
                              "items: [{prompt: a}, {prompt: b}], lora: [{model: tiny:lora-sd15}]}\n")
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    assert "nodes.i.lora" in err and "take no LoRA" in err, err


# ------------------------------------------------------------------ every offered value, walked against validation
# A minimal valid node of each type on each model it can use (the models a family of its task is tried on); nodes
# that need an input link to the shared nodes below. Every declared node type has an entry: a new one must add its own.
SHARED = {"src": {"type": "load_image", "path": "in.png", "size": [64, 64]},
          "gen": {"type": "txt2img", "model": "tiny:sd15", "prompt": "a"}}
GENERATION_MODELS = ["tiny:sd15", "tiny:sdxl", "tiny:sd3", "tiny:flux", "tiny:kandinsky21", "tiny:kandinsky22",
                     "tiny:kandinsky3"]
BASES = {
    "txt2img": [{"model": model, "prompt": "a"} for model in GENERATION_MODELS],
    "img2img": [{"model": model, "prompt": "a", "image": "$src"} for model in GENERATION_MODELS],
    "inpaint": [{"model": model, "prompt": "a", "image": "$src", "mask": "$src"} for model in
                ["tiny:sd15-inpaint", "tiny:sd3", "tiny:flux", "tiny:kandinsky21-inpaint", "tiny:kandinsky22-inpaint"]],
    "depth2img": [{"model": "tiny:sd2-depth", "prompt": "a", "image": "$src"}],
    "refine": [{"model": model, "prompt": "a", "image": "$src"} for model in ("tiny:sdxl-refiner", "tiny:sd15")],
    "interpolate": [{"model": model, "items": [{"prompt": "a"}, {"prompt": "b"}]}
                    for model in ("tiny:kandinsky22", "tiny:kandinsky21")],
    "pipeline": [{"class": "StableDiffusionPipeline", "model": "tiny:sd15", "call": {"prompt": "a"}}],
    "load_image": [{"path": "in.png"}],
    "make_mask": [{"like": "$src"}, {"from": "$src"}],
    "canny": [{"image": "$src"}],
    "grid": [{"images": ["$src", "$src"]}],
    "upscale": [{"image": "$src", "scale": 2}, {"image": "$src", "model": "tiny:sd-x4-upscaler"}],
    "upscale_latents": [{"latents": "$gen.latents", "scale": 2}],
    "save_image": [{"image": "$src"}],
    "estimate_depth": [{"image": "$src", "model": "tiny:dpt"}],
    "detect_pose": [{"image": "$src", "model": "tiny:vitpose", "detector": "tiny:rtdetr"}],
}


def _definitions() -> dict:
    schema = json.loads((REPO / "schemas" / "workflow.schema.json").read_text())
    return schema["definitions"]


def _sample(prop: dict, definitions: dict):
    """A value the schema allows for a required field of a sub-object (its first offer, or a number in bounds)."""
    offered = _offers(prop, definitions)
    if offered:
        return offered[0]
    for member in [prop, *prop.get("anyOf", [])]:
        if member.get("type") in ("number", "integer"):
            return member.get("minimum", member.get("exclusiveMinimum", 0) + 1)
    raise AssertionError(f"no sample value for {prop}")


def _offers(prop: dict, definitions: dict) -> list:
    """The values the schema offers for one field: enum and const members, both booleans, and an optional
    sub-object: its smallest form (the required fields only) and that form with each of its own fields' offers."""
    found: list = []
    for member in [prop, *prop.get("anyOf", [])]:
        if member is not prop and "anyOf" in member:
            found += [value for value in _offers(member, definitions) if value not in found]
            continue
        found += [value for value in member.get("enum", []) if value not in found]
        if "const" in member and member["const"] not in found:
            found.append(member["const"])
        if member.get("type") == "boolean":
            found += [value for value in (True, False) if value not in found]
        if "$ref" in member:
            definition = definitions[member["$ref"].rsplit("/", 1)[-1]]
            smallest = {name: _sample(definition["properties"][name], definitions)
                        for name in definition.get("required", [])}
            found.append(smallest)
            for name, sub in definition.get("properties", {}).items():
                found += [{**smallest, name: value} for value in _offers(sub, definitions)
                          if {**smallest, name: value} not in found]
    return found


def _refusals(tmp_path, capsys, nodes: dict) -> dict[str, list[str]]:
    """`runner validate` on one workflow holding these nodes (and the shared ones): node id -> its errors."""
    import yaml

    workflow = write_workflow(tmp_path, "offers.yaml", yaml.safe_dump(
        {"version": 1, "nodes": {**SHARED, **nodes}}, sort_keys=False))
    capsys.readouterr()
    status = run_cli("validate", workflow)
    err = re.sub(r"^\d+ problems? found$", "", capsys.readouterr().err, flags=re.M)
    errors = [error.strip() for error in re.split(r"^error: ", err, flags=re.M) if error.strip()]
    refused: dict[str, list[str]] = {}
    for error in errors:
        named = re.search(r"nodes\.([a-z_][a-z0-9_]*)", error)
        assert named and named.group(1) in nodes, f"an error outside the walked nodes:\n{error}"
        refused.setdefault(named.group(1), []).append(error)
    assert (status == 0) == (not refused), (status, errors)
    return refused


@pytest.mark.parametrize("type_name", list(NODE_TYPES))
def test_every_value_the_schema_offers_validates_on_some_model_of_the_node_type(type_name, tmp_path, capsys):
    definitions = _definitions()
    assert type_name in BASES, f"add a minimal {type_name} node to BASES"
    definition = next(d for d in definitions.values()
                      if d.get("properties", {}).get("type", {}).get("const") == type_name)
    pending = {f"v{index}": (field, value) for index, (field, value) in enumerate(
        (field, value) for field, prop in definition["properties"].items() if field != "type"
        for value in _offers(prop, definitions))}
    last_errors: dict[str, list[str]] = {}
    for base in BASES[type_name]:
        assert not _refusals(tmp_path, capsys, {"base": {"type": type_name, **base}}), base
        if not pending:
            continue
        refused = _refusals(tmp_path, capsys, {node_id: {"type": type_name, **base, field: value}
                                               for node_id, (field, value) in pending.items()})
        last_errors.update(refused)
        pending = {node_id: offer for node_id, offer in pending.items() if node_id in refused}
    assert not pending, "offered by the schema, refused on every model of the node type:\n" + "\n".join(
        f"{field}: {value!r}: {last_errors[node_id][0]}" for node_id, (field, value) in pending.items())


def test_interpolate_offers_only_the_samplers_its_kandinsky_families_run_and_refuses_the_others(tmp_path, capsys):
    assert run_cli("nodes", "interpolate") == 0
    out = capsys.readouterr().out
    offered = next(line for line in out.splitlines() if line.strip().startswith("scheduler "))
    assert "dpmpp_2m" in offered and "euler" not in offered and "lcm" not in offered, offered
    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nnodes:\n  i: {type: interpolate, model: tiny:kandinsky22, "
                              "items: [{prompt: a}, {prompt: b}], scheduler: euler}\n")
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    assert "wf.yaml:3:" in err and "nodes.i.scheduler: 'euler' is not allowed" in err, err
    assert "choose one of: ddim, ddpm, deis, dpmpp_2m" in err and "euler" not in err.split("choose one of:")[1], err


def test_every_value_the_schema_offers_in_the_workflow_header_validates(tmp_path, capsys):
    """The header's run-time defaults (dtype, offload, attention, compile, quantize, step_cache, ...) reach every
    generation node: each offered value validates with a txt2img node of some family (step_cache: a transformer's)."""
    import yaml

    schema = json.loads((REPO / "schemas" / "workflow.schema.json").read_text())
    definitions = schema["definitions"]
    offers = [(field, value) for field, prop in schema["properties"].items() if field != "nodes"
              for value in _offers(prop, definitions)]
    assert {"dtype", "attention", "compile", "quantize", "step_cache"} <= {field for field, _ in offers}
    refused = []
    for field, value in offers:
        errors = []
        for model in ("tiny:sd15", "tiny:flux"):
            document = {"version": 1, field: value, "nodes": {"g": {"type": "txt2img", "model": model, "prompt": "a"}}}
            capsys.readouterr()
            if run_cli("validate", write_workflow(tmp_path, "header.yaml", yaml.safe_dump(document))) == 0:
                break
            errors.append(capsys.readouterr().err.strip())
        else:
            refused.append(f"{field}: {value!r}: {errors[-1]}")
    assert not refused, "\n".join(refused)
