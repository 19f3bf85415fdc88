"""Weighted and long prompts (`prompt_syntax: weighted`): runner's reading of the A1111/ComfyUI syntax, and the
images against compel's own documented usage (CompelForSD / CompelForSDXL, the prompt written in compel's syntax,
embeddings passed to the pipeline) on the same tiny models: pixel-identical. Under `plain` (the default) prompts
reach the pipeline as written, brackets and all."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import runner
from conftest import run_cli, write_workflow
from test_parity import SEED, folder, generator, quiet, same
from runner.models.prompt_weights import compel_form, fragments, is_weighted, segments, weight_problem


def close(pairs, expected):
    assert [text for text, _ in pairs] == [text for text, _ in expected], pairs
    assert all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(pairs, expected)), pairs


@pytest.mark.parametrize("prompt, expected", [
    ("a (cat:1.3) photo", [("a ", 1.0), ("cat", 1.3), (" photo", 1.0)]),
    ("a ((cat)) photo", [("a ", 1.0), ("cat", 1.21), (" photo", 1.0)]),
    ("a [cat] photo", [("a ", 1.0), ("cat", 1 / 1.1), (" photo", 1.0)]),
    ("a (red (cat:1.5)) photo", [("a ", 1.0), ("red ", 1.1), ("cat", 1.65), (" photo", 1.0)]),
    (r"a \(literal\) cat", [("a (literal) cat", 1.0)]),
    ("an (unclosed bracket", [("an ", 1.0), ("unclosed bracket", 1.1)]),
    ("a stray ) and ] and :1.2)", [("a stray ) and ] and :1.2)", 1.0)]),
    ("time: 5 (pm:0.5)", [("time: 5 ", 1.0), ("pm", 0.5)]),
])
def test_the_a1111_syntax(prompt, expected):
    close(segments(prompt), expected)


def test_fragments_compel_form_and_what_counts_as_weighted():
    assert fragments("a photo, (red cat:1.2), blue sky") == [("a photo,", 1.0), ("red cat", 1.2), (", blue sky", 1.0)]
    assert compel_form("a photo, (red cat:1.2), blue sky") == "a photo, (red cat)1.2 , blue sky"
    assert compel_form(r"a \(b\)") == r"a \(b\)"
    assert not is_weighted("a plain prompt, with commas: and colons") and not is_weighted("") and not is_weighted(None)
    assert is_weighted("a (cat:1.0)") and is_weighted(r"a \(b\)") and is_weighted("[x]")
    assert weight_problem("(cat:-0.5)") == "'cat' has the negative weight -0.5; weights are 0 or more"
    assert weight_problem("(cat:0)") is None


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=st.sampled_from(list("ab ()[]:\\.1-,")), max_size=40))
def test_any_text_is_read_without_error_and_keeps_its_words(prompt):
    # whatever the brackets, the words survive in order and weights are finite and positive or zero... or negative
    words = "".join(text for text, _ in segments(prompt))
    assert all(character in prompt for character in words)
    assert [c for c in words if c in "ab,"] == [c for c in prompt if c in "ab,"]


def workflow(tmp_path, models: str, nodes: str, syntax: str | None = "weighted", name: str = "w.yaml"):
    return write_workflow(tmp_path, name, "version: 1\n" + (f"prompt_syntax: {syntax}\n" if syntax else "")
                          + f"models: {{{models}}}\nnodes:\n" + nodes)


def run_image(tmp_path, path, node: str = "out"):
    with runner.Session(out=tmp_path / "out") as session:
        run = session.run(path)
    assert run.status == "ok", run.error
    return run.image(node), run


WEIGHTED = "a cosy (cabin:1.4) in the [woods], (snow)"
NEGATIVE = "blurry, (ugly:1.2)"


def test_sd15_against_compels_documented_usage(tmp_path):
    from compel import CompelForSD
    from diffusers import AutoPipelineForText2Image

    image, run = run_image(tmp_path, workflow(tmp_path, "m: tiny:sd15", (
        f"  out: {{type: txt2img, model: $models.m, prompt: '{WEIGHTED}', negative_prompt: '{NEGATIVE}', "
        f"steps: 2, seed: {SEED}}}\n")))
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    compel = CompelForSD(pipe)
    conditioning = compel("a cosy (cabin)1.4 in the (woods)0.909091 , (snow)1.1",
                          negative_prompt="blurry, (ugly)1.2")
    same(image, pipe(prompt_embeds=conditioning.embeds, negative_prompt_embeds=conditioning.negative_embeds,
                     num_inference_steps=2, generator=generator()).images[0])
    node = run.manifest["nodes"]["out"]
    weighting = node["prompt_weighting"]
    assert node["prompt_syntax"] == "weighted" and weighting["library"] == "compel"
    assert weighting["compel_prompt"] == "a cosy (cabin)1.4 in the (woods)0.909091 , (snow)1.1"
    assert weighting["negative_prompt"] == [["blurry,", 1.0], ["ugly", 1.2]]
    assert "prompt" not in node["call"] and "prompt_embeds" in node["call"]
    # the same words without weights: the same image as plain diffusers given the text (compel's encoding of an
    # unweighted prompt is the pipeline's own)
    plain, _ = run_image(tmp_path, workflow(tmp_path, "m: tiny:sd15", (
        f"  out: {{type: txt2img, model: $models.m, prompt: a cosy cabin, steps: 2, seed: {SEED}}}\n"), name="p.yaml"))
    same(plain, pipe("a cosy cabin", num_inference_steps=2, generator=generator()).images[0])


def test_sdxl_against_compels_documented_usage(tmp_path):
    """CompelForSDXL pools its raw string (brackets and numbers included); runner pools the prompt's words, as A1111
    and ComfyUI do: the pooled embeddings here are compel's for the words."""
    from compel import CompelForSDXL
    from diffusers import AutoPipelineForText2Image

    image, _ = run_image(tmp_path, workflow(tmp_path, "m: tiny:sdxl", (
        f"  out: {{type: txt2img, model: $models.m, prompt: '{WEIGHTED}', negative_prompt: '{NEGATIVE}', "
        f"steps: 2, seed: {SEED}}}\n")))
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sdxl")))
    compel = CompelForSDXL(pipe)
    conditioning = compel("a cosy (cabin)1.4 in the (woods)0.909091 , (snow)1.1", negative_prompt="blurry, (ugly)1.2")
    words = compel("a cosy cabin in the woods , snow", negative_prompt="blurry, ugly")
    same(image, pipe(prompt_embeds=conditioning.embeds, pooled_prompt_embeds=words.pooled_embeds,
                     negative_prompt_embeds=conditioning.negative_embeds,
                     negative_pooled_prompt_embeds=words.negative_pooled_embeds,
                     num_inference_steps=2, generator=generator()).images[0])
    # no negative prompt: SDXL's force_zeros_for_empty_prompt, as the pipeline does it itself
    image, _ = run_image(tmp_path, workflow(tmp_path, "m: tiny:sdxl", (
        f"  out: {{type: txt2img, model: $models.m, prompt: a cosy cabin, steps: 2, seed: {SEED}}}\n"), name="n.yaml"))
    same(image, pipe("a cosy cabin", num_inference_steps=2, generator=generator()).images[0])


def test_plain_passes_the_brackets_as_text_and_long_prompts_are_chunked_only_when_weighted(tmp_path):
    from diffusers import AutoPipelineForText2Image

    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    node = f"  out: {{type: txt2img, model: $models.m, prompt: '{WEIGHTED}', steps: 2, seed: {SEED}}}\n"
    plain, run = run_image(tmp_path, workflow(tmp_path, "m: tiny:sd15", node, syntax=None))
    same(plain, pipe(WEIGHTED, num_inference_steps=2, generator=generator()).images[0])
    assert "prompt_syntax" not in run.manifest["nodes"]["out"]
    weighted, _ = run_image(tmp_path, workflow(tmp_path, "m: tiny:sd15", node, name="w2.yaml"))
    assert weighted.tobytes() != plain.tobytes()
    # the tiny tokenizer reads a character a token: this prompt is about 3 chunks of 75; the end still counts
    long = "a cabin in the woods, " * 10
    images = []
    for ending in ("red door", "blue door"):
        node = f"  out: {{type: txt2img, model: $models.m, prompt: '{long}{ending}', steps: 2, seed: {SEED}}}\n"
        image, run = run_image(tmp_path, workflow(tmp_path, "m: tiny:sd15", node, name=f"{ending[:3]}.yaml"))
        images.append(image)
    assert images[0].tobytes() != images[1].tobytes()
    assert run.manifest["nodes"]["out"]["call"]["prompt_embeds"]  # recorded as what was passed
    truncated = [run_image(tmp_path, workflow(tmp_path, "m: tiny:sd15", (
        f"  out: {{type: txt2img, model: $models.m, prompt: '{long}{ending}', steps: 2, seed: {SEED}}}\n"),
        syntax="plain", name=f"t{ending[:3]}.yaml"))[0] for ending in ("red door", "blue door")]
    assert truncated[0].tobytes() == truncated[1].tobytes()  # diffusers cuts at 77 tokens


def test_weighted_prompts_with_a_textual_inversion_token(tmp_path):
    """compel's documented way with embeddings: DiffusersTextualInversionManager spells out a multi-vector token."""
    from compel import Compel, DiffusersTextualInversionManager
    from diffusers import AutoPipelineForText2Image
    from pathlib import Path

    image, _ = run_image(tmp_path, workflow(tmp_path, "m: {source: tiny:sd15, embeddings: {'<tiny>': tiny:embedding-sd15}}", (
        f"  out: {{type: txt2img, model: $models.m, prompt: 'a (<tiny>:1.2) cabin', negative_prompt: blurry, steps: 2, "
        f"seed: {SEED}}}\n")))
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    pipe.load_textual_inversion(str(Path(folder("embedding-sd15")) / "learned_embeds.safetensors"), token="<tiny>")
    compel = Compel(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, truncate_long_prompts=False,
                    textual_inversion_manager=DiffusersTextualInversionManager(pipe))
    embeds, negative = compel.pad_conditioning_tensors_to_same_length([compel("a (<tiny>)1.2 cabin"), compel("blurry")])
    same(image, pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, num_inference_steps=2,
                     generator=generator()).images[0])


def test_the_syntax_is_in_the_key_only_when_weighted(tmp_path):
    nodes = (f"  out: {{type: txt2img, model: $models.m, prompt: a cabin, steps: 2, seed: {SEED}}}\n"
             "  photo: {type: load_image, path: in.png}\n")
    keys = {}
    for syntax in (None, "plain", "weighted"):
        with runner.Session(out=tmp_path / "out") as session:
            loaded = session.load(workflow(tmp_path, "m: tiny:sd15", nodes, syntax=syntax, name=f"{syntax}.yaml"))
            keys[syntax] = {task.node_id: task.key for task in session.plan(loaded).tasks.values()}
    assert keys[None] == keys["plain"]
    assert keys["weighted"]["out"] != keys["plain"]["out"] and keys["weighted"]["photo"] == keys["plain"]["photo"]


def test_validate_refuses_what_a_family_cannot_weigh(tmp_path, capsys):
    path = workflow(tmp_path, "sd: tiny:sd15, xl: tiny:sdxl, flux: tiny:flux", (
        "  a: {type: txt2img, model: $models.flux, prompt: 'a (cabin:1.3)'}\n"
        "  b: {type: txt2img, model: $models.flux, prompt: 'a cabin, plain words'}\n"
        "  c: {type: txt2img, model: $models.sd, prompt: 'a (cabin:-1)'}\n"
        "  d: {type: txt2img, model: $models.sd, prompt: a cabin, clip_skip: 2}\n"
        "  e: {type: txt2img, model: $models.sd, prompt: a cabin, clip_skip: 1}\n"
        "  f: {type: txt2img, model: $models.xl, prompt: a cabin, clip_skip: 1}\n"))
    assert run_cli("validate", path) == 2
    err = capsys.readouterr().err
    assert (f"{path}:5:43: nodes.a.prompt: prompt_syntax: weighted, and FLUX.1 (model 'tiny:flux') takes no weighted "
            "prompts in this version of runner") in err, err
    assert "weighted prompts run on SD 1.x/2.x, SDXL" in err
    assert f"{path}:7:41: nodes.c.prompt: 'cabin' has the negative weight -1; weights are 0 or more" in err, err
    assert f"{path}:8:58: nodes.d.clip_skip: clip_skip 2 with prompt_syntax: weighted" in err, err
    assert f"{path}:10:58: nodes.f.clip_skip: clip_skip 1 with prompt_syntax: weighted" in err, err
    assert "nodes.b." not in err and "nodes.e." not in err and "4 problems found" in err, err
    # the same under plain: brackets are text, nothing to refuse
    path.write_text(path.read_text().replace("prompt_syntax: weighted\n", ""))
    assert run_cli("validate", path) == 0, capsys.readouterr().err
    # a diffusion upscaler takes its prompt as text: weights are refused there too
    upscale = workflow(tmp_path, "sd: tiny:sd15", "  p: {type: load_image, path: in.png}\n"
                       "  u: {type: upscale, image: $p, model: tiny:sd-x4-upscaler, prompt: 'a (sharp:1.2) photo'}\n",
                       name="up.yaml")
    assert run_cli("validate", upscale) == 2
    assert "nodes.u.prompt: prompt_syntax: weighted, and a diffusion upscaler takes no weighted prompts" in \
        capsys.readouterr().err


def test_sdxl_second_encoder_text_is_compels_style_prompt(tmp_path):
    """diffusers' prompt_2 / negative_prompt_2 (SDXL's OpenCLIP-G text, ComfyUI's text_g) are CompelForSDXL's style
    prompts: the first encoder reads the prompt, the second (and the pooled embedding) the second text."""
    from compel import CompelForSDXL
    from diffusers import AutoPipelineForText2Image

    image, run = run_image(tmp_path, workflow(tmp_path, "m: tiny:sdxl", (
        f"  out: {{type: txt2img, model: $models.m, prompt: 'a (cabin:1.3)', negative_prompt: blurry, steps: 2, "
        f"seed: {SEED}, pipeline_kwargs: {{prompt_2: 'oil painting, snow', negative_prompt_2: 'dark'}}}}\n")))
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sdxl")))
    conditioning = CompelForSDXL(pipe)("a (cabin)1.3", style_prompt="oil painting, snow", negative_prompt="blurry",
                                       negative_style_prompt="dark")
    same(image, pipe(prompt_embeds=conditioning.embeds, pooled_prompt_embeds=conditioning.pooled_embeds,
                     negative_prompt_embeds=conditioning.negative_embeds,
                     negative_pooled_prompt_embeds=conditioning.negative_pooled_embeds,
                     num_inference_steps=2, generator=generator()).images[0])
    assert run.manifest["nodes"]["out"]["prompt_weighting"]["prompt_2"] == [["oil painting, snow", 1.0]]
