"""Prompt embeddings are computed once per checkpoint, texts, CLIP skip and guidance, and reused (issue 28): the
same pixels as diffusers computing them itself, the prompt text still in the recorded call, the reuse noted."""

from __future__ import annotations

import runner
from conftest import write_workflow
from test_parity import PROMPT, SEED, folder, generator, quiet, runner_image, same


def test_nodes_with_the_same_prompts_share_their_embeddings(tmp_path):
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    nodes = (f"  first: {{type: txt2img, model: $models.m, prompt: {PROMPT}, negative_prompt: blurry, steps: 2, "
             f"seed: {SEED}, num_images: 2}}\n"
             f"  again: {{type: img2img, model: $models.m, image: $photo, prompt: {PROMPT}, negative_prompt: blurry, "
             f"steps: 2, seed: {SEED}}}\n"
             f"  other: {{type: txt2img, model: $models.m, prompt: {PROMPT}, negative_prompt: blurry, steps: 2, "
             f"seed: {SEED}, guidance_scale: 1.0}}\n"
             "  out: {type: save_image, images: [$first.images, $again, $other]}\n")
    image, run = runner_image(tmp_path, "m: tiny:sd15", nodes, output="first")
    nodes_record = run.manifest["nodes"]
    assert nodes_record["first"]["prompt_embeddings"] == "computed"
    assert nodes_record["again"]["prompt_embeddings"] == "reused"
    assert nodes_record["other"]["prompt_embeddings"] == "computed"  # no guidance: no negative half, another entry
    assert nodes_record["again"]["call"]["prompt"] == PROMPT and nodes_record["again"]["call"]["negative_prompt"] == "blurry"
    text2image = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    same(image, text2image(PROMPT, negative_prompt="blurry", num_inference_steps=2, num_images_per_prompt=2,
                           generator=generator()).images[0])
    image2image = quiet(AutoPipelineForImage2Image.from_pipe(text2image))
    same(run.image("again"), image2image(PROMPT, image=run.image("photo"), negative_prompt="blurry",
                                         num_inference_steps=2, generator=generator()).images[0])
    same(run.image("other"), text2image(PROMPT, negative_prompt="blurry", num_inference_steps=2, guidance_scale=1.0,
                                        generator=generator()).images[0])


def test_sdxl_pooled_embeddings_are_reused_across_a_sessions_runs(tmp_path):
    from diffusers import AutoPipelineForText2Image

    text = ("version: 1\nname: pooled\nmodels: {m: 'tiny:sdxl'}\nnodes:\n"
            f"  a: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, width: 64, height: 64, "
            "STEPS_OR_NOT}\n  s: {type: save_image, image: $a}\n")
    with runner.Session(out=tmp_path / "out") as session:
        first = session.run(write_workflow(tmp_path, "one.yaml", text.replace(", STEPS_OR_NOT", "")))
        second = session.run(write_workflow(tmp_path, "two.yaml", text.replace("STEPS_OR_NOT", "guidance_scale: 5.0")))
    assert first.manifest["nodes"]["a"]["prompt_embeddings"] == "computed"
    assert second.manifest["nodes"]["a"]["prompt_embeddings"] == "reused"  # the same texts; guidance > 1 both times
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sdxl")))
    same(first.image("a"), pipe(PROMPT, num_inference_steps=2, width=64, height=64, generator=generator()).images[0])
    same(second.image("a"), pipe(PROMPT, num_inference_steps=2, width=64, height=64, guidance_scale=5.0,
                                 generator=generator()).images[0])


def test_nothing_is_reused_where_the_text_encoders_change(tmp_path):
    nodes = (f"  first: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2}}\n"
             f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, "
             "lora: [{model: $models.l, scale: 0.8}]}\n")
    _image, run = runner_image(tmp_path, "m: tiny:sd15, l: tiny:lora-sd15", nodes)
    assert run.manifest["nodes"]["first"]["prompt_embeddings"] == "computed"
    assert "prompt_embeddings" not in run.manifest["nodes"]["out"]  # its LoRA may reach the text encoder
