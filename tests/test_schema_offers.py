"""The schema and `runner nodes` offer a field on a node type only where some model family that runs the node type
can do it: an editor completing from the schema never completes into a validation error (a field every family
refuses, such as LoRA on interpolate, is left out and refused with its reason)."""

from __future__ import annotations

import json

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
}


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


def test_lora_on_interpolate_is_refused_with_its_reason(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nnodes:\n  i: {type: interpolate, model: tiny:kandinsky22, "
                              "items: [{prompt: a}, {prompt: b}], lora: [{model: tiny:lora-sd15}]}\n")
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    assert "nodes.i.lora" in err and "take no LoRA" in err, err
