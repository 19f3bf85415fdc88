"""Pickle weights of every kind are refused unless the model entry says allow_pickle: true.

Each case takes a tiny model's safetensors weights and saves them as pickle (torch.save of the same tensors,
the safetensors removed): a diffusers pipeline, a ControlNet, a transformers depth model and a pose model,
a LoRA, Kandinsky 2.2, a single-file checkpoint, a hub snapshot. By default each is a located validation
error (exit 2) naming the file and the fix; with allow_pickle: true each loads and gives the same pixels as
the safetensors form, and the manifest says that pickle was allowed and which files it let in.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO, latest_run, manifest, run_cli, write_workflow

FIX = ("convert to safetensors, or, if you trust it, set allow_pickle: true on the model entry and allow that with "
       "--allow-pickle NAME")


def pickled_copy(models_dir: Path, tiny: str, dest: Path) -> Path:
    """A copy of tiny:`tiny` whose every .safetensors file is replaced by a torch.save pickle of the same tensors,
    named as diffusers and transformers name their pickle weights."""
    import torch
    from safetensors.torch import load_file

    from runner.models.tiny import ensure_tiny

    shutil.copytree(ensure_tiny(tiny, models_dir / "tiny"), dest)
    for file in sorted(dest.rglob("*.safetensors")):
        name = "pytorch_model.bin" if file.name == "model.safetensors" else file.name.replace(".safetensors", ".bin")
        torch.save(load_file(file), file.with_name(name))
        file.unlink()
    assert not list(dest.rglob("*.safetensors")) and list(dest.rglob("*.bin"))
    return dest


def workflow(folder: Path, models: str, nodes: str, name: str = "pk") -> Path:
    return write_workflow(folder, f"{name}.yaml",
                          f"version: 1\nname: {name}\nseed: 5\nmodels:\n{models}nodes:\n"
                          "  photo: {type: load_image, path: in.png, size: [64, 64]}\n" + nodes)


def pixels(path: Path) -> bytes:
    image = Image.open(path)
    return image.mode.encode() + repr(image.size).encode() + image.tobytes()


def entry_location(path: Path, name: str) -> str:
    """file:line:col of the model entry `name:` under models:."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith(f"  {name}:"):
            return f"{path}:{number}:3"
    raise AssertionError(name)


def assert_refused(err: str, path: Path, name: str, *files: str) -> None:
    assert f"{entry_location(path, name)}: models.{name}: " in err, err
    for file in files:
        assert file in err, err
    assert "pickle" in err and f"fix: {FIX}" in err, err
    assert "Traceback" not in err


def schema_valid(data: dict) -> None:
    import jsonschema

    jsonschema.validate(data, json.loads((REPO / "schemas" / "manifest.schema.json").read_text()))


# ------------------------------------------------------------------ diffusers pipeline
def test_pipeline_folder_with_pickle_weights(tmp_path, models_dir, capsys):
    pickled_copy(models_dir, "sd15", tmp_path / "sd15-pickle")
    nodes = ("  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2, width: 64, height: 64}\n"
             "  save: {type: save_image, image: $out}\n")
    refused = workflow(tmp_path, "  sd: ./sd15-pickle\n", nodes)
    assert run_cli("run", refused, "--out", tmp_path / "out", "--plain") == 2
    assert_refused(capsys.readouterr().err, refused, "sd", "unet/diffusion_pytorch_model.bin",
                   "text_encoder/pytorch_model.bin", str(tmp_path / "sd15-pickle"))

    reference = workflow(tmp_path, "  sd: tiny:sd15\n", nodes, name="ref")
    assert run_cli("run", reference, "--out", tmp_path / "out", "--plain") == 0
    expected = pixels(latest_run(tmp_path / "out", "ref") / "save.png")

    allowed = workflow(tmp_path, "  sd: {source: ./sd15-pickle, allow_pickle: true}\n", nodes)
    assert run_cli("run", allowed, "--out", tmp_path / "out", "--plain", "--allow-pickle", "sd") == 0
    run_dir = latest_run(tmp_path / "out", "pk")
    assert pixels(run_dir / "save.png") == expected
    data = manifest(run_dir)
    record = data["models"]["$models.sd"]
    assert record["allow_pickle"] is True and record["trust_remote_code"] is False
    assert record["pickle_files"] == ["text_encoder/pytorch_model.bin", "unet/diffusion_pytorch_model.bin",
                                      "vae/diffusion_pytorch_model.bin"]
    assert set(record["pickle_files"]) <= set(record["files"])
    schema_valid(data)


def test_allow_pickle_on_a_safetensors_model_still_loads_its_safetensors(tmp_path, capsys):
    """allow_pickle permits pickle; it does not forbid safetensors (asking the loaders for no safetensors would)."""
    nodes = ("  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2}\n"
             "  save: {type: save_image, image: $out}\n")
    reference = workflow(tmp_path, "  sd: tiny:sd15\n", nodes, name="ref")
    assert run_cli("run", reference, "--out", tmp_path / "out", "--plain") == 0
    allowed = workflow(tmp_path, "  sd: {source: tiny:sd15, allow_pickle: true}\n", nodes)
    assert run_cli("run", allowed, "--out", tmp_path / "out", "--plain", "--no-cache", "--allow-pickle", "sd") == 0, capsys.readouterr().err
    run_dir = latest_run(tmp_path / "out", "pk")
    assert pixels(run_dir / "save.png") == pixels(latest_run(tmp_path / "out", "ref") / "save.png")
    record = manifest(run_dir)["models"]["$models.sd"]
    assert record["allow_pickle"] is True and "pickle_files" not in record
    assert manifest(latest_run(tmp_path / "out", "ref"))["models"]["$models.sd"]["allow_pickle"] is False


# ------------------------------------------------------------------ ControlNet
def test_controlnet_folder_with_pickle_weights(tmp_path, models_dir, capsys):
    pickled_copy(models_dir, "controlnet-sd15", tmp_path / "cn-pickle")
    nodes = ("  edges: {type: canny, image: $photo}\n"
             "  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2, "
             "controlnet: [{model: $models.cn, image: $edges}]}\n"
             "  save: {type: save_image, image: $out}\n")
    refused = workflow(tmp_path, "  sd: tiny:sd15\n  cn: {source: ./cn-pickle}\n", nodes)
    assert run_cli("run", refused, "--out", tmp_path / "out", "--plain") == 2
    assert_refused(capsys.readouterr().err, refused, "cn", "diffusion_pytorch_model.bin")

    reference = workflow(tmp_path, "  sd: tiny:sd15\n  cn: tiny:controlnet-sd15\n", nodes, name="ref")
    assert run_cli("run", reference, "--out", tmp_path / "out", "--plain") == 0
    allowed = workflow(tmp_path, "  sd: tiny:sd15\n  cn: {source: ./cn-pickle, allow_pickle: true}\n", nodes)
    assert run_cli("run", allowed, "--out", tmp_path / "out", "--plain", "--allow-pickle", "cn") == 0
    run_dir = latest_run(tmp_path / "out", "pk")
    assert pixels(run_dir / "save.png") == pixels(latest_run(tmp_path / "out", "ref") / "save.png")
    models = manifest(run_dir)["models"]
    assert models["$models.cn"]["pickle_files"] == ["diffusion_pytorch_model.bin"]
    assert models["$models.sd"]["allow_pickle"] is False


# ------------------------------------------------------------------ transformers depth and pose models
VISION = {
    "dpt": "  out: {type: estimate_depth, image: $photo, model: $models.m}\n",
    "depth-anything": "  out: {type: estimate_depth, image: $photo, model: $models.m}\n",
    "vitpose": "  out: {type: detect_pose, image: $photo, model: $models.m, detector: null, min_score: 0.0}\n",
}


@pytest.mark.parametrize("tiny", list(VISION))
def test_transformers_vision_model_with_pickle_weights(tiny, tmp_path, models_dir, capsys):
    pickled_copy(models_dir, tiny, tmp_path / "pickled")
    nodes = VISION[tiny] + "  save: {type: save_image, image: $out}\n"
    refused = workflow(tmp_path, "  m: ./pickled\n", nodes)
    assert run_cli("run", refused, "--out", tmp_path / "out", "--plain") == 2
    assert_refused(capsys.readouterr().err, refused, "m", f"pytorch_model.bin in {tmp_path / 'pickled'}")

    reference = workflow(tmp_path, f"  m: tiny:{tiny}\n", nodes, name="ref")
    assert run_cli("run", reference, "--out", tmp_path / "out", "--plain") == 0
    allowed = workflow(tmp_path, "  m: {source: ./pickled, allow_pickle: true, trust_remote_code: true}\n", nodes)
    assert run_cli("run", allowed, "--out", tmp_path / "out", "--plain", "--allow-pickle", "m", "--trust-remote-code", "m") == 0
    run_dir = latest_run(tmp_path / "out", "pk")
    assert pixels(run_dir / "save.png") == pixels(latest_run(tmp_path / "out", "ref") / "save.png")
    data = manifest(run_dir)
    record = data["models"]["$models.m"]
    assert record["allow_pickle"] is True and record["trust_remote_code"] is True
    assert record["pickle_files"] == ["pytorch_model.bin"]
    schema_valid(data)


def test_inline_model_is_located_at_the_node_field(tmp_path, models_dir, capsys):
    pickled_copy(models_dir, "dpt", tmp_path / "dpt-pickle")
    path = workflow(tmp_path, "  unused: tiny:sd15\n",
                    "  depth: {type: estimate_depth, image: $photo, model: ./dpt-pickle}\n")
    assert run_cli("run", path, "--out", tmp_path / "out", "--plain", "--dry-run") == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "nodes.depth.model: model './dpt-pickle' has pickle weights" in err
    assert f"fix: {FIX} (an inline model has no entry: name it under models:, as {{source: ..., allow_pickle: true}})" in err


# ------------------------------------------------------------------ LoRA
def test_lora_pickle_file_and_folder(tmp_path, models_dir, capsys):
    import torch
    from safetensors.torch import load_file

    from runner.models.tiny import ensure_tiny

    safetensors = ensure_tiny("lora-sd15", models_dir / "tiny") / "pytorch_lora_weights.safetensors"
    shutil.copy(safetensors, tmp_path / "style.safetensors")
    torch.save(load_file(safetensors), tmp_path / "style.bin")
    pickled_copy(models_dir, "lora-sd15", tmp_path / "lora-folder")
    nodes = ("  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2, seed: 3, "
             "lora: [{model: $models.lora, scale: 1.0}]}\n"
             "  save: {type: save_image, image: $out}\n")
    for source, file in (("./style.bin", str(tmp_path / "style.bin")),
                         ("./lora-folder", "pytorch_lora_weights.bin")):
        refused = workflow(tmp_path, f"  sd: tiny:sd15\n  lora: {source}\n", nodes)
        assert run_cli("run", refused, "--out", tmp_path / "out", "--plain") == 2
        assert_refused(capsys.readouterr().err, refused, "lora", file)

    reference = workflow(tmp_path, "  sd: tiny:sd15\n  lora: ./style.safetensors\n", nodes, name="ref")
    assert run_cli("run", reference, "--out", tmp_path / "out", "--plain") == 0
    expected = pixels(latest_run(tmp_path / "out", "ref") / "save.png")
    for source in ("./style.bin", "./lora-folder"):
        allowed = workflow(tmp_path, f"  sd: tiny:sd15\n  lora: {{source: {source}, allow_pickle: true}}\n", nodes)
        assert run_cli("run", allowed, "--out", tmp_path / "out", "--plain", "--allow-pickle", "lora") == 0, capsys.readouterr().err
        run_dir = latest_run(tmp_path / "out", "pk")
        assert pixels(run_dir / "save.png") == expected, source
        assert manifest(run_dir)["models"]["$models.lora"]["pickle_files"] == (
            ["style.bin"] if source.endswith(".bin") else ["pytorch_lora_weights.bin"])


# ------------------------------------------------------------------ Kandinsky 2.2
def test_kandinsky_folder_with_pickle_weights(tmp_path, models_dir, capsys):
    pickled_copy(models_dir, "kandinsky22", tmp_path / "k-pickle")
    nodes = ("  out: {type: txt2img, model: $models.k, prompt: a room, steps: 2, width: 64, height: 64, "
             "pipeline_kwargs: {prior_num_inference_steps: 2}}\n"
             "  save: {type: save_image, image: $out}\n")
    refused = workflow(tmp_path, "  k: ./k-pickle\n", nodes)
    assert run_cli("run", refused, "--out", tmp_path / "out", "--plain") == 2
    assert_refused(capsys.readouterr().err, refused, "k", "decoder/movq/diffusion_pytorch_model.bin",
                   "prior/image_encoder/pytorch_model.bin and 2 more")

    reference = workflow(tmp_path, "  k: tiny:kandinsky22\n", nodes, name="ref")
    assert run_cli("run", reference, "--out", tmp_path / "out", "--plain") == 0
    allowed = workflow(tmp_path, "  k: {source: ./k-pickle, allow_pickle: true}\n", nodes)
    assert run_cli("run", allowed, "--out", tmp_path / "out", "--plain", "--allow-pickle", "k") == 0
    run_dir = latest_run(tmp_path / "out", "pk")
    # The same weights, but not the same bytes everywhere: safetensors tensors are memory-mapped at offsets that are
    # not 64-byte aligned, and the CPU kernels of the prior's CLIP vision encoder then sum in another order
    # (~3e-7 apart; cloned into aligned memory they equal the pickled ones exactly). At most one level per pixel.
    import numpy as np

    got, want = (np.asarray(Image.open(d / "save.png"), dtype=int) for d in (run_dir, latest_run(tmp_path / "out", "ref")))
    assert got.shape == want.shape and np.abs(got - want).max() <= 1
    assert "prior/prior/diffusion_pytorch_model.bin" in manifest(run_dir)["models"]["$models.k"]["pickle_files"]


# ------------------------------------------------------------------ single-file checkpoints and hub snapshots
def test_single_file_checkpoints_other_than_safetensors_are_refused(tmp_path, models_dir, capsys):
    import torch
    from safetensors.torch import load_file

    from runner.models.tiny import ensure_tiny

    unet = ensure_tiny("sd15", models_dir / "tiny") / "unet" / "diffusion_pytorch_model.safetensors"
    shutil.copy(unet, tmp_path / "model.safetensors")
    for name in ("model.ckpt", "model.pt", "model.weights"):
        torch.save(load_file(unet), tmp_path / name)
    nodes = "  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2}\n"
    for name, says in (("model.ckpt", "is a pickle checkpoint"), ("model.pt", "is a pickle checkpoint"),
                       ("model.weights", "is not a .safetensors file, so it would be read with torch's pickle loader")):
        path = workflow(tmp_path, f"  sd: ./{name}\n", nodes)
        assert run_cli("run", path, "--out", tmp_path / "out", "--plain", "--dry-run") == 2
        err = capsys.readouterr().err
        assert_refused(err, path, "sd", f"model './{name}' {says} ({tmp_path / name})")
    for entry in ("./model.safetensors", "{source: ./model.ckpt, allow_pickle: true}"):
        path = workflow(tmp_path, f"  sd: {entry}\n", nodes)
        assert run_cli("run", path, "--out", tmp_path / "out", "--plain", "--dry-run", "--allow-pickle", "sd") == 0, \
            capsys.readouterr().err


def hub_snapshot(hub: Path, repo_id: str, files: Path) -> Path:
    """`files` laid out as the cached commit of `repo_id` in a Hugging Face hub cache (refs/main -> snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(files, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_hub_snapshot_with_pickle_weights(tmp_path, models_dir, capsys, monkeypatch):
    from runner.models.tiny import ensure_tiny

    hub = tmp_path / "hf-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = hub_snapshot(hub, "acme/dpt-pickle", pickled_copy(models_dir, "dpt", tmp_path / "dpt-pickle"))
    hub_snapshot(hub, "acme/dpt", ensure_tiny("dpt", models_dir / "tiny"))
    nodes = "  out: {type: estimate_depth, image: $photo, model: $models.m}\n  save: {type: save_image, image: $out}\n"
    path = workflow(tmp_path, "  m: acme/dpt-pickle\n", nodes)
    assert run_cli("run", path, "--out", tmp_path / "out", "--plain") == 2
    assert_refused(capsys.readouterr().err, path, "m", f"model 'acme/dpt-pickle' has pickle weights and no safetensors "
                   f"beside them (pytorch_model.bin in {snapshot})")
    # the cached snapshots load offline, as folders: safetensors by default, pickle when allowed (same depth map)
    reference = workflow(tmp_path, "  m: acme/dpt\n", nodes, name="ref")
    assert run_cli("run", reference, "--out", tmp_path / "out", "--plain") == 0, capsys.readouterr().err
    allowed = workflow(tmp_path, "  m: {source: acme/dpt-pickle, allow_pickle: true}\n", nodes)
    assert run_cli("run", allowed, "--out", tmp_path / "out", "--plain", "--allow-pickle", "m") == 0, capsys.readouterr().err
    run_dir = latest_run(tmp_path / "out", "pk")
    assert pixels(run_dir / "save.png") == pixels(latest_run(tmp_path / "out", "ref") / "save.png")
    assert manifest(run_dir)["models"]["$models.m"]["pickle_files"] == ["pytorch_model.bin"]


# ------------------------------------------------------------------ the loaders' own check (after planning)
def _registry(tmp_path):
    from runner.models.pool import ModelPool
    from runner.models.registry import ModelRegistry

    return ModelRegistry(ModelPool(tmp_path / "models", max_ram=1 << 32), "cpu", "float32")


def _pose(registry, source):
    from runner.models.pose import pose_estimator

    return pose_estimator(registry, source, "id")


LOADERS = {
    "sd15": lambda registry, source: registry.base(source, "id"),
    "controlnet-sd15": lambda registry, source: registry.controlnet(source, "id"),
    "dpt": lambda registry, source: registry.depth_estimator(source, "id"),
    "vitpose": _pose,
}


@pytest.mark.parametrize("tiny", list(LOADERS))
def test_every_loader_checks_the_files_it_loads(tiny, tmp_path, models_dir):
    """A folder that turned pickle after the run was planned (or a hub snapshot checked only now) is refused by the
    loader itself, as a node error naming the file and the fix; allow_pickle: true loads it."""
    from runner.core.model_entry import ModelEntry
    from runner.models.sources import PickleRefused, classify

    folder = pickled_copy(models_dir, tiny, tmp_path / "pickled")
    load = LOADERS[tiny]
    source = classify(ModelEntry(source=str(folder)), tmp_path)
    with pytest.raises(PickleRefused) as info:
        load(_registry(tmp_path), source)
    message = str(info.value)
    assert str(folder) in message and ".bin" in message and message.endswith(FIX)
    assert load(_registry(tmp_path), classify(ModelEntry(source=str(folder), allow_pickle=True), tmp_path)) is not None


def test_a_model_without_safetensors_to_download_says_why_only_safetensors_were_asked_for(tmp_path, models_dir):
    """What a hub download without safetensors meets: the library's "no file named ...safetensors" explained."""
    from runner.core.model_entry import ModelEntry
    from runner.models.sources import ModelUnavailable, classify
    from runner.models.tiny import ensure_tiny

    folder = tmp_path / "no-weights"
    shutil.copytree(ensure_tiny("controlnet-sd15", models_dir / "tiny"), folder)
    os.unlink(folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ModelUnavailable) as info:
        _registry(tmp_path).controlnet(classify(ModelEntry(source=str(folder)), tmp_path), "id")
    message = str(info.value)
    assert "no safetensors weights" in message and "diffusion_pytorch_model.safetensors" in message
    assert message.endswith(FIX)
