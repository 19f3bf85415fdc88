"""Single-file checkpoints (.safetensors in the original LDM/A1111 layout) load offline.

- A tiny checkpoint converted to the original layout (tests/ldm_layout.py) gives the same pixels as its folder form,
  through txt2img, img2img and inpaint (config: naming the tiny folder form: its sizes are not the real ones).
- The configs runner ships: real-size models built from them on the meta device (no memory), laid out as original
  checkpoints, are recognised by diffusers as the architecture the config is for, runner picks that config, and
  the checkpoint converts back onto exactly the models' parameter names and shapes.
- The tokenizers built from the shipped CLIP merges give the well-known token ids.
- A file of unrelated tensors fails validation at its model entry, saying what was found.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_cli, write_workflow
from ldm_layout import pipeline_to_ldm

import runner

SEED = 5
PROMPT = "a cosy cabin in the woods"


def tiny_folder(name: str) -> Path:
    from runner.models.tiny import ensure_tiny

    return ensure_tiny(name, Path(os.environ["RUNNER_MODELS_DIR"]) / "tiny")


def tiny_single_file(name: str, dest: Path) -> Path:
    """The tiny model `name` (or the diffusers folder at that path) as one original-layout .safetensors file."""
    from diffusers import DiffusionPipeline
    from safetensors.torch import save_file

    pipe = DiffusionPipeline.from_pretrained(name if Path(name).is_dir() else tiny_folder(name))
    save_file({k: v.contiguous() for k, v in pipeline_to_ldm(pipe).items()}, dest)
    return dest


def sdxl_with_a_wider_second_text_encoder(dest: Path) -> Path:
    """tiny:sdxl with text_encoder_2 48 wide instead of 32. diffusers tells an SDXL file's two text encoders apart by
    width (768 and 1280 in the real ones), so tiny:sdxl's two 32-wide ones cannot make a single file."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from runner.models import tiny

    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**{**tiny.CLIP_TEXT_PROJ, "hidden_size": 48, "projection_dim": 48}))
    unet = UNet2DConditionModel(**{**tiny.UNET_SDXL, "cross_attention_dim": 32 + 48,
                                   "projection_class_embeddings_input_dim": 6 * 8 + 48})
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_folder("sdxl"), text_encoder_2=text_encoder_2, unet=unet)
    pipe.save_pretrained(dest)
    return dest


def images(tmp_path: Path, models: str, node: str) -> dict:
    workflow = write_workflow(tmp_path, "sf.yaml",
                              "version: 1\n"
                              f"models:\n{models}"
                              "nodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                              "  hole: {type: make_mask, like: $photo, shapes: [{rect: [8, 8, 40, 40]}]}\n"
                              f"  file: {{{node}, model: $models.file}}\n"
                              f"  folder: {{{node}, model: $models.folder}}\n")
    with runner.Session(out=tmp_path / "out") as session:
        run = session.run(workflow)
        assert run.status == "ok", run.error
        return {"file": run.image("file"), "folder": run.image("folder"), "manifest": run.manifest}


@pytest.mark.parametrize("tiny, node", [
    ("sd15", f"type: txt2img, prompt: {PROMPT}, steps: 2, seed: {SEED}"),
    ("sd15", f"type: img2img, image: $photo, prompt: {PROMPT}, steps: 2, seed: {SEED}"),
    ("sd15-inpaint", f"type: inpaint, image: $photo, mask: $hole, prompt: {PROMPT}, steps: 2, seed: {SEED}"),
    ("sdxl-refiner", f"type: refine, image: $photo, prompt: {PROMPT}, steps: 4, seed: {SEED}"),
    ("sdxl-wide", f"type: txt2img, prompt: {PROMPT}, steps: 2, seed: {SEED}"),
    ("sdxl-wide", f"type: inpaint, image: $photo, mask: $hole, prompt: {PROMPT}, steps: 2, seed: {SEED}"),
])
def test_single_file_gives_the_pixels_of_its_folder_form(tmp_path, tiny, node):
    if tiny == "sdxl-wide":
        folder = sdxl_with_a_wider_second_text_encoder(tmp_path / "sdxl-wide")
        tiny_single_file(str(folder), tmp_path / "model.safetensors")
        config = folder_form = "./sdxl-wide"
    else:
        tiny_single_file(tiny, tmp_path / "model.safetensors")
        config = folder_form = f"tiny:{tiny}"
    got = images(tmp_path, f"  file: {{source: ./model.safetensors, config: {config}}}\n  folder: {folder_form}\n", node)
    assert got["file"].tobytes() == got["folder"].tobytes()
    models = got["manifest"]["models"]
    file_identity = models["$models.file"]["identity"]
    from runner.core.hashing import sha256_file

    # the identity is the file's sha256 (and its config's identity), whatever the file is called
    assert file_identity.startswith(f"file:{sha256_file(tmp_path / 'model.safetensors')};config=")
    assert file_identity.split(";config=")[1].startswith("folder:" if tiny == "sdxl-wide" else "tiny:")


def test_a_renamed_copy_is_the_same_model_and_hashes_once(tmp_path):
    from runner.core.hashing import FileHashCache
    from runner.core.model_entry import ModelEntry
    from runner.models.sources import describe

    tiny_single_file("sd15", tmp_path / "a.safetensors")
    (tmp_path / "b.safetensors").write_bytes((tmp_path / "a.safetensors").read_bytes())
    memo = FileHashCache(tmp_path / "hashes.json")
    first = describe(ModelEntry(source="a.safetensors"), tmp_path, memo)[1]
    assert first == describe(ModelEntry(source="b.safetensors"), tmp_path, memo)[1]
    assert first.startswith("file:") and ";config=packaged:" in first
    memo.save()  # remembered by path, size and mtime: a later process reads the digest instead of hashing again
    import json

    remembered = json.loads((tmp_path / "hashes.json").read_text())
    assert {str((tmp_path / n).resolve()) for n in ("a.safetensors", "b.safetensors")} <= set(remembered)
    assert first.startswith(f"file:{remembered[str((tmp_path / 'a.safetensors').resolve())][2]};")


# ------------------------------------------------------------------ the shipped configs, at their real sizes
INPAINT_EXTRA = 5 * 320 * 3 * 3  # conv_in takes 9 channels instead of 4: 5 more 3x3 inputs to each of 320 outputs
SHAPES = {  # parameter counts of the released models (UNet, VAE, text encoders), a check on the configs' values
    "v1": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "v2": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "inpainting": {"unet": 859_520_964 + INPAINT_EXTRA, "text_encoder": 123_060_480},
    "inpainting_v2": {"unet": 865_910_724 + INPAINT_EXTRA, "text_encoder": 340_387_840},
    "xl_base": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
    "xl_inpaint": {"unet": 2_567_463_684 + INPAINT_EXTRA, "text_encoder_2": 694_659_840},
    "xl_refiner": {"vae": 83_653_863, "text_encoder_2": 694_659_840},
}


def meta_pipeline(config_dir: Path):
    """The pipeline's models built from `config_dir` on the meta device (shapes only), as a namespace."""
    import json
    from types import SimpleNamespace

    import diffusers
    import transformers
    from accelerate import init_empty_weights

    index = json.loads((config_dir / "model_index.json").read_text())
    parts = {}
    with init_empty_weights():
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            library, cls = index.get(name, [None, None])
            if cls is None:
                continue
            if library == "diffusers":
                model_cls = getattr(diffusers, cls)
                parts[name] = model_cls.from_config(model_cls.load_config(config_dir / name))
            else:
                model_cls = getattr(transformers, cls)
                parts[name] = model_cls(model_cls.config_class.from_pretrained(config_dir / name))
    return SimpleNamespace(**parts)


@pytest.mark.parametrize("architecture", ["v1", "v2", "inpainting", "inpainting_v2", "xl_base", "xl_refiner", "xl_inpaint"])
def test_shipped_configs_fit_checkpoints_of_their_architecture(tmp_path, architecture):
    from diffusers.loaders import single_file_utils as sfu

    from runner.models.single_file import checkpoint_architecture, packaged_config, pipeline_class

    config_dir = packaged_config(architecture, tmp_path)
    pipe = meta_pipeline(config_dir)
    checkpoint = pipeline_to_ldm(pipe)
    assert checkpoint_architecture(checkpoint, "meta") == architecture  # what diffusers infers, and runner accepts
    assert sfu.infer_diffusers_model_type(checkpoint) == architecture
    assert pipeline_class(config_dir).__name__ == {
        "v1": "StableDiffusionPipeline", "v2": "StableDiffusionPipeline", "inpainting": "StableDiffusionInpaintPipeline",
        "inpainting_v2": "StableDiffusionInpaintPipeline", "xl_base": "StableDiffusionXLPipeline",
        "xl_refiner": "StableDiffusionXLImg2ImgPipeline", "xl_inpaint": "StableDiffusionXLInpaintPipeline"}[architecture]

    # diffusers' own conversion of that checkpoint lands on exactly the models the shipped configs make
    converted = {"unet": sfu.convert_ldm_unet_checkpoint(checkpoint, pipe.unet.config),
                 "vae": sfu.convert_ldm_vae_checkpoint(checkpoint, pipe.vae.config)}
    for name, prefix in (("text_encoder", None), ("text_encoder_2", None)):
        model = getattr(pipe, name, None)
        if model is None:
            continue
        if architecture.startswith("xl") and name == "text_encoder":
            state = sfu.convert_ldm_clip_checkpoint(checkpoint)
        elif architecture in ("v1", "inpainting"):
            state = sfu.convert_ldm_clip_checkpoint(checkpoint)
        else:
            prefix = {"v2": "cond_stage_model.model.", "inpainting_v2": "cond_stage_model.model.",
                      "xl_refiner": "conditioner.embedders.0.model."}.get(architecture, "conditioner.embedders.1.model.")
            state = sfu.convert_open_clip_checkpoint(model, checkpoint, prefix=prefix)
        if not hasattr(model, "text_model"):
            state = {k.removeprefix("text_model."): v for k, v in state.items()}
        converted[name] = state
    for name, state in converted.items():
        want = {k: tuple(v.shape) for k, v in getattr(pipe, name).state_dict().items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        assert got == want, f"{architecture} {name}: {sorted(set(got) ^ set(want))[:5]}"
    for name, count in SHAPES.get(architecture, {}).items():
        assert sum(p.numel() for p in getattr(pipe, name).parameters()) == count, name


def test_clip_tokenizers_give_the_well_known_ids(tmp_path):
    from transformers import CLIPTokenizer

    from runner.models.single_file import packaged_config

    folder = packaged_config("xl_base", tmp_path)
    clip_l, open_clip = (CLIPTokenizer.from_pretrained(folder / sub) for sub in ("tokenizer", "tokenizer_2"))
    assert len(clip_l) == 49408 and clip_l.model_max_length == 77
    assert clip_l("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert clip_l("An astronaut riding a horse").input_ids == [49406, 550, 18376, 6765, 320, 4558, 49407]
    padded = dict(padding="max_length", max_length=9)
    assert clip_l("a cat", **padded).input_ids == [49406, 320, 2368, 49407] + [49407] * 5  # pad <|endoftext|>
    assert open_clip("a cat", **padded).input_ids == [49406, 320, 2368, 49407] + [0] * 5  # pad "!" (SD 2.x, SDXL 2nd)


# ------------------------------------------------------------------ what is not a checkpoint
def test_unrelated_tensors_fail_before_the_run_at_the_model_entry(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(2, 2), "head.bias": torch.zeros(2)}, tmp_path / "weights.safetensors")
    workflow = write_workflow(tmp_path, "bad.yaml", "version: 1\nmodels:\n  sd: ./weights.safetensors\nnodes:\n"
                              "  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2}\n")
    assert run_cli("validate", workflow) == 2  # validate reads the header (no torch)
    assert f"{workflow}:3:3: models.sd: " in capsys.readouterr().err
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--dry-run") == 2
    err = capsys.readouterr().err
    assert f"{workflow}:3:3: models.sd: " in err and "Traceback" not in err
    assert f"model './weights.safetensors' ({tmp_path / 'weights.safetensors'}) is not in a layout runner recognises" in err
    assert "none of its 2 tensors" in err and "encoder.* (1), head.* (1)" in err
    assert "model.diffusion_model." in err  # the fix says what a checkpoint holds


def test_a_lora_as_checkpoint_says_what_it_is(tmp_path):
    import shutil

    from runner.models.tiny import ensure_tiny

    lora = ensure_tiny("lora-sd15", Path(os.environ["RUNNER_MODELS_DIR"]) / "tiny") / "pytorch_lora_weights.safetensors"
    shutil.copy(lora, tmp_path / "style.safetensors")
    workflow = write_workflow(tmp_path, "lora.yaml", "version: 1\nmodels:\n  sd: ./style.safetensors\nnodes:\n"
                              "  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2}\n")
    # validate reads the tensor names: refused before anything runs, at the model entry, saying where a LoRA goes
    from runner.language.errors import WorkflowError

    with runner.Session(out=tmp_path / "out") as session, pytest.raises(WorkflowError) as refused:
        session.run(workflow)
    said = str(refused.value)
    assert "lora.yaml:3:3" in said and "is a LoRA, used where a checkpoint is expected" in said and "lora:" in said, said


def test_config_is_only_for_single_files(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "cfg.yaml", "version: 1\nmodels:\n  sd: {source: tiny:sd15, config: tiny:sd15}\n"
                              "nodes:\n  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--dry-run") == 2  # the plan reads the header
    err = capsys.readouterr().err
    assert f"{workflow}:3:27: models.sd.config: " in err and "config: is for single-file checkpoints" in err
    tiny_single_file("sd15", tmp_path / "m.safetensors")
    (tmp_path / "empty").mkdir()
    workflow.write_text("version: 1\nmodels:\n  sd: {source: ./m.safetensors, config: ./empty}\n"
                        "nodes:\n  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--dry-run") == 2  # the plan reads the header
    err = capsys.readouterr().err
    assert f"{workflow}:3:33: models.sd.config: " in err
    assert "config './empty' of model './m.safetensors' is not a diffusers pipeline folder" in err


def test_the_pipeline_node_loads_a_single_file_with_its_config(tmp_path):
    tiny_single_file("sd15", tmp_path / "model.safetensors")
    got = images(tmp_path, "  file: {source: ./model.safetensors, config: tiny:sd15}\n  folder: tiny:sd15\n",
                 f"type: pipeline, class: StableDiffusionImg2ImgPipeline, seed: {SEED}, "
                 f"call: {{prompt: {PROMPT}, image: $photo, num_inference_steps: 2}}")
    assert got["file"].tobytes() == got["folder"].tobytes()


def test_config_from_the_hub_cache_and_offline_without_it(tmp_path, monkeypatch):
    from test_pickle_refusal import hub_snapshot

    from runner.models.tiny import ensure_tiny

    hub = tmp_path / "hf-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_snapshot(hub, "acme/sd15-config", ensure_tiny("sd15", Path(os.environ["RUNNER_MODELS_DIR"]) / "tiny"))
    tiny_single_file("sd15", tmp_path / "model.safetensors")
    node = f"type: txt2img, prompt: {PROMPT}, steps: 2, seed: {SEED}"
    got = images(tmp_path, "  file: {source: ./model.safetensors, config: acme/sd15-config}\n  folder: tiny:sd15\n", node)
    assert got["file"].tobytes() == got["folder"].tobytes()
    assert ";config=hub:acme/sd15-config@0123456789abcdef" in got["manifest"]["models"]["$models.file"]["identity"]

    workflow = write_workflow(tmp_path, "absent.yaml", "version: 1\nmodels:\n"
                              "  file: {source: ./model.safetensors, config: acme/absent}\n"
                              f"nodes:\n  out: {{{node}, model: $models.file}}\n")
    with runner.Session(out=tmp_path / "out") as session:
        run = session.run(workflow)
    assert run.status == "failed"
    assert "model 'acme/absent' (revision main) is not in the local Hugging Face cache" in run.error
    assert "LocalEntryNotFoundError" not in run.error and "hf download acme/absent" in run.hint


def test_a_checkpoint_of_no_shipped_architecture_asks_for_config(tmp_path):
    # tiny:sd15 has two UNet blocks, not SD 1.x's four: diffusers recognises no architecture it knows
    tiny_single_file("sd15", tmp_path / "model.safetensors")
    workflow = write_workflow(tmp_path, "noconf.yaml", "version: 1\nmodels:\n  file: ./model.safetensors\n"
                              f"nodes:\n  out: {{type: txt2img, prompt: {PROMPT}, steps: 2, model: $models.file}}\n")
    with runner.Session(out=tmp_path / "out") as session:
        run = session.run(workflow)
    assert run.status == "failed"
    assert (f"single-file checkpoint './model.safetensors' ({tmp_path / 'model.safetensors'}): diffusers recognises no "
            "architecture in it (runner recognises a UNet in the original layout (model.diffusion_model.*) and a VAE "
            "in the original layout (first_stage_model.*) and a text encoder in the original layout "
            "(cond_stage_model.*)); runner ships configs for SD 1.x,") in run.error
    assert "name its diffusers config with config: on the model entry" in run.hint


def test_watch_follows_the_file_and_its_config_folder(tmp_path):
    from runner.core.hashing import FileHashCache
    from runner.engine.loading import load_workflow
    from runner.engine.run import plan_or_problems
    from runner.cli.watch import watched_paths
    from runner.models.tiny import ensure_tiny

    config = ensure_tiny("sd15", Path(os.environ["RUNNER_MODELS_DIR"]) / "tiny")
    tiny_single_file("sd15", tmp_path / "model.safetensors")
    workflow = load_workflow(write_workflow(tmp_path, "w.yaml", "version: 1\nmodels:\n"
                                            f"  file: {{source: ./model.safetensors, config: {config}}}\n"
                                            "nodes:\n  out: {type: txt2img, prompt: a, steps: 2, model: $models.file}\n"))
    files, folders = watched_paths(workflow, plan_or_problems(workflow, FileHashCache(tmp_path / "h.json"), None))
    assert (tmp_path / "model.safetensors").resolve() in files and config.resolve() in folders


def test_a_config_folder_counts_by_its_config_files_not_its_weights(tmp_path):
    import shutil

    from runner.core.hashing import FileHashCache
    from runner.core.model_entry import ModelEntry
    from runner.models.sources import describe

    tiny_single_file("sd15", tmp_path / "m.safetensors")
    shutil.copytree(tiny_folder("sd15"), tmp_path / "cfg")
    memo = FileHashCache(tmp_path / "h.json")

    def model_identity() -> str:
        return describe(ModelEntry(source="m.safetensors", config="cfg"), tmp_path, memo)[1]

    first = model_identity()
    weights = tmp_path / "cfg" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # not read from a config folder
    assert model_identity() == first
    scheduler = tmp_path / "cfg" / "scheduler" / "scheduler_config.json"
    scheduler.write_text(scheduler.read_text().replace('"steps_offset": 1', '"steps_offset": 0'))
    assert model_identity() != first


def test_the_shipped_configs_are_package_data():
    """pyproject's package-data globs take every shipped file into a wheel (a built wheel held all 57 files)."""
    import tomllib

    from runner.models.single_file import CONFIGS

    globs = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["runner.models"]
    files = {p for p in CONFIGS.rglob("*") if p.is_file()}
    matched = {p for pattern in globs for p in CONFIGS.parent.glob(pattern) if p.is_file()}
    assert files and files == matched
    assert (CONFIGS / "clip_bpe" / "LICENSE").is_file()


def test_a_vae_swap_on_a_single_file_equals_the_same_swap_on_its_folder_form(tmp_path):
    """`vae:` on a single-file checkpoint is passed to from_single_file (vae=), as on a folder to from_pretrained."""
    tiny_single_file("sd15", tmp_path / "model.safetensors")
    node = f"type: txt2img, prompt: {PROMPT}, steps: 2, seed: {SEED}"
    got = images(tmp_path, "  file: {source: ./model.safetensors, config: tiny:sd15, vae: tiny:sdxl}\n"
                           "  folder: {source: tiny:sd15, vae: tiny:sdxl}\n", node)
    assert got["file"].tobytes() == got["folder"].tobytes()
    (tmp_path / "own").mkdir()
    tiny_single_file("sd15", tmp_path / "own" / "model.safetensors")
    own = images(tmp_path / "own", "  file: {source: ./model.safetensors, config: tiny:sd15}\n  folder: tiny:sd15\n", node)
    assert own["file"].tobytes() != got["file"].tobytes()  # the swapped VAE decodes differently
    assert got["manifest"]["models"]["$models.file"]["vae"]["source"] == "tiny:sdxl"


def test_a_text_encoder_file_on_a_single_file_equals_the_same_swap_on_its_folder_form(tmp_path):
    """`text_encoder:` (a CLIP file in the transformers layout, as ComfyUI's text_encoders/ hold them) is read with
    the checkpoint's own text encoder config and passed to from_single_file, as to from_pretrained on a folder."""
    from comfy_layouts import _load_component, _save, clip_to_transformers_layout

    from runner.core.hashing import sha256_file

    tiny_single_file("sd15", tmp_path / "model.safetensors")
    # another CLIP of the same shape (tiny:flux's CLIP-L), written as ComfyUI keeps clip_l.safetensors
    _save(clip_to_transformers_layout(_load_component(tiny_folder("flux"), "text_encoder")), tmp_path / "clip_l.safetensors")
    node = f"type: txt2img, prompt: {PROMPT}, steps: 2, seed: {SEED}"
    got = images(tmp_path, "  file: {source: ./model.safetensors, config: tiny:sd15, text_encoder: ./clip_l.safetensors}\n"
                           "  folder: {source: tiny:sd15, text_encoder: ./clip_l.safetensors}\n", node)
    assert got["file"].tobytes() == got["folder"].tobytes()
    (tmp_path / "own").mkdir()
    tiny_single_file("sd15", tmp_path / "own" / "model.safetensors")
    own = images(tmp_path / "own", "  file: {source: ./model.safetensors, config: tiny:sd15}\n  folder: tiny:sd15\n", node)
    assert own["file"].tobytes() != got["file"].tobytes()  # the other text encoder reads the prompt differently
    assert got["manifest"]["models"]["$models.file"]["text_encoder"]["files"] == {
        "clip_l.safetensors": sha256_file(tmp_path / "clip_l.safetensors")}
