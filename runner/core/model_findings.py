"""What a check before the run finds wrong with a model a node uses: the models layer finds it, the language places
it in the workflow file (at the model's entry, or the node's field for an inline source)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFinding:
    """`at`: "source" (the entry's source is at fault: not found, an unknown tiny name), a part's field ("vae",
    "text_encoder", ...: runner.core.model_entry.PARTS), "config" or
    "entry" (the entry as a whole: wrong kind, pickle weights); `inline_hint` is added to the hint when the model is an
    inline source (which has no entry to put an option on)."""

    message: str
    hint: str
    at: str = "source"
    inline_hint: str = ""
