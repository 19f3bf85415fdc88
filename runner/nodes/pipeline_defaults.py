"""What "default: the pipeline's" means for a node field: each pipeline class's own default, read from
diffusers' source through runner.models.signatures (no import of diffusers). Used by `runner nodes TYPE`
and the JSON Schema's descriptions."""

from __future__ import annotations

from .arguments import CONTROLNET_ITEM_ARGUMENTS

SHOWN_PER_VALUE = 5  # classes named per default value in a field's description
SIZE_FIELDS = ("width", "height")  # their default is the checkpoint's size (docs/decisions.md), not a call default


def pipeline_classes(spec, controlnet: bool = False) -> list[str]:
    """The diffusers classes a generation node with `spec` may call on the model families runner runs it on (with
    ControlNets: their ControlNet forms)."""
    from ..models import families
    from ..models.signatures import pipeline_index

    index = pipeline_index()
    if index is None:
        return []
    found = []
    for family in families.FAMILIES:
        task = family.task(spec.task)
        if task is None or (controlnet and not (task.controlnet and family.controlnet_class)):
            continue
        if task.autopipeline is None:
            found += [name for name in task.classes if index.signature(name) is not None]
        else:
            found.append(index.task_class(family.classes[0], task.autopipeline, controlnet=controlnet))
    return [name for name in dict.fromkeys(found) if name]


def defaults_text(argument: str, classes: list[str]) -> str | None:
    """'default: the pipeline's (0.8 for A, B; 0.3 for C)' grouped by value; None when no class has a literal default."""
    from ..models.signatures import pipeline_index

    index = pipeline_index()
    if index is None:
        return None
    by_value: dict[str, list[str]] = {}
    for name in classes:
        signature = index.signature(name)
        if signature is None or argument not in signature.defaults or signature.defaults[argument] is None:
            continue
        by_value.setdefault(repr(signature.defaults[argument]), []).append(name)
    if not by_value:
        return None
    groups = []
    for value, names in by_value.items():
        shown = ", ".join(names[:SHOWN_PER_VALUE]) + (f" and {len(names) - SHOWN_PER_VALUE} more" if len(names) > SHOWN_PER_VALUE else "")
        groups.append(f"{value} for {shown}")
    return f"default: the pipeline's ({'; '.join(groups)})"


def field_defaults(model: type) -> dict[str, str]:
    """Field name -> 'default: the pipeline's (...)' for the fields of `model` left to the pipeline when unset."""
    from .generation import ControlNet, GENERATION_SPECS

    texts: dict[str, str] = {}
    if model is ControlNet:
        classes = [name for spec in GENERATION_SPECS if spec.controlnet_condition for name in pipeline_classes(spec, True)]
        for field, argument in CONTROLNET_ITEM_ARGUMENTS.items():
            text = defaults_text(argument, list(dict.fromkeys(classes)))
            if text:
                texts[field] = text
        return texts
    spec = getattr(model, "spec", None)
    if spec is None:
        return texts
    classes = pipeline_classes(spec)
    for name, info in model.model_fields.items():
        argument = spec.arguments.get(name)
        if argument is None or info.default is not None or name in SIZE_FIELDS:
            continue
        text = defaults_text(argument, classes)
        if text:
            texts[info.alias or name] = text
    return texts
