"""`runner import comfyui`: ComfyUI API-format graphs (tests/comfyui/*.json, in the shapes of ComfyUI's own example
graphs, at tiny sizes and 2-4 steps) become workflows that validate and run offline on tiny models; what has no
faithful mapping is refused, naming the node and the value, and leaves no file behind."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from conftest import REPO, latest_run, manifest, run_cli
from runner.importers.comfyui.graph import SAMPLER_NAMES, SPECIAL_SCHEDULES, model_name, scheduler_for
from runner.language.fields import SCHEDULERS

FIXTURES = Path(__file__).parent / "comfyui"


def checkpoint_file(path: Path, prefix: str = "model.diffusion_model.") -> Path:
    """A .safetensors file whose tensor names are a single-file SD checkpoint's (A1111/ComfyUI layout): what the model
    folders and the kind check read of it (its header)."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({prefix + "input_blocks.0.0.weight": np.zeros((2, 2), np.float32)}, str(path))
    return path


def graph(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def picture(path: Path, size=(64, 48), alpha_hole: tuple | None = None) -> Path:
    image = Image.new("RGBA" if alpha_hole else "RGB", size, (40, 80, 120))
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=(230, 210, 90))
    if alpha_hole:
        hole = Image.new("L", size, 255)
        ImageDraw.Draw(hole).rectangle(alpha_hole, fill=0)
        image.putalpha(hole)
    image.save(path)
    return path


def import_graph(tmp_path: Path, capsys, data: dict | str, name: str = "graph", *, images=(), out: Path | None = None,
                 suffix: str = ".json"):
    """Write `data` (a prompt, or raw text) beside its input images into tmp/in and import it.
    Returns (exit status, the workflow file or None, stderr)."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for image in images:
        picture(folder / image[0], *image[1:])
    source = folder / f"{name}{suffix}"
    source.write_text(data if isinstance(data, str) else json.dumps(data, indent=1))
    out = out or folder / f"{name}.yaml"
    code = run_cli("import", "comfyui", source, "-o", out)
    err = capsys.readouterr().err
    return code, (out if out.exists() else None), err


def nodes_of(workflow: Path) -> dict:
    return yaml.safe_load(workflow.read_text())["nodes"]


def run_imported(tmp_path: Path, workflow: Path, *models: str) -> Path:
    """Run it offline with each model replaced by a tiny one (NAME=tiny:...); the run folder."""
    sets = [arg for model in models for arg in ("--set", f"models.{model}")]
    code = run_cli("run", workflow, "--out", tmp_path / "runs", "--plain", *sets)
    assert code == 0
    name = yaml.safe_load(workflow.read_text())["name"]
    return latest_run(tmp_path / "runs", name)


# ------------------------------------------------------------- the example graphs

def test_default_txt2img_graph(tmp_path, capsys):
    code, workflow, err = import_graph(tmp_path, capsys, graph("txt2img_default"), "txt2img_default")
    assert code == 0, err
    text = workflow.read_text()
    assert text.startswith("# Imported by `runner import comfyui` from the ComfyUI graph txt2img_default.json.")
    document = yaml.safe_load(text)
    assert document["models"] == {"v1_5_pruned_emaonly": "v1-5-pruned-emaonly.safetensors"}
    assert document["nodes"] == {
        "txt2img": {"type": "txt2img", "model": "$models.v1_5_pruned_emaonly",
                    "prompt": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
                    "negative_prompt": "text, watermark", "width": 64, "height": 48, "steps": 2, "guidance_scale": 8,
                    "scheduler": "euler", "seed": 156680208700286},
        "save": {"type": "save_image", "image": "$txt2img", "name": "ComfyUI.png"},
    }
    assert "  # ComfyUI 3 KSampler, 5 EmptyLatentImage, 6 CLIPTextEncode, 7 CLIPTextEncode, 8 VAEDecode\n" in text
    # the checkpoint is a bare file name: found through the model folders, and where it was looked for when it is not
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    assert (f"{workflow}:12:3: models.v1_5_pruned_emaonly: model 'v1-5-pruned-emaonly.safetensors' is not in the "
            "workflow's folder") in err and "--model-path DIR or RUNNER_MODEL_PATHS" in err
    models = tmp_path / "ComfyUI" / "models"
    (models / "checkpoints").mkdir(parents=True)
    checkpoint_file(models / "checkpoints" / "v1-5-pruned-emaonly.safetensors")
    assert run_cli("validate", workflow, "--model-path", models) == 0
    run = run_imported(tmp_path, workflow, "v1_5_pruned_emaonly=tiny:sd15")
    assert Image.open(run / "ComfyUI.png").size == (64, 48)
    assert manifest(run)["nodes"]["txt2img"]["seed"] == 156680208700286

    # without -o the same YAML goes to stdout (the workflow name comes from the graph's file, as -o gave it here)
    capsys.readouterr()
    assert run_cli("import", "comfyui", tmp_path / "in" / "txt2img_default.json") == 0
    assert capsys.readouterr().out == text


def test_sdxl_base_and_refiner_with_ksampler_advanced(tmp_path, capsys):
    code, workflow, err = import_graph(tmp_path, capsys, graph("sdxl_refiner"))
    assert code == 0, err
    nodes = nodes_of(workflow)
    assert nodes["txt2img"]["model"] == "$models.sd_xl_base_1_0"
    assert nodes["txt2img"]["pipeline_kwargs"] == {"denoising_end": 0.75}  # end_at_step 3 of 4 steps
    assert {k: nodes["refine"][k] for k in ("type", "model", "latents", "denoising_start", "steps", "seed")} == {
        "type": "refine", "model": "$models.sd_xl_refiner_1_0", "latents": "$txt2img.latents", "denoising_start": 0.75,
        "steps": 4, "seed": 0}
    assert nodes["save"]["image"] == "$refine"
    run = run_imported(tmp_path, workflow, "sd_xl_base_1_0=tiny:sdxl", "sd_xl_refiner_1_0=tiny:sdxl-refiner")
    assert Image.open(run / "ComfyUI.png").size == (64, 64)


def test_sdxl_text_encoders_carry_their_size_and_aesthetic_conditioning(tmp_path, capsys):
    prompt = graph("sdxl_refiner")
    for node_id, text in (("6", "a lighthouse"), ("7", "blurry")):
        prompt[node_id] = {"class_type": "CLIPTextEncodeSDXL", "inputs": {
            "clip": ["4", 1], "width": 4096, "height": 4096, "crop_w": 0, "crop_h": 0, "target_width": 64,
            "target_height": 64, "text_g": text + ", oil painting", "text_l": text}}
    prompt["15"] = {"class_type": "CLIPTextEncodeSDXLRefiner",
                    "inputs": {"clip": ["12", 1], "ascore": 6, "width": 1024, "height": 1024, "text": "a lighthouse"}}
    prompt["16"] = {"class_type": "CLIPTextEncodeSDXLRefiner",
                    "inputs": {"clip": ["12", 1], "ascore": 2, "width": 64, "height": 64, "text": "blurry"}}
    code, workflow, err = import_graph(tmp_path, capsys, prompt)
    assert code == 0, err
    nodes = nodes_of(workflow)
    assert nodes["txt2img"]["prompt"] == "a lighthouse" and nodes["txt2img"]["negative_prompt"] == "blurry"
    assert nodes["txt2img"]["pipeline_kwargs"] == {  # the target size equals the output's: diffusers' default
        "denoising_end": 0.75, "prompt_2": "a lighthouse, oil painting", "original_size": [4096, 4096],
        "negative_prompt_2": "blurry, oil painting", "negative_original_size": [4096, 4096]}
    assert nodes["refine"]["pipeline_kwargs"] == {"original_size": [1024, 1024], "negative_aesthetic_score": 2}
    run_imported(tmp_path, workflow, "sd_xl_base_1_0=tiny:sdxl", "sd_xl_refiner_1_0=tiny:sdxl-refiner")


def test_img2img_graph_denoise_becomes_strength(tmp_path, capsys):
    code, workflow, err = import_graph(tmp_path, capsys, graph("img2img"), images=[("example.png", (64, 48))])
    assert code == 0, err
    nodes = nodes_of(workflow)
    assert nodes["example"] == {"type": "load_image", "path": "example.png"}
    image2image = nodes["img2img"]
    assert (image2image["image"], image2image["strength"], image2image["scheduler"]) == ("$example", 0.87, "dpmpp_2m_karras")
    # ComfyUI ran 4 steps over the last 0.87 of the schedule; diffusers runs int(5 * 0.87) = 4 of 5
    assert image2image["steps"] == 5
    assert "note: steps 5 = ComfyUI's 4 / denoise 0.87" in workflow.read_text()
    run = run_imported(tmp_path, workflow, "v1_5_pruned_emaonly=tiny:sd15")
    assert Image.open(run / "ComfyUI.png").size == (64, 48)
    assert manifest(run)["nodes"]["img2img"]["call"]["strength"] == 0.87

    # written elsewhere, the image path is relative to the output file, and the import says how to allow it
    code, elsewhere, err = import_graph(tmp_path, capsys, graph("img2img"), out=tmp_path / "other" / "wf.yaml")
    assert code == 0, err
    assert nodes_of(elsewhere)["example"]["path"] == "../in/example.png"
    assert f"--allow-path {tmp_path / 'in'}" in err


def test_inpaint_graph_takes_the_mask_from_the_alpha_channel(tmp_path, capsys):
    code, workflow, err = import_graph(tmp_path, capsys, graph("inpaint"),
                                       images=[("yosemite_inpaint_example.png", (64, 48), (16, 8, 40, 30))])
    assert code == 0, err
    nodes = nodes_of(workflow)
    assert nodes["yosemite_inpaint_example"]["mode"] == "RGBA"
    assert nodes["yosemite_inpaint_example_mask"] == {"type": "make_mask", "from": "$yosemite_inpaint_example",
                                                      "channel": "transparency", "threshold": 128, "grow": 3}
    assert {k: nodes["inpaint"][k] for k in ("type", "model", "image", "mask", "strength", "scheduler")} == {
        "type": "inpaint", "model": "$models._512_inpainting_ema", "image": "$yosemite_inpaint_example",
        "mask": "$yosemite_inpaint_example_mask", "strength": 1, "scheduler": "euler"}
    run = run_imported(tmp_path, workflow, "_512_inpainting_ema=tiny:sd15-inpaint")
    assert Image.open(run / "ComfyUI.png").size == (64, 48)

    # SetLatentNoiseMask over a plain VAEEncode (an ordinary checkpoint, denoise below 1) is inpainting too
    prompt = graph("inpaint")
    prompt["26"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["30", 0], "mask": ["27", 1]}}
    prompt["30"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["27", 0], "vae": ["22", 2]}}
    prompt["25"]["inputs"]["denoise"] = 0.5
    code, masked, err = import_graph(tmp_path, capsys, prompt, "masked")
    assert code == 0, err
    nodes = nodes_of(masked)
    assert "grow" not in nodes["yosemite_inpaint_example_mask"]
    assert (nodes["inpaint"]["strength"], nodes["inpaint"]["steps"]) == (0.5, 4)
    checkpoint_file(tmp_path / "in" / "512-inpainting-ema.safetensors")  # the checkpoint beside the workflow
    assert run_cli("validate", masked) == 0


def test_controlnet_chain_becomes_a_controlnet_list(tmp_path, capsys):
    images = [(name, (64, 64)) for name in ("pose.png", "depth.png", "scribble.png")]
    code, workflow, err = import_graph(tmp_path, capsys, graph("controlnet_chain"), images=images)
    assert code == 0, err
    nodes = nodes_of(workflow)
    assert nodes["txt2img"]["controlnet"] == [  # innermost first; start/end only where not diffusers' 0 and 1
        {"model": "$models.control_v11p_sd15_openpose_fp16", "image": "$pose", "scale": 1.0},
        {"model": "$models.control_v11f1p_sd15_depth_fp16", "image": "$depth", "scale": 0.6, "start": 0.1, "end": 0.9},
        {"model": "$models.control_v11p_sd15_scribble_fp16", "image": "$scribble", "scale": 0.5},
    ]
    assert (nodes["txt2img"]["num_images"], nodes["txt2img"]["scheduler"]) == (2, "unipc")
    assert nodes["save"] == {"type": "save_image", "images": "$txt2img.images", "name": "controlnets.png"}
    run = run_imported(tmp_path, workflow, "v1_5_pruned_emaonly=tiny:sd15",
                       *(f"{name}=tiny:controlnet-sd15" for name in ("control_v11p_sd15_openpose_fp16",
                                                                     "control_v11f1p_sd15_depth_fp16",
                                                                     "control_v11p_sd15_scribble_fp16")))
    assert sorted(p.name for p in run.glob("controlnets_*.png")) == ["controlnets_0.png", "controlnets_1.png"]
    call = manifest(run)["nodes"]["txt2img"]["call"]
    assert call["controlnet_conditioning_scale"] == [1.0, 0.6, 0.5]


def test_lora_chain(tmp_path, capsys):
    code, workflow, err = import_graph(tmp_path, capsys, graph("lora"))
    assert code == 0, err
    document = yaml.safe_load(workflow.read_text())
    # a LoRA in a ComfyUI subfolder is named by its bare file; the one at strength 0 is left out, as ComfyUI skips it
    assert document["models"] == {"v1_5_pruned_emaonly": "v1-5-pruned-emaonly.safetensors",
                                  "watercolor_style_v2": "Watercolor Style (v2).safetensors"}
    assert document["nodes"]["txt2img"]["lora"] == [{"model": "$models.watercolor_style_v2", "scale": 0.7}]
    text = workflow.read_text()
    assert "# ComfyUI lora styles\\Watercolor Style (v2).safetensors" in text
    assert "node 11 (LoraLoader) (add_detail.safetensors) has strength 0: left out" in text
    run = run_imported(tmp_path, workflow, "v1_5_pruned_emaonly=tiny:sd15", "watercolor_style_v2=tiny:lora-sd15")
    assert (run / "ComfyUI_lora.png").is_file()


# ------------------------------------------------------------- real-world shapes

def test_a_png_that_comfyui_saved_imports_as_its_json(tmp_path, capsys):
    prompt = graph("txt2img_default")
    code, from_json, err = import_graph(tmp_path, capsys, prompt, "same")
    assert code == 0, err
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    info.add_text("workflow", json.dumps({"last_node_id": 9, "nodes": [], "links": []}))  # UI format beside it
    png = tmp_path / "png" / "same.png"
    png.parent.mkdir()
    Image.new("RGB", (16, 16)).save(png, pnginfo=info)
    assert run_cli("import", "comfyui", png, "-o", tmp_path / "in" / "from_png.yaml") == 0
    capsys.readouterr()
    json_lines = from_json.read_text().splitlines()
    png_lines = (tmp_path / "in" / "from_png.yaml").read_text().splitlines()
    assert png_lines[0] == "# Imported by `runner import comfyui` from the ComfyUI graph same.png (its 'prompt' text chunk)."
    assert [line.replace("same.png", "same.json") for line in png_lines[1:]] == [
        line.replace("name: same", "name: from_png") for line in json_lines[1:]]


@pytest.mark.parametrize("wrap, where", [
    (lambda p: {"input": {"workflow": p}}, "under input.workflow"),  # a serverless job (RunPod worker-comfyui)
    (lambda p: {"prompt": p, "client_id": "abc", "extra_data": {"extra_pnginfo": {"workflow": {"nodes": [], "links": []}}}},
     "under prompt"),  # the body of a POST /prompt request
    (lambda p: {"prompt": json.dumps(p)}, "under prompt"),  # the prompt as JSON text
])
def test_wrapped_prompts_import_as_the_bare_one(tmp_path, capsys, wrap, where):
    prompt = graph("txt2img_default")
    code, bare, err = import_graph(tmp_path, capsys, prompt, "bare")
    code, wrapped, err = import_graph(tmp_path, capsys, wrap(prompt), "wrapped")
    assert code == 0, err
    assert f"wrapped.json ({where})." in wrapped.read_text().splitlines()[0]
    assert yaml.safe_load(wrapped.read_text())["nodes"] == yaml.safe_load(bare.read_text())["nodes"]


def test_top_level_keys_that_are_no_nodes_are_skipped_and_named(tmp_path, capsys):
    prompt = graph("txt2img_default")
    prompt["last_link_id"] = 9
    prompt["extra"] = {"ds": {"scale": 1}}
    code, workflow, err = import_graph(tmp_path, capsys, prompt)
    assert code == 0, err
    assert "# Skipped top-level keys (no ComfyUI node): last_link_id, extra\n" in workflow.read_text()
    assert set(nodes_of(workflow)) == {"txt2img", "save"}


def test_nodes_no_saveimage_needs_are_left_out_and_named(tmp_path, capsys):
    prompt = graph("txt2img_default")
    prompt["20"] = copy.deepcopy(prompt["3"])  # a second sampler whose result nobody decodes
    code, workflow, err = import_graph(tmp_path, capsys, prompt)
    assert code == 0, err
    assert "# Not imported (no SaveImage needs them, so ComfyUI does not run them): 20 KSampler\n" in workflow.read_text()
    assert set(nodes_of(workflow)) == {"txt2img", "save"}


# ------------------------------------------------------------- refusals

def refused(tmp_path, capsys, data, name="graph", suffix=".json") -> str:
    out = tmp_path / "in" / f"{name}.yaml"
    code, workflow, err = import_graph(tmp_path, capsys, data, name, out=out, suffix=suffix)
    assert code == 2, err
    assert workflow is None, "a refused import writes no file"
    return err


def test_custom_nodes_are_refused_each_by_id_and_class(tmp_path, capsys):
    prompt = graph("txt2img_default")
    prompt["10"] = {"class_type": "Image Saver", "inputs": {"images": ["8", 0], "path": "out"}}
    prompt["11"] = {"class_type": "IPAdapterApply", "inputs": {"model": ["4", 0]}}
    prompt["3"]["inputs"]["model"] = ["11", 0]
    err = refused(tmp_path, capsys, prompt)
    assert "node 10 (Image Saver): not one of the ComfyUI core nodes runner imports" in err
    assert "node 11 (IPAdapterApply): not one of the ComfyUI core nodes runner imports" in err
    assert "runner imports graphs made of CheckpointLoaderSimple, LoraLoader, ControlNetLoader, CLIPTextEncode," in err
    assert "2 problems found" in err


def test_the_ui_format_is_refused_with_the_way_to_export_the_api_format(tmp_path, capsys):
    ui = {"id": "d087c857", "revision": 0, "last_node_id": 9, "last_link_id": 9,
          "nodes": [{"id": 3, "type": "KSampler", "widgets_values": [1, "randomize", 20, 8, "euler", "normal", 1]}],
          "links": [[1, 4, 0, 3, 0, "MODEL"]], "groups": [], "config": {}, "extra": {}, "version": 0.4}
    err = refused(tmp_path, capsys, ui)
    assert "ComfyUI's UI format" in err and "Save (API)" in err
    # a PNG holding only the UI-format chunk says the same
    info = PngInfo()
    info.add_text("workflow", json.dumps(ui))
    png = tmp_path / "ui.png"
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    assert run_cli("import", "comfyui", png, "-o", tmp_path / "ui.yaml") == 2
    err = capsys.readouterr().err
    assert "only the UI-format 'workflow' chunk" in err and "Save (API)" in err
    assert not (tmp_path / "ui.yaml").exists()


def _with(change):
    prompt = graph("txt2img_default")
    change(prompt)
    return prompt


@pytest.mark.parametrize("change, expected", [
    (lambda p: p["3"]["inputs"].update(sampler_name="dpmpp_sde", scheduler="karras"),
     ["node 3 (KSampler): sampler 'dpmpp_sde' with scheduler 'karras' has no runner scheduler",
      "runner maps euler, euler_ancestral, heun,", "dpmpp_2m with karras -> dpmpp_2m_karras"]),
    (lambda p: p["3"]["inputs"].update(scheduler="exponential"), ["sampler 'euler' with scheduler 'exponential'"]),
    (lambda p: p["3"]["inputs"].update(denoise=0.5), ["node 3 (KSampler): denoise 0.5 on an EmptyLatentImage"]),
    (lambda p: p["3"]["inputs"].update(cfg_rescale=0.7), ["node 3 (KSampler): input 'cfg_rescale' is not one runner can import"]),
    (lambda p: p["6"]["inputs"].update(text=["12", 0]), ["node 6 (CLIPTextEncode): input 'text' is a link to node 12"]),
    (lambda p: p["3"]["inputs"].pop("steps"), ["node 3 (KSampler): input 'steps' is missing"]),
    (lambda p: p["5"]["inputs"].update(width=100), ["node 5 (EmptyLatentImage): width 100 is not a multiple of 8"]),
    (lambda p: p["3"]["inputs"].update(seed=2**64 - 1), ["seed 18446744073709551615 is outside runner's 0 .. 2^63-1"]),
    (lambda p: p["8"]["inputs"].update(samples=["4", 0]), ["node 8 (VAEDecode): input 'samples' takes LATENT but links to "
                                                           "node 4 (CheckpointLoaderSimple) output 0 (MODEL)"]),
    (lambda p: p.pop("9"), ["the graph has no SaveImage node"]),
    (lambda p: p.update({"10": {"class_type": "LoraLoader", "inputs": {
        "model": ["4", 0], "clip": ["4", 1], "lora_name": "a.safetensors", "strength_model": 0.8, "strength_clip": 1.0}}})
     or p["3"]["inputs"].update(model=["10", 0]),
     ["node 10 (LoraLoader): strength_model 0.8 and strength_clip 1 differ"]),
    (lambda p: p.update({"10": {"class_type": "LoraLoader", "inputs": {
        "model": ["4", 0], "clip": ["4", 1], "lora_name": "a.safetensors", "strength_model": 1, "strength_clip": 1}}})
     or p["3"]["inputs"].update(model=["10", 0]),
     ["node 6 (CLIPTextEncode) and node 3 (KSampler) go through different LoraLoaders"]),
])
def test_values_without_a_faithful_mapping_are_refused_by_name(tmp_path, capsys, change, expected):
    err = refused(tmp_path, capsys, _with(change))
    for text in expected:
        assert text in err


def test_a_split_schedule_must_hand_over_with_leftover_noise(tmp_path, capsys):
    prompt = graph("sdxl_refiner")
    prompt["11"]["inputs"]["start_at_step"] = 2
    err = refused(tmp_path, capsys, prompt, "gap")
    assert "node 11 (KSamplerAdvanced) starts at step 2 of 4 (0.5 of the schedule) but node 10 stopped at 0.75" in err
    prompt = graph("sdxl_refiner")
    prompt["17"]["inputs"]["samples"] = ["10", 0]
    err = refused(tmp_path, capsys, prompt, "noisy")
    assert "which stops at 0.75 of its schedule with leftover noise: runner decodes finished images only" in err


def test_unreadable_sources_are_clear_errors(tmp_path, capsys):
    assert "not valid JSON" in refused(tmp_path, capsys, "{\"3\": {", "broken")
    assert "no ComfyUI nodes in it" in refused(tmp_path, capsys, {"hello": "world"}, "empty")
    png = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(png)
    assert run_cli("import", "comfyui", png) == 2
    assert "holds no ComfyUI graph (no 'prompt' text chunk)" in capsys.readouterr().err
    assert run_cli("import", "comfyui", tmp_path / "missing.json") == 2
    assert "no such file" in capsys.readouterr().err


# ------------------------------------------------------------- the mapping's parts

def test_sampler_and_scheduler_names_map_to_runner_schedulers():
    assert scheduler_for("euler", "normal") == "euler"
    assert scheduler_for("euler_ancestral", "simple") == "euler_a"
    assert scheduler_for("dpmpp_2m", "karras") == "dpmpp_2m_karras"
    assert scheduler_for("dpmpp_2m_sde_gpu", "karras") == "dpmpp_2m_sde_karras"
    assert scheduler_for("ddim", "ddim_uniform") == "ddim"
    assert scheduler_for("uni_pc_bh2", "sgm_uniform") == "unipc"
    assert scheduler_for("euler", "karras") is None and scheduler_for("lms", "normal") is None
    assert set(SAMPLER_NAMES.values()) | set(SPECIAL_SCHEDULES.values()) <= set(SCHEDULERS)


def test_model_names_come_from_file_stems():
    assert model_name("v1-5-pruned-emaonly.safetensors") == "v1_5_pruned_emaonly"
    assert model_name("SDXL\\sd_xl_base_1.0.safetensors") == "sd_xl_base_1_0"
    assert model_name("512-inpainting-ema.ckpt") == "_512_inpainting_ema"  # a name may not start with a digit
    assert model_name("[LoRA] Add More Details!.safetensors") == "lora_add_more_details"


def test_import_needs_neither_torch_nor_diffusers(tmp_path):
    code = ("import sys; from runner.cli import main; "
            f"status = main(['import', 'comfyui', {str(FIXTURES / 'controlnet_chain.json')!r}, '-o', {str(tmp_path / 'wf.yaml')!r}]); "
            "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
            "print(status, heavy)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "0 []", result.stderr
