"""What only a CUDA device can show (marker `gpu`: skipped without one; bench/gpu/run.sh runs them on a GPU
machine): half precision against float32 within a stated tolerance, repeatable --deterministic runs, offload giving
the pixels of no offload, the default VRAM budget, a real out-of-memory error retried after eviction, torch.compile,
the CUDA quantizations against diffusers' own calls and batched sweeps by default."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import latest_run, manifest, run_cli, write_workflow

pytestmark = pytest.mark.gpu

# half precision on random tiny weights: the mean absolute difference from float32 stays within this many levels of
# 255 (the pixels are noise-like, so single pixels may differ more)
HALF_MEAN_TOLERANCE = 8.0

WORKFLOW = """\
version: 1
name: gpu
seed: 5
device: cuda
dtype: {dtype}
offload: {offload}
models:
  model: {model}
nodes:
  image: {{type: txt2img, model: $models.model, prompt: a lighthouse at dusk, steps: 4, width: 64, height: 64}}
  save: {{type: save_image, image: $image}}
"""


def _image(tmp_path, name: str, *, dtype: str = "float32", offload: str = "none", model: str = "tiny:sd15",
           extra: tuple = ()) -> np.ndarray:
    workflow = write_workflow(tmp_path, f"{name}.yaml", WORKFLOW.format(dtype=dtype, offload=offload, model=model))
    assert run_cli("run", workflow, "--out", tmp_path / name, "--quiet", "--no-cache", *extra) == 0
    run_dir = latest_run(tmp_path / name, "gpu")
    assert manifest(run_dir)["device"].startswith("cuda")
    return np.asarray(Image.open(run_dir / "save.png")).astype(np.int16)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_stays_close_to_float32(tmp_path, dtype):
    full, half = _image(tmp_path, "full"), _image(tmp_path, dtype, dtype=dtype)
    assert np.abs(full - half).mean() <= HALF_MEAN_TOLERANCE


def test_deterministic_runs_repeat_their_pixels(tmp_path):
    first = _image(tmp_path, "first", dtype="float16", extra=("--deterministic",))
    second = _image(tmp_path, "second", dtype="float16", extra=("--deterministic",))
    assert np.array_equal(first, second)


@pytest.mark.parametrize("offload", ["model", "sequential", "group"])
def test_offload_gives_the_pixels_of_no_offload(tmp_path, offload):
    assert np.array_equal(_image(tmp_path, "plain", dtype="float16"),
                          _image(tmp_path, offload, dtype="float16", offload=offload))


def test_the_vram_budget_defaults_to_the_free_memory_less_a_reserve():
    import torch

    from runner import Session
    from runner.models.pool import VRAM_RESERVE

    free, _total = torch.cuda.mem_get_info()
    budget = Session(device="cuda").pool.budget("vram")
    assert budget is not None and abs(budget - max(free - VRAM_RESERVE, free // 2)) < 256 << 20


def test_a_real_out_of_memory_error_is_retried_after_eviction(tmp_path):
    """A first model stays loaded; the test then takes all but a sliver of the GPU's free memory, so that the second
    model cannot load beside it: runner releases the first (recorded with the reason) and runs the node again."""
    import torch

    from runner import Session

    session = Session(out=tmp_path / "out", device="cuda")
    first = write_workflow(tmp_path, "first.yaml", WORKFLOW.format(dtype="float16", offload="none", model="tiny:sdxl"))
    second = write_workflow(tmp_path, "second.yaml", WORKFLOW.format(dtype="float16", offload="none", model="tiny:sd15"))
    assert session.run(first).status == "ok"
    free, _total = torch.cuda.mem_get_info()
    filler = torch.empty(max(free - (4 << 20), 0), dtype=torch.uint8, device="cuda")  # leaves 4 MiB
    try:
        run = session.run(second, no_cache=True)
    finally:
        del filler
        torch.cuda.empty_cache()
    assert run.status == "ok", run.error
    released = run.manifest["models_released"]
    assert any("out of memory" in entry["reason"] for entry in released), released


def _session_image(session, tmp_path, name: str, node: str, model: str = "tiny:sd15"):
    text = WORKFLOW.format(dtype="float16", offload="none", model=model).replace(
        "width: 64, height: 64}", "width: 64, height: 64, " + node + "}")
    run = session.run(write_workflow(tmp_path, f"{name}.yaml", text), no_cache=True)
    assert run.status == "ok", run.error
    return run, Image.open(run.folder / "save.png")


def _diffusers_image(pipe):
    import torch

    pipe.set_progress_bar_config(disable=True)
    return pipe("a lighthouse at dusk", num_inference_steps=4, width=64, height=64,
                generator=torch.Generator("cpu").manual_seed(_seed())).images[0]


def _seed() -> int:
    from runner.executor.plan import derived_seed

    return derived_seed(5, "image")


def test_compile_is_diffusers_own_and_compiled_once_per_session(tmp_path):
    """compile: true is the denoiser's torch.compile (nn.Module.compile): the pixels of diffusers' own compiled UNet;
    a second run in the Session reuses the compiled code (recorded), a node without it runs uncompiled."""
    import time

    import torch
    from diffusers import AutoPipelineForText2Image

    from runner import Session
    from runner.models.tiny import ensure_tiny

    session = Session(out=tmp_path / "out", device="cuda")
    started = time.perf_counter()
    first, image = _session_image(session, tmp_path, "first", "compile: true")
    first_seconds = time.perf_counter() - started
    assert first.manifest["nodes"]["image"]["compiled"].startswith("compiled for this call")
    started = time.perf_counter()
    second, again = _session_image(session, tmp_path, "second", "compile: true")
    assert second.manifest["nodes"]["image"]["compiled"].startswith("reused")
    assert time.perf_counter() - started < first_seconds
    assert image.tobytes() == again.tobytes()
    import os
    from pathlib import Path

    folder = ensure_tiny("sd15", Path(os.environ["RUNNER_MODELS_DIR"]) / "tiny")
    pipe = AutoPipelineForText2Image.from_pretrained(folder, dtype=torch.float16).to("cuda")
    pipe.unet.compile()
    assert image.tobytes() == _diffusers_image(pipe).tobytes()
    print(f"compile: first run {first_seconds:.1f} s (compiling), the second {time.perf_counter() - started:.1f} s")


@pytest.mark.parametrize("quantization", ["fp8", "nf4"])
def test_cuda_quantizations_are_diffusers_own_quantized_loading(tmp_path, quantization):
    import os
    from pathlib import Path

    import torch
    import diffusers
    import transformers
    from diffusers import AutoPipelineForText2Image, PipelineQuantizationConfig

    from runner import Session
    from runner.models.tiny import ensure_tiny

    if quantization == "fp8":
        pytest.importorskip("torchao")
        from torchao.quantization import Float8WeightOnlyConfig

        def config(library):
            return library.TorchAoConfig(Float8WeightOnlyConfig())
    else:
        pytest.importorskip("bitsandbytes")

        def config(library):
            return library.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                              bnb_4bit_compute_dtype=torch.float16)
    session = Session(out=tmp_path / "out", device="cuda")
    run, image = _session_image(session, tmp_path, quantization,
                                f"quantize: {{denoiser: {quantization}, text_encoders: {quantization}}}")
    assert run.manifest["nodes"]["image"]["runtime_options"]["quantize"] == {"denoiser": quantization,
                                                                              "text_encoders": quantization}
    folder = ensure_tiny("sd15", Path(os.environ["RUNNER_MODELS_DIR"]) / "tiny")
    mapping = {"unet": config(diffusers), "text_encoder": config(transformers)}
    pipe = AutoPipelineForText2Image.from_pretrained(folder, dtype=torch.float16,
                                                     quantization_config=PipelineQuantizationConfig(quant_mapping=mapping))
    assert image.tobytes() == _diffusers_image(pipe.to("cuda")).tobytes()


def test_group_offload_is_undone_after_its_node(tmp_path):
    """The pipeline is shared: after a node with offload: group, its hooks are gone and the modules back on the GPU."""
    from runner import Session

    session = Session(out=tmp_path / "out", device="cuda")
    run, offloaded = _session_image(session, tmp_path, "group", "offload: group")
    assert run.manifest["nodes"]["image"]["offload"] == "group"
    _run, plain = _session_image(session, tmp_path, "plain", "offload: none")
    assert offloaded.tobytes() == plain.tobytes()
    pipe = next(obj for obj, _deps in session.pool.objects.values() if hasattr(obj, "unet"))
    assert all(parameter.device.type == "cuda" for parameter in pipe.unet.parameters())


def test_a_seed_sweep_is_batched_by_default_on_a_gpu_and_its_batch_reproduces(tmp_path, capsys):
    """On CUDA a --seeds sweep batches without --batch (default 8, within the budget): one call for four variants,
    their images close to unbatched ones (other kernels may change the last bits: within the half-precision
    tolerance), and `runner reproduce` of a batched variant rebuilds its batch: identical pixels."""
    import json

    workflow = write_workflow(tmp_path, "gpu.yaml", WORKFLOW.format(dtype="float16", offload="none", model="tiny:sd15"))
    images = {}
    for name, extra in (("batched", ()), ("single", ("--batch", "1"))):
        assert run_cli("run", workflow, "--out", tmp_path / name, "--quiet", "--seeds", "1-4", "--deterministic",
                       *extra) == 0
        sweep = next((tmp_path / name / "gpu").glob("sweep-*"))
        images[name] = [np.asarray(Image.open(sweep / f"{n:03d}" / "save.png")).astype(np.int16) for n in range(4)]
        records = [json.loads((sweep / f"{n:03d}" / "manifest.json").read_text())["nodes"]["image"] for n in range(4)]
        assert [record.get("batch", {}).get("size", 1) for record in records] == ([4] * 4 if name == "batched" else [1] * 4)
    for batched, single in zip(images["batched"], images["single"]):
        assert np.abs(batched - single).mean() <= HALF_MEAN_TOLERANCE
    variant = next((tmp_path / "batched" / "gpu").glob("sweep-*")) / "002"
    capsys.readouterr()
    assert run_cli("reproduce", variant, "--out", tmp_path / "again") == 0
    assert "identical" in capsys.readouterr().out
