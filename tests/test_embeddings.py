"""Textual-inversion embeddings on a model entry (`embeddings: {TOKEN: SOURCE}`), against diffusers' documented
`load_textual_inversion` on the same tiny models: pixel-identical; found in the model folders' embeddings/ by bare
name (ComfyUI's `embedding:NAME` in prompts), part of the model's identity, and checked before the run."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import run_cli, write_workflow
from test_parity import SEED, folder, generator, quiet, runner_image, same

PROMPT = "a photo of <tiny> in the woods"


def test_an_sd15_embedding_as_diffusers_docs_load_it(tmp_path):
    from diffusers import AutoPipelineForText2Image

    image, run = runner_image(tmp_path, "m: {source: tiny:sd15, embeddings: {'<tiny>': tiny:embedding-sd15}}, "
                                        "plain: tiny:sd15",
                              f"  out: {{type: txt2img, model: $models.m, prompt: '{PROMPT}', steps: 2, seed: {SEED}}}\n"
                              f"  other: {{type: txt2img, model: $models.plain, prompt: '{PROMPT}', steps: 2, "
                              f"seed: {SEED}}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    plain = pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0]
    pipe.load_textual_inversion(str(Path(folder("embedding-sd15")) / "learned_embeds.safetensors"), token="<tiny>")
    same(image, pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])
    # the same checkpoint without the embedding, in the same run, is untouched by it
    same(run.image("other"), plain)
    assert image.tobytes() != plain.tobytes()
    record = run.manifest["models"]["$models.m"]["embeddings"]["<tiny>"]
    assert record["source"].startswith("tiny:embedding-sd15") and "<tiny>" not in run.manifest["models"]["$models.plain"]


def test_an_sdxl_embedding_into_both_text_encoders(tmp_path):
    from diffusers import AutoPipelineForText2Image
    from safetensors.torch import load_file

    image, _run = runner_image(tmp_path, "m: {source: tiny:sdxl, embeddings: {'<tiny>': tiny:embedding-sdxl}}",
                               f"  out: {{type: txt2img, model: $models.m, prompt: '{PROMPT}', steps: 2, seed: {SEED}}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sdxl")))
    state_dict = load_file(str(Path(folder("embedding-sdxl")) / "learned_embeds.safetensors"))
    pipe.load_textual_inversion(state_dict["clip_g"], token="<tiny>", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    pipe.load_textual_inversion(state_dict["clip_l"], token="<tiny>", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    same(image, pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])


def test_comfyui_style_names_from_the_embeddings_folder(tmp_path):
    """ComfyUI writes `embedding:EasyNegative` in a prompt and keeps the file in models/embeddings/: the entry names
    that token and the bare file name."""
    import runner

    models = tmp_path / "models" / "embeddings"
    models.mkdir(parents=True)
    shutil.copy(Path(folder("embedding-sd15")) / "learned_embeds.safetensors", models / "EasyNegative.safetensors")
    workflow = write_workflow(tmp_path, "neg.yaml", "version: 1\nmodels:\n"
                              "  m: {source: tiny:sd15, embeddings: {'embedding:EasyNegative': EasyNegative.safetensors}}\n"
                              "nodes:\n"
                              "  out: {type: txt2img, model: $models.m, prompt: a cabin, negative_prompt: "
                              f"'embedding:EasyNegative, blurry', steps: 2, seed: {SEED}}}\n")
    with runner.Session(out=tmp_path / "out", model_paths=[tmp_path / "models"]) as session:
        run = session.run(workflow)
        key = run.manifest["nodes"]["out"]["key"]
    assert run.status == "ok", run.error
    assert run.manifest["models"]["$models.m"]["embeddings"]["embedding:EasyNegative"]["path"] == str(
        (models / "EasyNegative.safetensors").resolve())
    # the embedding is part of the model's identity, so of the node's key
    workflow.write_text(workflow.read_text().replace(", embeddings: {'embedding:EasyNegative': EasyNegative.safetensors}",
                                                     "").replace("embedding:EasyNegative, ", ""))
    with runner.Session(out=tmp_path / "out", model_paths=[tmp_path / "models"]) as session:
        assert session.run(workflow).manifest["nodes"]["out"]["key"] != key


def test_a_hub_embedding_loads_offline_from_the_hf_cache(tmp_path, monkeypatch):
    """A hub repository holding one .safetensors file by another name (sayakpaul/EasyNegative-test's layout), as
    diffusers' docs load it: load_textual_inversion(repo, weight_name="EasyNegative.safetensors", token=...)."""
    from diffusers import AutoPipelineForText2Image
    from test_pickle_refusal import hub_snapshot

    hub = tmp_path / "hf-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = tmp_path / "files"
    files.mkdir()
    shutil.copy(Path(folder("embedding-sd15")) / "learned_embeds.safetensors", files / "EasyNegative.safetensors")
    snapshot = hub_snapshot(hub, "acme/easynegative", files)
    image, run = runner_image(tmp_path, "m: {source: tiny:sd15, embeddings: {EasyNegative: acme/easynegative}}",
                              f"  out: {{type: txt2img, model: $models.m, prompt: a cabin, negative_prompt: "
                              f"'EasyNegative, blurry', steps: 2, seed: {SEED}}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    pipe.load_textual_inversion(str(snapshot), weight_name="EasyNegative.safetensors", token="EasyNegative")
    same(image, pipe("a cabin", negative_prompt="EasyNegative, blurry", num_inference_steps=2,
                     generator=generator()).images[0])
    assert run.manifest["models"]["$models.m"]["embeddings"]["EasyNegative"]["source"] == "acme/easynegative"


def test_embeddings_are_checked_before_the_run(tmp_path, capsys):
    models = tmp_path / "models"
    (models / "loras").mkdir(parents=True)
    shutil.copytree(folder("lora-sd15"), models / "loras" / "detail")
    workflow = write_workflow(tmp_path, "bad.yaml", "version: 1\nmodels:\n"
                              "  m: {source: tiny:sd15, embeddings: {'<a>': missing.safetensors, '<b>': detail}}\n"
                              "nodes:\n"
                              "  out: {type: txt2img, model: $models.m, prompt: 'a <a> cat', "
                              "negative_prompt: 'embedding:EasyNegative'}\n")
    assert run_cli("validate", workflow, "--model-path", models) == 2
    err = capsys.readouterr().err
    assert f"{workflow}:3:39: models.m.embeddings.<a>: model 'missing.safetensors' was not found" in err, err
    assert f"{workflow}:3:67: models.m.embeddings.<b>: model 'detail'" in err and "is a LoRA, used where a " \
                                                                                  "textual-inversion embedding" in err, err
    # the prompts are checked against the embeddings an entry loads once its models are found
    workflow = write_workflow(tmp_path, "bad2.yaml", "version: 1\nmodels:\n"
                              "  m: {source: tiny:sd15}\n"
                              "nodes:\n"
                              "  out: {type: txt2img, model: $models.m, prompt: 'a <a> cat', "
                              "negative_prompt: 'embedding:EasyNegative'}\n")
    assert run_cli("validate", workflow, "--model-path", models) == 2
    err = capsys.readouterr().err
    assert (f"{workflow}:5:63: nodes.out.negative_prompt: 'embedding:EasyNegative' names a textual-inversion "
            "embedding that model 'tiny:sd15' does not load") in err, err
    assert "embeddings: {'embedding:EasyNegative': EasyNegative.safetensors}" in err
    # a family whose pipelines take none is refused at the node that would run it
    workflow = write_workflow(tmp_path, "bad3.yaml", "version: 1\nmodels:\n"
                              "  m: {source: tiny:flux, embeddings: {'<a>': tiny:embedding-sd15}}\n"
                              "nodes:\n"
                              "  out: {type: txt2img, model: $models.m, prompt: 'a <a> cat'}\n")
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    assert (f"{workflow}:5:24: nodes.out.model: model 'tiny:flux' loads textual-inversion embeddings, and FLUX.1 takes "
            "none in diffusers") in err, err
