"""T2I-Adapters (`adapter: [{model, image, scale}]` on txt2img, SD and SDXL), against diffusers' documented usage of
its adapter pipelines on the same tiny models (StableDiffusion(XL)AdapterPipeline.from_pretrained(..., adapter=)):
pixel-identical."""

from __future__ import annotations

import runner
from conftest import run_cli, write_workflow
from test_parity import SEED, folder, generator, quiet, same

PROMPT = "a cosy cabin in the woods"


def run(tmp_path, models: str, nodes: str, name: str = "t2i.yaml"):
    path = write_workflow(tmp_path, name, "version: 1\n" f"models: {{{models}}}\nnodes:\n"
                          "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  edges: {type: canny, image: $photo}\n" + nodes)
    with runner.Session(out=tmp_path / "out") as session:
        result = session.run(path)
    assert result.status == "ok", result.error
    return result


def test_sd15_adapter_as_diffusers_docs_write_it(tmp_path):
    from diffusers import StableDiffusionAdapterPipeline, T2IAdapter

    result = run(tmp_path, "m: tiny:sd15, a: tiny:t2i-adapter-sd15", (
        f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
        "adapter: [{model: $models.a, image: $edges, scale: 0.8}]}\n"
        f"  plain: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n"))
    adapter = T2IAdapter.from_pretrained(folder("t2i-adapter-sd15"))
    pipe = quiet(StableDiffusionAdapterPipeline.from_pretrained(folder("sd15"), adapter=adapter))
    expected = pipe(PROMPT, image=result.image("edges").convert("RGB"), adapter_conditioning_scale=0.8,
                    num_inference_steps=2, generator=generator()).images[0]
    same(result.image("out"), expected)
    assert result.image("out").tobytes() != result.image("plain").tobytes()
    node = result.manifest["nodes"]["out"]
    assert node["pipeline_class"] == "StableDiffusionAdapterPipeline" and node["adapter_class"] == "T2IAdapter"


def test_sdxl_two_adapters_and_the_conditioning_factor(tmp_path):
    from diffusers import MultiAdapter, StableDiffusionXLAdapterPipeline, T2IAdapter

    result = run(tmp_path, "m: tiny:sdxl, a: tiny:t2i-adapter-sd15", (
        f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 4, seed: {SEED}, "
        "adapter_conditioning_factor: 0.5, adapter: [{model: $models.a, image: $edges}, "
        "{model: $models.a, image: $photo, scale: 0.5}]}\n"))
    adapter = T2IAdapter.from_pretrained(folder("t2i-adapter-sd15"))
    pipe = quiet(StableDiffusionXLAdapterPipeline.from_pretrained(folder("sdxl"), adapter=MultiAdapter([adapter, adapter])))
    expected = pipe(PROMPT, image=[result.image("edges").convert("RGB"), result.image("photo").convert("RGB")],
                    adapter_conditioning_scale=[1.0, 0.5], adapter_conditioning_factor=0.5, num_inference_steps=4,
                    generator=generator()).images[0]
    same(result.image("out"), expected)


def test_validate_refuses_what_adapters_cannot_do(tmp_path, capsys):
    path = write_workflow(tmp_path, "bad.yaml", "version: 1\nmodels: {flux: tiny:flux, sd: tiny:sd15, a: tiny:t2i-adapter-sd15}\n"
                          "nodes:\n  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  a: {type: txt2img, model: $models.flux, adapter: [{model: $models.a, image: $photo}]}\n"
                          "  b: {type: txt2img, model: $models.sd, adapter: [{model: $models.a, image: $photo}], "
                          "adapter_conditioning_factor: 0.5}\n"
                          "  c: {type: txt2img, model: $models.sd, adapter: [{model: $models.a, image: $photo}], "
                          "controlnet: [{model: tiny:controlnet-sd15, image: $photo}]}\n"
                          "  d: {type: txt2img, model: $models.sd, adapter: [{model: tiny:controlnet-sd15, image: $photo}]}\n")
    assert run_cli("validate", path) == 2
    err = capsys.readouterr().err
    assert (f"{path}:5:43: nodes.a.adapter: T2I-Adapters are not supported for FLUX.1 (model 'tiny:flux') in this "
            "version of runner") in err, err
    assert (f"nodes.b.adapter_conditioning_factor: SD 1.x/2.x's adapter pipeline (StableDiffusionAdapterPipeline) "
            "takes no adapter_conditioning_factor") in err, err
    assert "nodes.c: a node takes T2I-Adapters or ControlNets, not both" in err, err
    assert "nodes.d.adapter[0].model: model 'tiny:controlnet-sd15' is a ControlNet, used where a T2I-Adapter" in err, err


def test_sizes_outside_the_adapters_steps_fail_clearly(tmp_path):
    path = write_workflow(tmp_path, "size.yaml", "version: 1\nmodels: {m: tiny:sd15, a: tiny:t2i-adapter-sd15}\n"
                          "nodes:\n  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  out: {type: txt2img, model: $models.m, steps: 2, width: 72, height: 64, "
                          "adapter: [{model: $models.a, image: $photo}]}\n")
    with runner.Session(out=tmp_path / "out") as session:
        result = session.run(path)
    assert result.status == "failed" and "width 72: the T2I-Adapter works on sizes in steps of 16 pixels" in str(
        result.error), result.error
