"""What `validate` (and every command, before anything runs) checks of the models a workflow uses, where their files
are on this machine: a local path or bare name that is found nowhere (saying where it was looked for), an unknown
`tiny:` name, pickle weights without allow_pickle, and a model of the wrong kind for its place (a ControlNet or VAE
where a checkpoint is expected). Reads only names, configs and safetensors headers: no torch."""

from __future__ import annotations

from pathlib import Path

from ..core.model_entry import PART_KINDS, PARTS, ModelEntry
from ..core.model_findings import ModelFinding
from .model_kinds import KIND_NAMES, KIND_USE, local_kind, wrong_kind
from .sources import ModelUnavailable, PickleRefused, classify, local_folder, refuse_pickle

INLINE_PICKLE_HINT = "(an inline model has no entry: name it under models:, as {source: ..., allow_pickle: true})"


def model_findings(entry: ModelEntry, kind: str, base_dir: Path, roots: tuple) -> list[ModelFinding]:
    """Everything wrong with `entry` used where a model of `kind` is expected (runner.language.fields.ModelField)."""
    findings = []
    for part in PARTS:  # a swapped-in VAE or text encoder: found, and of the right kind, at its own field
        value = getattr(entry, part)
        if value:
            swapped = ModelEntry(source=value, allow_pickle=entry.allow_pickle)
            findings += [ModelFinding(finding.message, finding.hint, part)
                         for finding in model_findings(swapped, PART_KINDS[part], base_dir, roots)]
            entry = entry.model_copy(update={part: None})
    for token, value in entry.embeddings.items():  # each embedding at its own key
        findings += [ModelFinding(finding.message, finding.hint, f"embeddings.{token}")
                     for finding in model_findings(ModelEntry(source=value, allow_pickle=entry.allow_pickle),
                                                   "embedding", base_dir, roots)]
    entry = entry.model_copy(update={"embeddings": {}})
    return findings + _findings(entry, kind, base_dir, roots)


def _findings(entry: ModelEntry, kind: str, base_dir: Path, roots: tuple) -> list[ModelFinding]:
    from .tiny import UnknownTinyModel, tiny_kind

    try:
        source = classify(entry, base_dir, roots, kind)
    except ModelUnavailable as exc:  # located at the field at fault (e.g. a config: that cannot serve)
        return [ModelFinding(str(exc), exc.hint, getattr(exc, "entry_field", None) or "source")]
    if source.kind == "tiny":
        try:
            found = tiny_kind(source.location)
        except UnknownTinyModel as exc:
            return [ModelFinding(str(exc), exc.hint)]
        findings = _kind_findings(source.label, found, kind)
        from .model_kinds import ACCEPTED
        from .tiny import TINY_NAMES

        fitting = [f"tiny:{name}" for name in TINY_NAMES  # an upscaler is a pipeline, but only the upscaler fits
                   if tiny_kind(name) in ACCEPTED.get(kind, (kind,)) and ("upscaler" in name) == (kind == "upscaler")]
        if findings and fitting:  # a test set-up: say which tiny models fit this place
            first = findings[0]
            findings[0] = ModelFinding(first.message, f"{first.hint} (tiny ones: {', '.join(fitting[:6])})", first.at,
                                       first.inline_hint)
        return findings
    folder = local_folder(source, Path())
    if folder is None or not folder.exists():
        return []  # a hub model not downloaded yet: its files are looked at when they are
    try:
        refuse_pickle(source, folder)
    except PickleRefused as exc:
        return [ModelFinding(exc.what, exc.hint, "entry", INLINE_PICKLE_HINT)]
    if entry.subfolder and (folder / entry.subfolder).exists():
        folder = folder / entry.subfolder
    found = local_kind(folder)
    if found is None and source.kind == "file":  # a .safetensors of no kind runner knows: refused here, not at plan time
        from .single_file import UnknownLayout, check_layout

        try:
            check_layout(folder, source.label)
        except UnknownLayout as exc:
            return [ModelFinding(str(exc), exc.hint, "entry")]
    return _kind_findings(source.label, found, kind, folder)


def _kind_findings(label: str, found: str | None, wanted: str, where: Path | None = None) -> list[ModelFinding]:
    if not wrong_kind(found, wanted):
        return []
    expected = KIND_NAMES.get("pipeline" if wanted == "upscaler" else wanted, wanted)
    shown = f" ({where})" if where is not None and str(where) != label else ""
    return [ModelFinding(f"model '{label}'{shown} is {KIND_NAMES.get(found, found)}, used where {expected} is expected",
                         f"{KIND_USE.get(found, 'use it where that kind of model goes')}, and give this place "
                         f"{expected}", "entry")]
