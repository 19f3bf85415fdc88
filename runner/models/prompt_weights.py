"""Weighted and long prompts (`prompt_syntax: weighted` on a workflow): the attention syntax of A1111 and ComfyUI,
read by runner into (text, weight) fragments, turned into prompt embeddings by compel (the kept library for this),
configured as compel's own CompelForSD / CompelForSDXL are, and passed to the pipeline as prompt_embeds.

The syntax: `(text)` multiplies the weight by 1.1, `[text]` divides it by 1.1, `(text:1.3)` sets the factor, nesting
multiplies, `\\(`, `\\)`, `\\[`, `\\]` and `\\\\` are the characters themselves, and a bracket left open applies to the
rest of the prompt (as A1111 reads it). Prompts longer than the text encoder's 77 tokens are encoded in chunks of 75
and joined (compel's `truncate_long_prompts=False`), as A1111 and ComfyUI do, instead of being cut.

compel's own prompt language is not A1111's (it reads `(cat:1.3)` as the text "cat:1 . 3" at weight 1, `[cat]` as
text, and a word ending in + or - as a weight), so runner parses the prompt itself and hands compel the fragments;
compel then tokenizes each fragment, weighs its tokens and runs the text encoders. The pooled embedding SDXL needs is
taken from the prompt's words without the syntax (compel's wrapper pools its raw string, brackets and numbers
included; A1111 and ComfyUI pool the words).
"""

from __future__ import annotations

import re
from typing import Any

# A1111's attention syntax, token by token (an implementation of its documented rules, not its code)
_TOKENS = re.compile(
    r"(?P<esc>\\[()\[\]\\])|(?P<weight>:\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\))|(?P<sym>[()\[\]])|"
    r"(?P<text>[^\\()\[\]:]+|[\\:])")
UP, DOWN = 1.1, 1 / 1.1


def segments(prompt: str) -> list[tuple[str, float]]:
    """[(text, weight)] as A1111 weighs the prompt, neighbouring runs of one weight merged, brackets removed."""
    parts: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for part in parts[start:]:
            part[1] *= factor

    for match in _TOKENS.finditer(prompt):
        if match["esc"]:
            parts.append([match["esc"][1], 1.0])
        elif match["weight"] and round_open:
            scale(round_open.pop(), float(match["num"]))
        elif match["sym"] == "(":
            round_open.append(len(parts))
        elif match["sym"] == "[":
            square_open.append(len(parts))
        elif match["sym"] == ")" and round_open:
            scale(round_open.pop(), UP)
        elif match["sym"] == "]" and square_open:
            scale(square_open.pop(), DOWN)
        else:  # text, or a ")", "]" or ":1.2)" with nothing open: the characters themselves
            parts.append([match.group(0), 1.0])
    for start in round_open:
        scale(start, UP)
    for start in square_open:
        scale(start, DOWN)
    merged: list[list] = []
    for text, weight in parts:
        weight = round(weight, 6)
        if merged and merged[-1][1] == weight:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [(text, weight) for text, weight in merged if text]


def fragments(prompt: str) -> list[tuple[str, float]]:
    """The fragments compel encodes: each run's text without the spaces around it (as compel's own parser gives
    them), empty runs left out."""
    out: list[tuple[str, float]] = []
    for text, weight in segments(prompt):
        text = text.strip()
        if not text:
            continue
        if out and out[-1][1] == weight:
            out[-1] = (out[-1][0] + " " + text, weight)
        else:
            out.append((text, weight))
    return out


def plain_text(prompt: str) -> str:
    """The prompt's words without the syntax: what is pooled."""
    return " ".join(text for text, _weight in fragments(prompt))


def is_weighted(prompt: str | None) -> bool:
    """Whether the syntax changes anything: a weight other than 1, or an escape or bracket removed."""
    if not prompt:
        return False
    read = segments(prompt)
    return any(weight != 1.0 for _text, weight in read) or "".join(text for text, _weight in read) != prompt


def weight_problem(prompt: str | None) -> str | None:
    """Why the prompt's weights cannot be encoded, or None: compel weighs from 0 up (a negative factor has no
    meaning there)."""
    for text, weight in segments(prompt or ""):
        if weight < 0:
            return f"'{text.strip()}' has the negative weight {weight:g}; weights are 0 or more"
    return None


def compel_form(prompt: str) -> str:
    """The prompt in compel's own syntax (`(text)1.3`), for the manifest: what to give compel to replay the call."""
    out = []
    for text, weight in fragments(prompt):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").replace('"', '\\"')
        out.append(escaped if weight == 1.0 else f"({escaped}){weight:g}")
    return " ".join(out)


def weighting_problems(family, label: str, fields, syntax: str) -> list[tuple[tuple, str, str]]:
    """Under prompt_syntax: weighted, what the family's encoding cannot do: weights on a family compel does not
    encode for runner, a negative weight, a CLIP skip compel has no layer choice for."""
    if syntax != "weighted":
        return []
    problems: list[tuple[tuple, str, str]] = []
    for name in ("prompt", "negative_prompt"):
        text = getattr(fields, name, None)
        if not family.weighted_prompts:
            if is_weighted(text):
                from . import families

                problems.append(((name,), f"prompt_syntax: weighted, and {family.name} (model '{label}') takes no "
                                          "weighted prompts in this version of runner",
                                 "remove the weights from this prompt (or set prompt_syntax: plain to pass the "
                                 "brackets on as text); weighted prompts run on "
                                 + ", ".join(other.name for other in families.FAMILIES if other.weighted_prompts)))
            continue
        problem = weight_problem(text)
        if problem:
            problems.append(((name,), problem, "use a weight of 0 or more, e.g. (word:0.5); or leave the word out"))
    clip_skip = getattr(fields, "clip_skip", None)
    if family.weighted_prompts and clip_skip and clip_skip not in family.weighted_clip_skip:
        problems.append((("clip_skip",), f"clip_skip {clip_skip} with prompt_syntax: weighted: compel encodes "
                                         f"{family.name} prompts from a fixed layer"
                         + (f" (clip_skip {', '.join(map(str, family.weighted_clip_skip))} is that layer)"
                            if family.weighted_clip_skip else ""),
                         "remove clip_skip" + (f", or use clip_skip {family.weighted_clip_skip[0]}"
                                               if family.weighted_clip_skip else "")
                         + ", or set prompt_syntax: plain"))
    return problems


def weighted_arguments(pipe, kwargs: dict[str, Any], inversions: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the call's arguments with prompt and negative_prompt replaced by their embeddings, what to record).

    SD 1.x/2.x (one CLIP text encoder): CompelForSD's configuration; `clip_skip: 1` is compel's penultimate layer,
    normalized, as diffusers' clip_skip=1. SDXL (two encoders; the refiner has the second alone): CompelForSDXL's,
    the penultimate layers joined, the second encoder's pooled output; with no negative prompt and the checkpoint's
    `force_zeros_for_empty_prompt`, zeros, as the pipeline itself does. With `inversions` (the checkpoint loaded
    textual-inversion embeddings) a multi-vector token is spelled out for each encoder's tokenizer, as compel's
    DiffusersTextualInversionManager does for the first."""
    import torch
    from compel import Compel, ReturnedEmbeddingsType

    kwargs = dict(kwargs)
    prompt = kwargs.pop("prompt", "") or ""
    negative = kwargs.pop("negative_prompt", None)
    # SDXL's second text encoder may read other texts (diffusers' prompt_2, negative_prompt_2: compel's style prompt)
    prompt_2, negative_2 = kwargs.pop("prompt_2", None), kwargs.pop("negative_prompt_2", None)
    clip_skip = kwargs.pop("clip_skip", None)
    encoders = [(getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)),
                (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None))]
    encoders = [(tokenizer, encoder) for tokenizer, encoder in encoders if encoder is not None]
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    if sdxl:
        kind = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
    elif clip_skip:
        kind = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NORMALIZED
    else:
        kind = ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
    compels = [Compel(tokenizer=tokenizer, text_encoder=encoder,
                      textual_inversion_manager=_inversion_manager(pipe, tokenizer) if inversions else None,
                      truncate_long_prompts=False, returned_embeddings_type=kind,
                      requires_pooled=sdxl and encoder is getattr(pipe, "text_encoder_2", None))
               for tokenizer, encoder in encoders]
    # as diffusers pairs them: [prompt, prompt_2] with the encoders there are (the refiner's one reads `prompt`)
    texts = [[prompt, negative or ""], [prompt_2 or prompt, negative_2 or negative or ""]][:len(compels)]
    with torch.no_grad():
        per_encoder = [[_conditioning(compel, text) for text in pair] for compel, pair in zip(compels, texts)]
        per_encoder = [compel.pad_conditioning_tensors_to_same_length(pair) for compel, pair in zip(compels, per_encoder)]
        if len(compels) == 2:  # as CompelForSDXL: each encoder's chunks padded to the other's count, then joined
            for index in range(2):
                per_encoder[0][index], per_encoder[1][index] = _same_chunks(compels, per_encoder[0][index],
                                                                             per_encoder[1][index])
        embeds = [torch.cat([pair[index] for pair in per_encoder], dim=-1) for index in range(2)]
        kwargs["prompt_embeds"], kwargs["negative_prompt_embeds"] = embeds
        if sdxl:
            pooler, (pooled, negative_pooled) = compels[-1].conditioning_provider, texts[-1]
            kwargs["pooled_prompt_embeds"] = pooler.get_pooled_embeddings([plain_text(pooled)])
            kwargs["negative_pooled_prompt_embeds"] = pooler.get_pooled_embeddings([plain_text(negative_pooled)])
            if negative is None and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
                kwargs["negative_prompt_embeds"] = torch.zeros_like(kwargs["prompt_embeds"])
                kwargs["negative_pooled_prompt_embeds"] = torch.zeros_like(kwargs["pooled_prompt_embeds"])
    record = {"prompt_syntax": "weighted",
              "prompt_weighting": {"library": "compel", "version": _version(),
                                   "prompt": [list(item) for item in fragments(prompt)],
                                   "negative_prompt": [list(item) for item in fragments(negative or "")],
                                   "compel_prompt": compel_form(prompt), "compel_negative_prompt": compel_form(negative or ""),
                                   **({"prompt_2": [list(item) for item in fragments(prompt_2)],
                                       "compel_prompt_2": compel_form(prompt_2)} if prompt_2 else {}),
                                   **({"negative_prompt_2": [list(item) for item in fragments(negative_2)],
                                       "compel_negative_prompt_2": compel_form(negative_2)} if negative_2 else {}),
                                   "embeddings": kind.name, **({"clip_skip": clip_skip} if clip_skip else {})}}
    return kwargs, record


def _conditioning(compel, prompt: str):
    from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment

    flat = FlattenedPrompt([Fragment(text, weight) for text, weight in fragments(prompt)] or [Fragment("", 1.0)])
    conditioning, _options = compel.build_conditioning_tensor_for_conjunction(Conjunction([flat]))
    return conditioning


def _same_chunks(compels, left, right):
    """CompelForSDXL's padding of the shorter encoder's embeddings with its encoding of "" (whole chunks)."""
    import torch

    if left.shape[1] > right.shape[1]:
        padding = _conditioning(compels[1], "")
        right = torch.cat([right, padding.repeat(right.shape[0], (left.shape[1] - right.shape[1]) // padding.shape[1], 1)], dim=1)
    elif right.shape[1] > left.shape[1]:
        padding = _conditioning(compels[0], "")
        left = torch.cat([left, padding.repeat(left.shape[0], (right.shape[1] - left.shape[1]) // padding.shape[1], 1)], dim=1)
    return left, right


def _inversion_manager(pipe, tokenizer):
    """compel's DiffusersTextualInversionManager for any of the pipeline's tokenizers (compel's own reads the first)."""
    from compel import BaseTextualInversionManager

    class Inversions(BaseTextualInversionManager):
        def expand_textual_inversion_token_ids_if_necessary(self, token_ids: list[int]) -> list[int]:
            if not token_ids:
                return token_ids
            prompt = pipe.maybe_convert_prompt(tokenizer.decode(token_ids), tokenizer)
            return tokenizer.encode(prompt, add_special_tokens=False)

    return Inversions()


def _version() -> str:
    from importlib.metadata import version

    return version("compel")
