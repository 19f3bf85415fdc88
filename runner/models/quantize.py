"""`quantize:` a checkpoint loaded with some of its components quantized, as diffusers' docs load one: one
PipelineQuantizationConfig whose quant_mapping gives each component its config (diffusers' for the denoiser,
transformers' for the text encoders). A quantized checkpoint is another model than the plain one: its identity
says how it is quantized, so the pool keeps it beside the plain one and nothing computed from one (prompt
embeddings, shared components) serves the other."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..core.runtime import QUANTIZATIONS, QUANTIZED_PARTS, quantized_parts


def quantized(source, identity: str, value) -> tuple:
    """(source, identity) of the checkpoint loaded as `value` (a node's quantize:) says; as they are without one."""
    parts = quantized_parts(value)
    if not parts:
        return source, identity
    spec = tuple(sorted(parts.items()))
    return (dataclasses.replace(source, quantize=spec),
            f"{identity};quantize=" + ",".join(f"{part}:{name}" for part, name in spec))


def components(source, folder: Path | None) -> dict[str, str]:
    """{pipeline component: quantization} for the checkpoint's own components (its model_index.json; every candidate
    name where it cannot be read: diffusers skips names a checkpoint lacks)."""
    present = None
    if folder is not None:
        index = folder / (source.entry.subfolder or "") / "model_index.json"
        if index.is_file():
            present = set(json.loads(index.read_text()))
    return {name: quantization for part, quantization in source.quantize for name in QUANTIZED_PARTS[part]
            if present is None or name in present}


def _config(name: str, library: str, dtype):
    """One component's config, as QUANTIZATIONS writes it, from diffusers (library "diffusers") or transformers."""
    package = __import__(library)
    if QUANTIZATIONS[name][0] == "torchao":
        import torchao.quantization as ao

        kind = "Int8WeightOnlyConfig" if name == "int8" else "Float8WeightOnlyConfig"
        return package.TorchAoConfig(getattr(ao, kind)())
    return package.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)


def pipeline_config(mapping: dict[str, str], dtype):
    """diffusers' PipelineQuantizationConfig for {component: quantization}: text encoders are transformers models."""
    from diffusers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(quant_mapping={
        component: _config(name, "transformers" if component.startswith("text_encoder") else "diffusers", dtype)
        for component, name in mapping.items()})


def config_expression(script, mapping: dict[str, str], dtype: str) -> str:
    """The same config as Python source for an exported script (its imports added to the script)."""
    script.need("from diffusers import PipelineQuantizationConfig")
    items = []
    for component, name in mapping.items():
        library = "transformers" if component.startswith("text_encoder") else "diffusers"
        package, text, _cuda = QUANTIZATIONS[name]
        config = text.split("(", 1)[0]
        alias = f"{config}_{library}" if library == "transformers" else config
        script.need(f"from {library} import {config}" + (f" as {alias}" if alias != config else ""))
        if package == "torchao":
            kind = text.split("(", 2)[1]
            script.need(f"from torchao.quantization import {kind}")
            expression = f"{alias}({kind}())"
        else:
            expression = f"{alias}({text.split('(', 1)[1][:-1]}, bnb_4bit_compute_dtype={dtype})"
        items.append(f'"{component}": {expression}')
    return "PipelineQuantizationConfig(quant_mapping={" + ", ".join(items) + "})"
