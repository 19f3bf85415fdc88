"""IP-Adapters (`ip_adapter: [{model, image, scale, mask, image_encoder}]` on txt2img, img2img and inpaint), against
diffusers' documented usage on the same tiny models (load_ip_adapter, set_ip_adapter_scale, ip_adapter_image):
pixel-identical; unloaded after the node, so the checkpoint's other nodes run without them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import runner
from conftest import run_cli, write_workflow
from test_parity import SEED, folder, generator, quiet, same

PROMPT = "a cosy cabin in the woods"


def run(tmp_path, models: str, nodes: str, name: str = "ip.yaml"):
    path = write_workflow(tmp_path, name, "version: 1\n" f"models: {{{models}}}\nnodes:\n"
                          "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  hole: {type: make_mask, like: $photo, shapes: [{rect: [0, 0, 32, 64]}]}\n" + nodes)
    with runner.Session(out=tmp_path / "out") as session:
        result = session.run(path)
    assert result.status == "ok", result.error
    return result


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_txt2img_with_an_image_prompt_as_diffusers_docs_write_it(tmp_path, family):
    from diffusers import AutoPipelineForText2Image

    result = run(tmp_path, f"m: tiny:{family}, ip: tiny:ip-adapter-{family}", (
        f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
        "ip_adapter: [{model: $models.ip, image: $photo, scale: 0.6}]}\n"
        f"  plain: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n"))
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder(family)))
    plain = pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0]
    pipe.load_ip_adapter(folder(f"ip-adapter-{family}"), subfolder="", weight_name="ip-adapter.safetensors")
    pipe.set_ip_adapter_scale(0.6)
    expected = pipe(PROMPT, ip_adapter_image=result.image("photo"), num_inference_steps=2,
                    generator=generator()).images[0]
    same(result.image("out"), expected)
    assert result.image("out").tobytes() != plain.tobytes()
    same(result.image("plain"), plain)  # unloaded after its node
    record = result.manifest["nodes"]["out"]["ip_adapters"][0]
    assert record["model"].startswith(f"tiny:ip-adapter-{family}") and record["scale"] == 0.6


def test_two_adapters_a_mask_and_img2img(tmp_path):
    """Several adapters (diffusers' lists of weight names, scales and images), the second masked to the left half
    (IPAdapterMaskProcessor masks as cross_attention_kwargs), on img2img."""
    from diffusers import AutoPipelineForImage2Image
    from diffusers.image_processor import IPAdapterMaskProcessor

    result = run(tmp_path, "m: tiny:sd15, ip: tiny:ip-adapter-sd15", (
        f"  out: {{type: img2img, model: $models.m, image: $photo, prompt: {PROMPT}, steps: 4, seed: {SEED}, "
        "ip_adapter: [{model: $models.ip, image: $photo, scale: 0.7}, {model: $models.ip, image: $hole, scale: 0.4, "
        "mask: $hole}]}\n"))
    photo, hole = result.image("photo"), result.image("hole")
    pipe = quiet(AutoPipelineForImage2Image.from_pretrained(folder("sd15")))
    pipe.load_ip_adapter(folder("ip-adapter-sd15"), subfolder="",
                         weight_name=["ip-adapter.safetensors", "ip-adapter.safetensors"])
    pipe.set_ip_adapter_scale([0.7, 0.4])
    processor = IPAdapterMaskProcessor()
    everywhere = processor.preprocess([hole.point(lambda _v: 255).convert("L")], height=64, width=64)
    left = processor.preprocess([hole.convert("L")], height=64, width=64)
    masks = [everywhere.reshape(1, 1, 64, 64), left.reshape(1, 1, 64, 64)]
    expected = pipe(PROMPT, image=photo, ip_adapter_image=[photo.convert("RGB"), hole.convert("RGB")],
                    cross_attention_kwargs={"ip_adapter_masks": masks}, num_inference_steps=4,
                    generator=generator()).images[0]
    same(result.image("out"), expected)
    assert [record["mask"] for record in result.manifest["nodes"]["out"]["ip_adapters"]] == [False, True]


def test_scale_zero_is_no_adapter_and_a_per_block_scale(tmp_path):
    from diffusers import AutoPipelineForText2Image

    style = "{up: {block_0: [0.0, 1.0, 0.0]}}"
    result = run(tmp_path, "m: tiny:sdxl, ip: tiny:ip-adapter-sdxl", (
        f"  off: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
        "ip_adapter: [{model: $models.ip, image: $photo, scale: 0}]}\n"
        f"  plain: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n"
        f"  styled: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
        f"ip_adapter: [{{model: $models.ip, image: $photo, scale: {style}}}]}}\n"))
    same(result.image("off"), result.image("plain"))
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sdxl")))
    pipe.load_ip_adapter(folder("ip-adapter-sdxl"), subfolder="", weight_name="ip-adapter.safetensors")
    pipe.set_ip_adapter_scale({"up": {"block_0": [0.0, 1.0, 0.0]}})
    same(result.image("styled"), pipe(PROMPT, ip_adapter_image=result.image("photo"), num_inference_steps=2,
                                      generator=generator()).images[0])


def test_comfyui_folders_and_the_h94_layout(tmp_path, monkeypatch):
    """A single file in ipadapter/ with its encoder from clip_vision/ (ComfyUI's folders), and a hub repository laid
    out as h94/IP-Adapter (models/ip-adapter_sd15.safetensors, models/image_encoder/) picked by subfolder and
    weight_name: both the same adapter, the same image."""
    from test_pickle_refusal import hub_snapshot

    models = tmp_path / "models"
    (models / "ipadapter").mkdir(parents=True)
    shutil.copy(Path(folder("ip-adapter-sd15")) / "ip-adapter.safetensors", models / "ipadapter" / "ip-adapter_sd15.safetensors")
    shutil.copytree(Path(folder("ip-adapter-sd15")) / "image_encoder", models / "clip_vision" / "vit-h")
    repo = tmp_path / "repo" / "models"
    repo.mkdir(parents=True)
    shutil.copy(Path(folder("ip-adapter-sd15")) / "ip-adapter.safetensors", repo / "ip-adapter_sd15.safetensors")
    shutil.copy(Path(folder("ip-adapter-sd15")) / "ip-adapter.safetensors", repo / "ip-adapter-other.safetensors")
    shutil.copytree(Path(folder("ip-adapter-sd15")) / "image_encoder", repo / "image_encoder")
    hub = tmp_path / "hf-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_snapshot(hub, "acme/IP-Adapter", tmp_path / "repo")
    nodes = "".join(
        f"  {name}: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, ip_adapter: [{item}]}}\n"
        for name, item in (("tiny", "{model: $models.ip, image: $photo}"),
                           ("comfy", "{model: ip-adapter_sd15.safetensors, image_encoder: vit-h, image: $photo}"),
                           ("hub", "{model: $models.h94, image: $photo}")))
    path = write_workflow(tmp_path, "layouts.yaml", "version: 1\nmodels:\n  m: tiny:sd15\n  ip: tiny:ip-adapter-sd15\n"
                          "  h94: {source: acme/IP-Adapter, subfolder: models, weight_name: ip-adapter_sd15.safetensors}\n"
                          "nodes:\n  photo: {type: load_image, path: in.png, size: [64, 64]}\n" + nodes)
    with runner.Session(out=tmp_path / "out", model_paths=[models]) as session:
        result = session.run(path)
    assert result.status == "ok", result.error
    same(result.image("comfy"), result.image("tiny"))
    same(result.image("hub"), result.image("tiny"))
    assert result.manifest["nodes"]["hub"]["ip_adapters"][0]["weights"] == "ip-adapter_sd15.safetensors"
    # without weight_name, a folder of two adapters is refused naming the fix
    path.write_text(path.read_text().replace(", weight_name: ip-adapter_sd15.safetensors", ""))
    with runner.Session(out=tmp_path / "out", model_paths=[models]) as session:
        result = session.run(path)
    assert result.status == "failed" and "holds 2 .safetensors files" in str(result.error), result.error


def test_validate_refuses_ip_adapters_where_they_cannot_run(tmp_path, capsys):
    path = write_workflow(tmp_path, "bad.yaml", "version: 1\nmodels: {flux: tiny:kandinsky3, sd: tiny:sd15, ip: tiny:ip-adapter-sd15}\n"
                          "nodes:\n  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  a: {type: txt2img, model: $models.flux, ip_adapter: [{model: $models.ip, image: $photo}]}\n"
                          "  b: {type: txt2img, model: $models.sd, ip_adapter: [{model: tiny:lora-sd15, image: $photo}]}\n"
                          "  c: {type: txt2img, model: $models.sd, ip_adapter: [{model: $models.ip, image: $photo, "
                          "scale: {left: 1}}]}\n")
    assert run_cli("validate", path) == 2
    err = capsys.readouterr().err
    assert (f"{path}:5:43: nodes.a.ip_adapter: IP-Adapters are not supported for Kandinsky 3 (model 'tiny:kandinsky3') "
            "in this version of runner") in err, err
    assert f"{path}:6:55: nodes.b.ip_adapter[0].model: model 'tiny:lora-sd15' is a LoRA, used where an IP-Adapter" in err
    assert f"{path}:7:54: nodes.c.ip_adapter[0]: a per-block scale names down, mid and up, not left" in err, err


def test_an_adapter_for_another_family_fails_clearly(tmp_path):
    path = write_workflow(tmp_path, "mismatch.yaml", "version: 1\nmodels: {m: tiny:sdxl, ip: tiny:ip-adapter-sd15}\n"
                          "nodes:\n  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  out: {type: txt2img, model: $models.m, steps: 2, ip_adapter: [{model: $models.ip, image: $photo}]}\n"
                          "  after: {type: txt2img, model: $models.m, steps: 2}\n")
    with runner.Session(out=tmp_path / "out") as session:
        result = session.run(path)
    assert result.status == "failed" and "the IP-Adapter does not fit 'tiny:sdxl'" in str(result.error), result.error


def test_the_image_embeddings_are_computed_once_for_nodes_sharing_an_image(tmp_path):
    path = write_workflow(tmp_path, "shared.yaml", "version: 1\nmodels: {m: tiny:sd15, ip: tiny:ip-adapter-sd15}\n"
                          "nodes:\n  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          + "".join(f"  n{i}: {{type: txt2img, model: $models.m, prompt: 'a cabin {i}', steps: 2, "
                                    "ip_adapter: [{model: $models.ip, image: $photo, scale: 0.5}]}\n" for i in range(3))
                          + "  other: {type: txt2img, model: $models.m, steps: 2, guidance_scale: 1, "
                            "ip_adapter: [{model: $models.ip, image: $photo}]}\n")
    with runner.Session(out=tmp_path / "out") as session:
        result = session.run(path)
        assert result.status == "ok", result.error
        embeds = [key for key in session.pool.objects if "ip-adapter-embeds" in key]
    # the three guided nodes share one; the unguided one has no negative half: its own
    assert len(embeds) == 2, embeds


def test_flux_ip_adapter_as_diffusers_docs_load_it(tmp_path):
    """FLUX.1's IP-Adapter (XLabs' layout) through FluxIPAdapterMixin, as diffusers' docs write it: load_ip_adapter
    with the image encoder, set_ip_adapter_scale, ip_adapter_image, true CFG with an empty negative prompt."""
    import torch
    from diffusers import FluxPipeline

    result = run(tmp_path, "m: tiny:flux, ip: tiny:ip-adapter-flux", (
        f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, width: 64, height: 64, "
        "negative_prompt: '', pipeline_kwargs: {true_cfg_scale: 4.0}, "
        "ip_adapter: [{model: $models.ip, image: $photo, scale: 0.7}]}\n"
        f"  plain: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, width: 64, height: 64}}\n"))
    pipe = quiet(FluxPipeline.from_pretrained(folder("flux")))
    plain = pipe(PROMPT, num_inference_steps=2, width=64, height=64, generator=generator()).images[0]
    pipe.load_ip_adapter(folder("ip-adapter-flux"), weight_name="ip-adapter.safetensors",
                         image_encoder_pretrained_model_name_or_path=str(Path(folder("ip-adapter-flux")) / "image_encoder"),
                         image_encoder_dtype=torch.float32)
    pipe.set_ip_adapter_scale(0.7)
    expected = pipe(PROMPT, negative_prompt="", true_cfg_scale=4.0, ip_adapter_image=result.image("photo"),
                    num_inference_steps=2, width=64, height=64, generator=generator()).images[0]
    same(result.image("out"), expected)
    assert result.image("out").tobytes() != plain.tobytes()
    same(result.image("plain"), plain)  # unloaded after its node


def test_flux_ip_adapters_take_no_block_scales_or_masks(tmp_path, capsys):
    path = write_workflow(tmp_path, "flux.yaml", "version: 1\nmodels: {m: tiny:flux, ip: tiny:ip-adapter-flux}\n"
                          "nodes:\n  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  a: {type: txt2img, model: $models.m, ip_adapter: [{model: $models.ip, image: $photo, "
                          "scale: {up: {block_0: [1.0]}}, mask: $photo}]}\n")
    assert run_cli("validate", path) == 2
    err = capsys.readouterr().err
    assert "nodes.a.ip_adapter[0].scale: FLUX.1's IP-Adapters take one scale (a number), not a per-block dict" in err
    assert "nodes.a.ip_adapter[0].mask: FLUX.1's IP-Adapters take no mask in diffusers" in err
