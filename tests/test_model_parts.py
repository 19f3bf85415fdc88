"""Models as users hold them for the transformer families: FLUX.1 as ComfyUI keeps it (the transformer in
diffusion_models/, CLIP-L and T5-XXL in text_encoders/, the VAE in vae/: one model entry names its parts) and
Stability's SD3.5 single file (the MMDiT and VAE; its text encoders beside it), on tiny stand-ins written in those
layouts (tests/comfy_layouts.py), found through the model folders and read with a config folder offline. The images
must equal plain diffusers' on the tiny diffusers folder the files were written from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from comfy_layouts import flux_width, write_flux_comfy_files, write_sd3_single_file, write_sd3_text_encoder_files
from conftest import run_cli, write_workflow
from test_parity import PROMPT, SEED, folder, generator, quiet, same

import runner


@pytest.fixture
def flux_files(tmp_path):
    paths = write_flux_comfy_files(Path(folder("flux")), tmp_path)
    config = json.loads((Path(folder("flux")) / "transformer" / "config.json").read_text())
    with flux_width(config):
        yield tmp_path / "models", paths


def run_image(tmp_path, models_dir, entry: str, node: str = "txt2img, width: 64, height: 64"):
    workflow = write_workflow(tmp_path, "parts.yaml", f"version: 1\nmodels: {{m: {entry}}}\nnodes:\n"
                              f"  out: {{type: {node}, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n")
    with runner.Session(out=tmp_path / "out", model_paths=[models_dir]) as session:
        run = session.run(workflow)
    return run


def config_only(name: str, tmp_path: Path) -> Path:
    """A diffusers folder of the tiny model without its weights: what a config: download holds."""
    target = tmp_path / f"{name}-config"
    shutil.copytree(folder(name), target, ignore=shutil.ignore_patterns("*.safetensors"))
    return target


def test_flux_from_comfyui_files(tmp_path, flux_files):
    from diffusers import AutoPipelineForText2Image

    models, paths = flux_files
    run = run_image(tmp_path, models, "{source: flux1-dev.safetensors, config: tiny:flux, text_encoder: clip_l.safetensors, "
                                      "text_encoder_2: t5xxl_fp16.safetensors, vae: ae.safetensors}")
    assert run.status == "ok", run.error
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("flux")))
    same(run.image("out"), pipe(PROMPT, num_inference_steps=2, width=64, height=64, generator=generator()).images[0])
    record = run.manifest["models"]["$models.m"]
    assert record["path"] == str(paths["transformer"].resolve())
    for part in ("text_encoder", "text_encoder_2", "vae"):  # each part found in its ComfyUI folder, hashed
        assert record[part]["path"] == str(paths[part].resolve())
        assert list(record[part]["files"]) == [paths[part].name]
    assert run.manifest["nodes"]["out"]["pipeline_class"] == "FluxPipeline"


def test_a_flux_transformer_takes_what_it_lacks_from_a_config_with_weights(tmp_path, flux_files):
    """With a full diffusers folder as config:, the text encoders and VAE come from it; with one holding configs
    only, the entry must name them, and the message says how."""
    models, _paths = flux_files
    run = run_image(tmp_path, models, "{source: flux1-dev.safetensors, config: tiny:flux}")
    assert run.status == "ok", run.error
    bare = config_only("flux", tmp_path)
    run = run_image(tmp_path, models, f"{{source: flux1-dev.safetensors, config: '{bare}'}}")
    assert run.status == "failed"
    assert "is a transformer alone (ComfyUI's diffusion_models/ layout)" in run.error
    assert ("text_encoder: clip_l.safetensors, text_encoder_2: t5xxl_fp16.safetensors, vae: ae.safetensors"
            in run.hint), run.hint


def test_sd35_single_file_with_its_text_encoders_beside_it(tmp_path):
    from diffusers import AutoPipelineForText2Image

    models = tmp_path / "models"
    write_sd3_single_file(Path(folder("sd3")), models / "checkpoints" / "sd3.5_medium.safetensors")
    write_sd3_text_encoder_files(Path(folder("sd3")), tmp_path)
    bare = config_only("sd3", tmp_path)
    entry = (f"{{source: sd3.5_medium.safetensors, config: '{bare}', text_encoder: sd3_clip_l.safetensors, "
             "text_encoder_2: sd3_clip_g.safetensors, text_encoder_3: sd3_t5xxl_fp16.safetensors}")
    run = run_image(tmp_path, models, entry)
    assert run.status == "ok", run.error
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd3")))
    same(run.image("out"), pipe(PROMPT, num_inference_steps=2, width=64, height=64, generator=generator()).images[0])
    assert run.manifest["nodes"]["out"]["pipeline_class"] == "StableDiffusion3Pipeline"

    # the file holds no text encoders (as Stability ships SD3.5): without them the run says which to name
    run = run_image(tmp_path, models, f"{{source: sd3.5_medium.safetensors, config: '{bare}'}}")
    assert run.status == "failed"
    assert "does not hold its text_encoder, text_encoder_2, text_encoder_3" in run.error, run.error
    assert "text_encoder_3: t5xxl_fp16.safetensors" in run.hint


def test_without_config_the_architecture_repository_is_named(tmp_path, flux_files, monkeypatch):
    """A FLUX file without config: reads diffusers' repository for its architecture (dev: it has a guidance embedder);
    offline and not cached, the run says what to download."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    models, _paths = flux_files
    run = run_image(tmp_path, models, "{source: flux1-dev.safetensors, text_encoder: clip_l.safetensors, "
                                      "text_encoder_2: t5xxl_fp16.safetensors, vae: ae.safetensors}")
    assert run.status == "failed"
    assert "reads with the config files of black-forest-labs/FLUX.1-dev" in run.error, run.error
    assert "hf download black-forest-labs/FLUX.1-dev --include '*.json' '*.txt' '*.model'" in run.hint


def test_parts_are_checked_at_their_fields(tmp_path, flux_files, capsys):
    models, _paths = flux_files
    shutil.copytree(folder("controlnet-sd15"), models / "controlnet" / "canny")
    workflow = write_workflow(tmp_path, "bad.yaml", "version: 1\nmodels:\n"
                              "  a: {source: flux1-dev.safetensors, config: tiny:flux, text_encoder: canny}\n"
                              "  b: {source: flux1-dev.safetensors, config: tiny:flux, text_encoder_2: t5.safetensors}\n"
                              "  c: {source: flux1-dev.safetensors, config: tiny:flux, vae: clip_l.safetensors}\n"
                              "nodes:\n"
                              "  x: {type: txt2img, model: $models.a}\n  y: {type: txt2img, model: $models.b}\n"
                              "  z: {type: txt2img, model: $models.c}\n")
    assert run_cli("validate", workflow, "--model-path", models) == 2
    err = capsys.readouterr().err
    assert f"{workflow}:3:57: models.a.text_encoder: model 'canny'" in err and "is a ControlNet, used where a text " \
                                                                               "encoder is expected" in err, err
    assert f"{workflow}:4:57: models.b.text_encoder_2: model 't5.safetensors' was not found" in err, err
    assert f"{workflow}:5:57: models.c.vae: model 'clip_l.safetensors'" in err and "is a text encoder, used where a " \
                                                                                   "VAE is expected" in err, err


def test_a_part_the_pipeline_has_no_place_for(tmp_path, flux_files):
    models, _paths = flux_files
    run = run_image(tmp_path, models, "{source: flux1-dev.safetensors, config: tiny:flux, "
                                      "text_encoder_3: t5xxl_fp16.safetensors}")
    assert run.status == "failed"
    assert "its pipeline has no text_encoder_3 (its text encoders: text_encoder, text_encoder_2)" in run.error


def test_flux_all_in_one_checkpoint(tmp_path, flux_files):
    """ComfyUI's all-in-one FLUX checkpoint (the transformer under model.diffusion_model., its VAE and text encoders in
    the same file), read with a config folder that holds no weights."""
    from diffusers import AutoPipelineForText2Image

    from comfy_layouts import write_flux_all_in_one

    models, _paths = flux_files
    write_flux_all_in_one(Path(folder("flux")), models / "checkpoints" / "flux1-dev-aio.safetensors")
    run = run_image(tmp_path, models, f"{{source: flux1-dev-aio.safetensors, config: '{config_only('flux', tmp_path)}'}}")
    assert run.status == "ok", run.error
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("flux")))
    same(run.image("out"), pipe(PROMPT, num_inference_steps=2, width=64, height=64, generator=generator()).images[0])
