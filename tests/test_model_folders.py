"""Model folders (--model-path, RUNNER_MODEL_PATHS, ComfyUI's extra_model_paths.yaml), `runner models list`, and what
`validate` knows before anything runs: missing input files, models found nowhere (with where they were looked for),
unknown tiny names, and a model of the wrong kind for its place (a ControlNet or a VAE where a checkpoint goes)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import latest_run, manifest, run_cli, write_workflow
from test_import_comfyui import checkpoint_file
from test_pickle_refusal import schema_valid
from runner.engine.session import Session

HEAD = "version: 1\nname: mp\nseed: 7\n"


def comfy_models(root: Path) -> Path:
    """A ComfyUI-style models/ folder holding a checkpoint, a ControlNet, a LoRA and a VAE file (headers of the real
    layouts), and a flat model file at its top."""
    for kind, name, prefix in (("checkpoints", "dreamshaper_8.safetensors", "model.diffusion_model."),
                               ("controlnet", "control_canny.safetensors", "control_model."),
                               ("loras", "detail.safetensors", "lora_unet_down.lora_down."),
                               ("vae", "vae-ft-mse.safetensors", "decoder.")):
        (root / kind).mkdir(parents=True, exist_ok=True)
        checkpoint_file(root / kind / name, prefix)
    checkpoint_file(root / "flat_model.safetensors")
    return root


def validate(capsys, workflow: Path, *args) -> tuple[int, str]:
    code = run_cli("validate", workflow, *args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ------------------------------------------------------------------ finding bare names
def test_bare_names_are_found_in_the_comfyui_layout_and_flat(tmp_path, capsys):
    models = comfy_models(tmp_path / "models")
    (tmp_path / "wf").mkdir()
    workflow = write_workflow(tmp_path / "wf", "wf.yaml", HEAD + "models: {d: dreamshaper_8.safetensors}\nnodes:\n"
                              "  g: {type: txt2img, model: $models.d}\n  h: {type: txt2img, model: flat_model.safetensors}\n")
    code, text = validate(capsys, workflow, "--model-path", models)
    assert code == 0, text

    # not found: every folder looked in, at the place the name was given (here the --set), exit 2
    code, text = validate(capsys, workflow, "--set", "models.d=absent.safetensors", "--model-path", models)
    assert code == 2
    assert (f"error: --set models.d=absent.safetensors: models.d: model 'absent.safetensors' was not found: looked in the workflow's folder and "
            f"the model folders ({workflow.parent}, {models / 'checkpoints'}, {models / 'diffusers'}, "
            f"{models / 'diffusion_models'}, {models / 'unet'}, {models}, ") in text
    assert "fix: put it into one of these folders" in text and "Traceback" not in text


def test_identity_does_not_depend_on_where_the_file_was_found(tmp_path):
    models = comfy_models(tmp_path / "models")
    found = models / "checkpoints" / "dreamshaper_8.safetensors"
    with Session(out=tmp_path / "out", model_paths=[models]) as session:
        keys = [session.plan(session.load({"version": 1, "nodes": {"g": {"type": "txt2img", "model": model}}})).tasks["g"].key
                for model in ("dreamshaper_8.safetensors", str(found))]
        moved = tmp_path / "elsewhere" / "checkpoints"
        moved.mkdir(parents=True)
        shutil.copy(found, moved / found.name)
        other = session.plan(session.load({"version": 1, "nodes": {"g": {"type": "txt2img", "model": found.name}}},
                                          model_paths=[tmp_path / "elsewhere"])).tasks["g"].key
    assert keys[0] == keys[1]
    # the Session's own folder comes first; a copy elsewhere has the same bytes and so the same key
    assert other == keys[0]


def test_extra_model_paths_yaml_and_the_environment_variable(tmp_path, capsys, monkeypatch):
    comfy_models(tmp_path / "share" / "models")
    (tmp_path / "second").mkdir()
    checkpoint_file(tmp_path / "second" / "other.safetensors")
    config = tmp_path / "comfy" / "extra_model_paths.yaml"
    config.parent.mkdir()
    config.write_text("comfyui:\n    base_path: ../share\n    is_default: true\n"
                      "    checkpoints: |\n        models/checkpoints\n        ../second\n"
                      "    controlnet: models/controlnet\n")
    workflow = write_workflow(tmp_path, "wf.yaml", HEAD + "nodes:\n  g: {type: txt2img, model: other.safetensors, "
                              "controlnet: [{model: control_canny.safetensors, image: $p}]}\n"
                              "  p: {type: load_image, path: in.png}\n")
    monkeypatch.setenv("RUNNER_MODEL_PATHS", os.pathsep.join([str(tmp_path / "nowhere-else"), str(config)]))
    code, text = validate(capsys, workflow)
    assert code == 2 and "error: RUNNER_MODEL_PATHS: model path" in text and "nowhere-else does not exist" in text
    monkeypatch.setenv("RUNNER_MODEL_PATHS", str(config))
    code, text = validate(capsys, workflow)
    assert code == 0, text
    broken = tmp_path / "broken.yaml"
    broken.write_text("comfyui: models/checkpoints\n")
    code, text = validate(capsys, workflow, "--model-path", broken)
    assert code == 2 and f"error: {broken}:1:1: comfyui: a group of extra_model_paths.yaml is a mapping" in text, text
    code = run_cli("models", "list", "--json")
    listed = json.loads(capsys.readouterr().out)
    assert listed["model_paths"] == [str(config)]
    assert {(m["kind"], m["name"]) for m in listed["models"]} == {
        ("checkpoints", "dreamshaper_8.safetensors"), ("checkpoints", "other.safetensors"),
        ("controlnet", "control_canny.safetensors")}


def test_models_list_prints_what_is_found_by_kind(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RUNNER_MODEL_PATHS", raising=False)
    assert run_cli("models", "list") == 0
    assert "no model folders: give --model-path DIR or set RUNNER_MODEL_PATHS" in capsys.readouterr().out
    models = comfy_models(tmp_path / "models")
    assert run_cli("models", "list", "--model-path", models) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split()[:2] for line in lines[1:-1]]
    assert rows == [["checkpoints", "dreamshaper_8.safetensors"], ["controlnet", "control_canny.safetensors"],
                    ["loras", "detail.safetensors"], ["other", "flat_model.safetensors"], ["vae", "vae-ft-mse.safetensors"]]
    assert lines[-1] == f"5 models in {models}"
    assert run_cli("models", "list", "--model-path", tmp_path / "missing") == 2
    assert f"error: --model-path: model path {tmp_path / 'missing'} does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------ what validate knows
def test_wrong_kinds_are_refused_at_the_entry(tmp_path, capsys, models_dir):
    models = comfy_models(tmp_path / "models")
    from runner.models.tiny import ensure_tiny

    folder = tmp_path / "cn-folder"
    shutil.copytree(ensure_tiny("controlnet-sd15", models_dir / "tiny"), folder)
    workflow = write_workflow(tmp_path, "wf.yaml", HEAD + "models:\n  cn: control_canny.safetensors\n"
                              "  vae: {source: vae-ft-mse.safetensors}\n  net: ./cn-folder\n  sd: tiny:sd15\n"
                              "nodes:\n  p: {type: load_image, path: in.png}\n"
                              "  a: {type: txt2img, model: $models.cn}\n"
                              "  b: {type: txt2img, model: $models.vae}\n"
                              "  c: {type: txt2img, model: $models.net}\n"
                              "  d: {type: txt2img, model: $models.sd, controlnet: [{model: $models.sd, image: $p}], "
                              "lora: [{model: dreamshaper_8.safetensors}]}\n")
    code, text = validate(capsys, workflow, "--model-path", models)
    assert code == 2
    assert (f"{workflow}:5:3: models.cn: model 'control_canny.safetensors' ({models / 'controlnet'}/control_canny."
            "safetensors) is a ControlNet, used where a checkpoint is expected") in text
    assert "fix: put it under a node's controlnet: [{model: ..., image: ...}], and give this place a checkpoint" in text
    assert f"{workflow}:6:3: models.vae: model 'vae-ft-mse.safetensors'" in text and "is a VAE, used where a checkpoint" in text
    assert f"{workflow}:7:3: models.net: model './cn-folder' ({folder}) is a ControlNet, used where a checkpoint" in text
    assert f"{workflow}:8:3: models.sd: model 'tiny:sd15' is a checkpoint, used where a ControlNet is expected" in text
    assert "model 'dreamshaper_8.safetensors'" in text and "is a checkpoint, used where a LoRA is expected" in text
    assert text.count("error: ") == 5 and "Traceback" not in text


def test_missing_input_file_and_model_are_reported_by_validate_and_before_run(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "wf.yaml", HEAD + "models: {sd: ./no-model, t: tiny:sd16}\nnodes:\n"
                              "  p: {type: load_image, path: gone.png}\n"
                              "  g: {type: txt2img, model: $models.sd}\n  h: {type: txt2img, model: $models.t}\n")
    for command in (("validate",), ("run", "--out", tmp_path / "out")):
        code = run_cli(*command, workflow)
        err = capsys.readouterr().err
        assert code == 2
        assert f"{workflow}:4:10: models.sd: model source './no-model' is neither an existing folder or file" in err
        assert f"{workflow}:4:26: models.t: unknown tiny model 'tiny:sd16' (did you mean 'tiny:sd15'?)" in err
        assert (f"{workflow}:6:25: nodes.p.path: input file gone.png does not exist (looked for {tmp_path / 'gone.png'})"
                in err)
        assert "3 problems found" in err and ".cache" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(Exception) as raised, Session(out=tmp_path / "out") as session:
        session.run(workflow)
    assert type(raised.value).__name__ == "WorkflowError" and len(raised.value.problems) == 3


# ------------------------------------------------------------------ end to end
def test_a_diffusers_folder_in_the_model_folders_runs_like_its_source(tmp_path, capsys, models_dir):
    from runner.models.tiny import ensure_tiny

    models = tmp_path / "models"
    shutil.copytree(ensure_tiny("sd15", models_dir / "tiny"), models / "diffusers" / "my-sd15")
    text = HEAD + "nodes:\n  g: {type: txt2img, model: MODEL, steps: 2}\n  s: {type: save_image, image: $g}\n"
    found = write_workflow(tmp_path, "found.yaml", text.replace("MODEL", "my-sd15").replace("name: mp", "name: found"))
    tiny = write_workflow(tmp_path, "tiny.yaml", text.replace("MODEL", "tiny:sd15").replace("name: mp", "name: tiny"))
    assert run_cli("run", found, "--out", tmp_path / "out", "--quiet", "--model-path", models) == 0
    assert run_cli("run", tiny, "--out", tmp_path / "out", "--quiet") == 0
    run = latest_run(tmp_path / "out", "found")
    pixels = [np.asarray(Image.open(folder / "s.png")) for folder in (run, latest_run(tmp_path / "out", "tiny"))]
    assert np.array_equal(*pixels)
    record = manifest(run)
    assert record["model_paths"] == [str(models)]
    assert record["models"]["my-sd15"]["path"] == str(models / "diffusers" / "my-sd15")
    assert record["models"]["my-sd15"]["kind"] == "folder"
    schema_valid(record)


def test_the_model_path_flag_is_in_the_help(capsys):
    for command in ("run", "watch", "validate", "graph", "lock", "reproduce", "models"):
        with pytest.raises(SystemExit):
            run_cli(command, "--help")
        assert "--model-path DIR" in capsys.readouterr().out, command


# ------------------------------------------------------------------ vae: overrides
def test_vae_is_found_in_vae_folders_checked_and_keyed(tmp_path, capsys, models_dir):
    from runner.models.tiny import ensure_tiny

    models = comfy_models(tmp_path / "models")
    shutil.copytree(ensure_tiny("sdxl", models_dir / "tiny") / "vae", models / "vae" / "xl-vae")
    workflow = write_workflow(tmp_path, "wf.yaml", HEAD + "models:\n  sd: {source: tiny:sd15, vae: xl-vae}\n"
                              "nodes:\n  g: {type: txt2img, model: $models.sd}\n")
    code, text = validate(capsys, workflow, "--model-path", models)
    assert code == 0, text
    # a file that is not a VAE (a ControlNet), and a name found nowhere, at the entry's vae:
    for vae, says in (("control_canny.safetensors", "is a ControlNet, used where a VAE is expected"),
                      ("absent-vae", "models.sd.vae: model 'absent-vae' was not found: looked in the workflow's folder and the model "
                                     f"folders ({tmp_path}, {models / 'vae'}, {models}, ")):
        code, text = validate(capsys, workflow, "--model-path", models, "--set", f"models.sd={{source: tiny:sd15, vae: {vae}}}")
        assert code == 2 and says in text and "models.sd.vae" in text, text
    # the VAE is part of the identity: another VAE, another key; the same VAE found elsewhere, the same key
    with Session(out=tmp_path / "out", model_paths=[models]) as session:
        def key(entry):
            loaded = session.load({"version": 1, "models": {"sd": entry}, "nodes": {"g": {"type": "txt2img", "model": "$models.sd"}}})
            return session.plan(loaded).tasks["g"].key
        keys = {name: key(entry) for name, entry in (
            ("own", "tiny:sd15"), ("found", {"source": "tiny:sd15", "vae": "xl-vae"}),
            ("path", {"source": "tiny:sd15", "vae": str(models / "vae" / "xl-vae")}),
            ("tiny", {"source": "tiny:sd15", "vae": "tiny:sdxl"}))}
    assert keys["found"] == keys["path"] and len({keys["own"], keys["found"], keys["tiny"]}) == 3


def test_a_single_file_vae_from_the_vae_folder_is_what_diffusers_loads(tmp_path, models_dir):
    """A bare .safetensors VAE file from models/vae/, read offline with the checkpoint's own vae/ config: the image
    equals plain diffusers code passing the same from_single_file VAE as vae=."""
    import torch
    from diffusers import AutoencoderKL, AutoPipelineForText2Image

    from runner.models.tiny import ensure_tiny

    (tmp_path / "models" / "vae").mkdir(parents=True)
    vae_file = tmp_path / "models" / "vae" / "xl.safetensors"
    shutil.copy(ensure_tiny("sdxl", models_dir / "tiny") / "vae" / "diffusion_pytorch_model.safetensors", vae_file)
    workflow = write_workflow(tmp_path, "wf.yaml", HEAD + "models: {sd: {source: tiny:sd15, vae: xl.safetensors}}\n"
                              "nodes:\n  g: {type: txt2img, model: $models.sd, prompt: a barn, steps: 2, seed: 3}\n")
    with Session(out=tmp_path / "out", model_paths=[tmp_path / "models"]) as session:
        run = session.run(workflow)
    assert run.status == "ok", run.error
    sd15 = ensure_tiny("sd15", models_dir / "tiny")
    vae = AutoencoderKL.from_single_file(str(vae_file), config=str(sd15), subfolder="vae")
    pipe = AutoPipelineForText2Image.from_pretrained(str(sd15), vae=vae)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a barn", num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert run.image("g").convert("RGB").tobytes() == expected.convert("RGB").tobytes()
    recorded = run.manifest["models"]["$models.sd"]["vae"]
    assert recorded["path"] == str(vae_file) and recorded["kind"] == "file" and "xl.safetensors" in recorded["files"]


def test_watch_follows_a_local_vae(tmp_path, models_dir):
    from runner.cli.watch import watched_paths
    from runner.models.tiny import ensure_tiny

    vae = tmp_path / "models" / "vae" / "xl-vae"
    shutil.copytree(ensure_tiny("sdxl", models_dir / "tiny") / "vae", vae)
    with Session(out=tmp_path / "out", model_paths=[tmp_path / "models"]) as session:
        workflow = session.load({"version": 1, "models": {"sd": {"source": "tiny:sd15", "vae": "xl-vae"}},
                                 "nodes": {"g": {"type": "txt2img", "model": "$models.sd"}}})
        _files, folders = watched_paths(workflow, session.plan(workflow))
    assert vae in folders


def test_models_list_names_each_models_family(tmp_path, capsys, models_dir):
    """What a model was made for, from its files: a diffusers folder's pipeline class, a single file's tensor names, a
    ControlNet's config, a LoRA's layers (their cross-attention width for UNet LoRAs)."""
    import numpy as np
    from safetensors.numpy import save_file

    from runner.models.tiny import ensure_tiny

    models = tmp_path / "models"
    for kind, tiny in (("diffusers", "flux"), ("diffusers", "kandinsky3"), ("diffusers", "kandinsky22"),
                       ("controlnet", "controlnet-sd3"), ("controlnet", "controlnet-kandinsky22"),
                       ("loras", "lora-flux")):
        shutil.copytree(ensure_tiny(tiny, models_dir / "tiny"), models / kind / tiny)
    (models / "checkpoints").mkdir()
    one = {"weight": np.zeros((2, 2), np.float32)}
    for name, keys in (("sdxl.safetensors", ["model.diffusion_model.input_blocks.0.0.", "conditioner.embedders.0."]),
                       ("sd15.safetensors", ["model.diffusion_model.input_blocks.0.0.", "cond_stage_model.transformer."]),
                       ("sd3.5_medium.safetensors", ["model.diffusion_model.joint_blocks.0.x_block.attn.qkv."])):
        save_file({key + "weight": one["weight"] for key in keys}, str(models / "checkpoints" / name))
    (models / "unet").mkdir()
    save_file({"double_blocks.0.img_attn.qkv.weight": one["weight"], "single_blocks.0.linear1.weight": one["weight"]},
              str(models / "unet" / "flux1-dev.safetensors"))
    for name, width in (("sd15_style.safetensors", 768), ("sdxl_style.safetensors", 2048)):
        save_file({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight":
                   np.zeros((4, width), np.float32)}, str(models / "loras" / name))
    assert run_cli("models", "list", "--model-path", models, "--json") == 0
    families = {m["name"]: m["family"] for m in json.loads(capsys.readouterr().out)["models"]}
    assert families == {
        "flux": "FLUX.1", "kandinsky3": "Kandinsky 3", "kandinsky22": "Kandinsky 2.2",
        "controlnet-sd3": "Stable Diffusion 3", "controlnet-kandinsky22": "Kandinsky 2.2",
        "lora-flux/pytorch_lora_weights.safetensors": "FLUX.1", "sd15_style.safetensors": "SD 1.x/2.x",
        "sdxl_style.safetensors": "SDXL",
        "sdxl.safetensors": "SDXL", "sd15.safetensors": "SD 1.x/2.x", "sd3.5_medium.safetensors": "Stable Diffusion 3",
        "flux1-dev.safetensors": "FLUX.1"}, families
    assert run_cli("models", "list", "--model-path", models) == 0
    table = capsys.readouterr().out
    assert any(line.split()[:3] == ["diffusers", "kandinsky3", "Kandinsky"] for line in table.splitlines()), table


def test_a_symlink_loop_as_a_model_path_is_a_located_error(tmp_path, capsys, monkeypatch):
    """resolve() raises RuntimeError on a loop: it was a traceback for every command."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    workflow = write_workflow(tmp_path, "wf.yaml", HEAD + "nodes:\n  p: {type: load_image, path: in.png}\n")
    assert run_cli("validate", workflow, "--model-path", tmp_path / "loop1") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --model-path: model path {tmp_path / 'loop1'} cannot be read (Symlink loop"), err
    monkeypatch.setenv("RUNNER_MODEL_PATHS", str(tmp_path / "loop2"))
    assert run_cli("validate", workflow) == 2
    assert "error: RUNNER_MODEL_PATHS: model path" in capsys.readouterr().err
