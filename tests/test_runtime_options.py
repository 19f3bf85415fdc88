"""Run-time options of generation nodes (workflow and node level): vae_slicing, channels_last, attention, step_cache.

Each is applied as diffusers' docs apply it, for the node's call only (the pipeline is shared), recorded in the
manifest, and in the node's key where set; a workflow's value reaches every node that takes it, a node's own wins;
what a family or device cannot do is refused with the fix. Parity: the same pixels as plain diffusers code.
"""

from __future__ import annotations

import torch

import runner
from conftest import latest_run, manifest, run_cli, write_workflow
from test_parity import PROMPT, SEED, folder, generator, quiet, runner_image, same


def test_vae_slicing_channels_last_and_attention_are_diffusers_own(tmp_path):
    from diffusers import AutoPipelineForText2Image

    nodes = (f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, num_images: 2, "
             "vae_slicing: true, channels_last: true, attention: native}\n")
    image, run = runner_image(tmp_path, "m: tiny:sd15", nodes)
    assert run.manifest["nodes"]["out"]["runtime_options"] == {"vae_slicing": True, "channels_last": True,
                                                               "attention": "native"}
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    pipe.vae.enable_slicing()
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    pipe.unet.set_attention_backend("native")
    same(image, pipe(PROMPT, num_inference_steps=2, num_images_per_prompt=2, generator=generator()).images[0])


def test_a_step_cache_on_flux_is_diffusers_first_block_cache(tmp_path):
    from diffusers import FirstBlockCacheConfig, FluxPipeline

    nodes = (f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 4, seed: {SEED}, width: 64, "
             "height: 64, step_cache: {type: first_block, threshold: 0.3}}\n")
    image, run = runner_image(tmp_path, "m: tiny:flux", nodes)
    assert run.manifest["nodes"]["out"]["runtime_options"] == {"step_cache": {"type": "first_block", "threshold": 0.3}}
    pipe = quiet(FluxPipeline.from_pretrained(folder("flux")))
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.3))
    same(image, pipe(PROMPT, num_inference_steps=4, width=64, height=64, generator=generator()).images[0])


def test_the_options_apply_for_the_call_only(tmp_path):
    """The pipeline is shared: a node without the options after one with them runs as plain diffusers does."""
    from diffusers import AutoPipelineForText2Image

    nodes = (f"  first: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, channels_last: true, "
             "vae_slicing: true, attention: _native_math}\n"
             f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n")
    image, run = runner_image(tmp_path, "m: tiny:sd15", nodes)
    assert "runtime_options" not in run.manifest["nodes"]["out"]
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    same(image, pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])
    with runner.Session(out=tmp_path / "again") as session:  # and the modules are as they were: contiguous
        session.run(write_workflow(tmp_path, "w.yaml", _workflow("", "channels_last: true")))
        unet = next(iter(obj for obj, _deps in session.pool.objects.values() if hasattr(obj, "unet"))).unet
        assert next(unet.parameters()).is_contiguous()


def _workflow(header: str, node: str, model: str = "tiny:sd15") -> str:
    return ("version: 1\nname: opts\nseed: 3\n" + header + f"models: {{m: '{model}'}}\nnodes:\n"
            f"  a: {{type: txt2img, model: $models.m, prompt: a barn, steps: 2, width: 64, height: 64{', ' + node if node else ''}}}\n"
            "  b: {type: txt2img, model: $models.m, prompt: a barn, steps: 2, width: 64, height: 64, vae_slicing: false}\n"
            "  s: {type: save_image, images: [$a, $b]}\n")


def test_the_workflow_sets_them_for_every_node_and_a_nodes_own_wins(tmp_path):
    workflow = write_workflow(tmp_path, "opts.yaml", _workflow("vae_slicing: true\nattention: native\noffload: group\n", ""))
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--quiet") == 0
    nodes = manifest(latest_run(tmp_path / "out", "opts"))["nodes"]
    assert nodes["a"]["runtime_options"] == {"vae_slicing": True, "attention": "native"}
    # group offload needs CUDA: on the CPU the node runs without it, warned and recorded (as model and sequential)
    assert nodes["a"]["offload"] == "ignored (offload 'group' needs a CUDA device; running without it on cpu)"
    assert nodes["b"]["runtime_options"] == {"attention": "native"}  # its own vae_slicing: false wins
    plain = write_workflow(tmp_path, "plain.yaml", _workflow("", ""))
    assert run_cli("run", plain, "--out", tmp_path / "plain", "--quiet") == 0
    keys = manifest(latest_run(tmp_path / "plain", "opts"))["nodes"]
    assert keys["a"]["key"] != nodes["a"]["key"]  # set options are in the key: another result, not a cache hit


def test_what_a_family_or_device_cannot_do_is_refused_with_the_fix(tmp_path, capsys):
    """What the family cannot apply is a validate error at the field (the family is known from the checkpoint's
    files); an attention backend this machine cannot run fails the node with the fix."""
    cases = [("", "step_cache: {type: first_block}", "tiny:sd15", 2,
              "refused0.yaml:6:89: nodes.a.step_cache: step_cache is for transformer denoisers, and SD 1.x/2.x (model "
              "'tiny:sd15') has a UNet"),
             ("", "attention: flash", "tiny:sd15", 1, "use attention: native (PyTorch's own, on every device)"),
             ("", "vae_slicing: true", "tiny:kandinsky22", 2,
              "refused2.yaml:6:89: nodes.a.vae_slicing: not applied to Kandinsky 2.2 models"),
             ("compile: true\n", "quantize: int8", "tiny:kandinsky21", 2,
              "nodes.a.quantize: not applied to Kandinsky 2.1 models")]
    for index, (header, node, model, status, said) in enumerate(cases):
        workflow = write_workflow(tmp_path, f"refused{index}.yaml", _workflow(header, node, model))
        assert run_cli("run", workflow, "--out", tmp_path / f"out{index}", "--quiet") == status
        err = capsys.readouterr().err
        assert said in err, err
        if status == 2:  # the workflow-level compile too, at the node it reaches
            assert run_cli("validate", workflow) == 2 and ("nodes.a.compile: not applied" in capsys.readouterr().err
                                                           or not header)


def test_a_step_cache_takes_only_its_own_settings(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "bad.yaml", _workflow("", "step_cache: {type: first_block, cache_interval: 3}",
                                                              "tiny:flux"))
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:6:" in err and "cache_interval is not a setting of the first_block step cache" in err
    assert "it takes threshold" in err


# ------------------------------------------------------------------ quantize, compile, offload: group
def test_int8_quantization_is_diffusers_own_quantized_loading(tmp_path):
    """quantize loads the checkpoint as diffusers' docs load one quantized (a PipelineQuantizationConfig): another
    model than the plain one, kept beside it, its identity saying how it is quantized."""
    from diffusers import AutoPipelineForText2Image, PipelineQuantizationConfig, TorchAoConfig
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig as TransformersTorchAoConfig

    nodes = (f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
             "quantize: {denoiser: int8, text_encoders: int8}}\n")
    image, run = runner_image(tmp_path, "m: tiny:sd15", nodes)
    assert run.manifest["nodes"]["out"]["runtime_options"] == {"quantize": {"denoiser": "int8", "text_encoders": "int8"}}
    loaded = run.manifest["models_loaded"]
    assert [name.split("@")[1].split(";", 1)[1] for name in loaded] == ["quantize=denoiser:int8,text_encoders:int8"]
    config = PipelineQuantizationConfig(quant_mapping={"unet": TorchAoConfig(Int8WeightOnlyConfig()),
                                                       "text_encoder": TransformersTorchAoConfig(Int8WeightOnlyConfig())})
    # runner's dtype (float32 here): without one, diffusers loads torchao-quantized models in bfloat16
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15"), quantization_config=config,
                                                           dtype=torch.float32))
    same(image, pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])


def test_what_the_device_cannot_quantize_is_refused_at_the_field_before_anything_runs(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "q.yaml", _workflow("", "quantize: {text_encoders: int8, denoiser: fp8}"))
    assert run_cli("run", workflow, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "q.yaml:6:" in err and "nodes.a.quantize.denoiser: fp8 needs a CUDA device (torchao), and this run is on cpu" in err
    assert "fix: use int8 (torchao, every device), or run on a CUDA machine" in err
    # the workflow's (here from --set) is located where it is written
    assert run_cli("run", write_workflow(tmp_path, "w.yaml", _workflow("", "")), "--set", "quantize=nf4") == 2
    assert "--set quantize=nf4: quantize: nf4 needs a CUDA device (bitsandbytes)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_compile_and_quantize_are_in_the_key_reach_every_node_and_are_exported(tmp_path, capsys):
    """compile (it may change the last float bits) and quantize (other weights) are in the key where set; a workflow's
    reaches every generation node, a node's own wins; the export writes diffusers' own lines for them."""
    session = runner.Session(out=tmp_path / "out")
    plain = session.plan(session.load(write_workflow(tmp_path, "p.yaml", _workflow("", ""))))
    wide = session.plan(session.load(write_workflow(tmp_path, "w.yaml", _workflow(
        "compile: {mode: max-autotune}\nquantize: int8\n", "compile: false"))))
    assert plain.tasks["a"].key != wide.tasks["a"].key and plain.tasks["b"].key != wide.tasks["b"].key
    assert wide.tasks["a"].fields["compile"] is False and wide.tasks["b"].fields["compile"] == {"mode": "max-autotune",
                                                                                                "fullgraph": None}
    script = session.export(tmp_path / "w.yaml")
    assert 'm_txt2img.unet.compile(mode="max-autotune")' in script
    assert "m_txt2img.unet._compiled_call_impl = None" in script
    assert ('quantization_config=PipelineQuantizationConfig(quant_mapping={"unet": '
            'TorchAoConfig(Int8WeightOnlyConfig())})') in script
    workflow = write_workflow(tmp_path, "bad.yaml", _workflow("", "compile: {mode: fast}"))
    assert run_cli("validate", workflow) == 2
    assert "bad.yaml:6:" in capsys.readouterr().err
    # a family that applies no run-time option: the export refuses them as validation does (at the node the
    # workflow's value reaches)
    workflow = write_workflow(tmp_path, "k.yaml", _workflow("quantize: int8\n", "", "tiny:kandinsky22"))
    assert run_cli("export", workflow, "-o", tmp_path / "k.py") == 2
    assert "k.yaml:7:3: nodes.a.quantize: not applied to Kandinsky 2.2 models" in capsys.readouterr().err
    assert not (tmp_path / "k.py").exists()
