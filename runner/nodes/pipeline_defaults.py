"""What "default: the pipeline's" means for a node field: each pipeline class's own default, read from
diffusers' source through runner.models.signatures (no import of diffusers). Used by `runner nodes TYPE`
and the JSON Schema's descriptions."""

from __future__ import annotations

from .arguments import CONTROLNET_ITEM_ARGUMENTS

SHOWN_PER_VALUE = 5  # classes named per default value in a field's description
SIZE_FIELDS = ("width", "height")  # their default is the checkpoint's size (docs/decisions.md), not a call default


def pipeline_classes(spec, controlnet: bool = False, every: bool = False) -> list[str]:
    """The diffusers classes a generation node with `spec` may call on the model families runner runs it on (with
    ControlNets: their ControlNet forms); `every`: also each class the task's AutoPipelines derive for any checkpoint
    diffusers maps (`runner nodes TYPE --all`)."""
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
    if every:
        for family in (*families.FAMILIES, families.AUTO):
            task = family.task(spec.task)
            found += index.mapping_classes(task.autopipeline) if task is not None else []
    return [name for name in dict.fromkeys(found) if name]


def defaults_text(argument: str, classes: list[str], every: bool = False) -> str | None:
    """'default: the pipeline's (0.8 for A, B; 0.3 for C)' grouped by value; None when no class has a literal default.
    A value's classes past SHOWN_PER_VALUE are counted ("and 2 more"), unless `every`."""
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
        most = len(names) if every else SHOWN_PER_VALUE
        shown = ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
        groups.append(f"{value} for {shown}")
    return f"default: the pipeline's ({'; '.join(groups)})"


def field_defaults(model: type, every: bool = False) -> dict[str, str]:
    """Field name -> 'default: the pipeline's (...)' for the fields of `model` left to the pipeline when unset: the
    classes the node's families call, or with `every` each class its task's AutoPipelines derive, all named."""
    from .generation import ControlNet, GENERATION_SPECS

    texts: dict[str, str] = {}
    if model is ControlNet:
        classes = [name for spec in GENERATION_SPECS if spec.controlnet_condition
                   for name in pipeline_classes(spec, True, every)]
        for field, argument in CONTROLNET_ITEM_ARGUMENTS.items():
            text = defaults_text(argument, list(dict.fromkeys(classes)), every)
            if text:
                texts[field] = text
        return texts
    spec = getattr(model, "spec", None)
    if spec is None:
        return texts
    classes = pipeline_classes(spec, every=every)
    for name, info in model.model_fields.items():
        argument = spec.arguments.get(name)
        if argument is None or info.default is not None or name in SIZE_FIELDS:
            continue
        text = defaults_text(argument, classes, every)
        if text:
            texts[info.alias or name] = text
    return texts
