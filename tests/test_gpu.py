"""What only a CUDA device can show (marker `gpu`: skipped without one; bench/gpu/run.sh runs them on a GPU
machine): half precision against float32 within a stated tolerance, repeatable --deterministic runs, offload giving
the pixels of no offload, the default VRAM budget, and a real out-of-memory error retried after eviction."""

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


@pytest.mark.parametrize("offload", ["model", "sequential"])
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
