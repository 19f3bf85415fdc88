"""Benchmark: the SDXL base -> refiner chain with and without the base's skipped VAE decode (issue 28, items 1 and 6).

(1) runner on tiny models: the recipe workflows/sdxl_refiner.yaml as it is (every reader of the base takes its
latents, so the base is called with output_type="latent": its manifest says decode_skipped) against the same chain
with the base's image also saved (which needs the decode), fresh caches, the base node's own seconds from the
manifests (fastest of --repeats). (2) What the skip saves at full size: one decode of SDXL's VAE (random weights,
diffusers' AutoencoderKL from SDXL's own config, float32 on this machine's device) of a 1024 x 1024 image's latents,
timed directly (--size to change it): on tiny models the VAE is too small for the skip to show.
Run: `.venv/bin/python bench/refiner_decode.py [--repeats N] [--size PX]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from timing import REPO, timed

RECIPE = REPO / "workflows" / "sdxl_refiner.yaml"
TINY = ["--set", "models.base=tiny:sdxl", "--set", "models.refiner=tiny:sdxl-refiner", "--set", "params.steps=10"]
PEEK = "\n  peek:\n    type: save_image\n    image: $base\n    name: base.png\n"


def base_seconds(work: Path, workflow: Path, name: str, env: dict) -> tuple[float, dict]:
    out = work / f"out-{name}"
    timed([sys.executable, "-m", "runner", "run", str(workflow), "--quiet", "--out", str(out), *TINY],
          {**env, "RUNNER_CACHE_DIR": str(work / f"cache-{name}")})
    run_dir = sorted((out / "sdxl-refiner").iterdir())[-1]
    record = json.loads((run_dir / "manifest.json").read_text())["nodes"]["base"]
    return record["seconds"], record


def vae_decode_seconds(size: int) -> float:
    import torch
    from diffusers import AutoencoderKL

    config = json.loads((REPO / "runner" / "models" / "single_file_configs" / "xl_base" / "vae" / "config.json").read_text())
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(config).eval()
    latents = torch.randn(1, 4, size // 8, size // 8)
    with torch.no_grad():
        vae.decode(latents[:, :, :8, :8] / vae.config.scaling_factor)  # warm-up (kernels, allocator)
        started = time.perf_counter()
        vae.decode(latents / vae.config.scaling_factor)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "RUNNER_MODELS_DIR": os.environ.get("RUNNER_MODELS_DIR", str(REPO / "outputs" / ".bench-models")),
               "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
        peeking = work / "wf" / "sdxl_refiner.yaml"
        peeking.parent.mkdir()
        peeking.write_text(RECIPE.read_text() + PEEK)
        base_seconds(work, RECIPE, "warm", env)  # builds the tiny models outside the timing
        skipped, decoded = [], []
        for attempt in range(args.repeats):
            seconds, record = base_seconds(work, RECIPE, f"skip{attempt}", env)
            assert record.get("decode_skipped"), record
            skipped.append(seconds)
            seconds, record = base_seconds(work, peeking, f"decode{attempt}", env)
            assert not record.get("decode_skipped"), record
            decoded.append(seconds)
    full = vae_decode_seconds(args.size)
    print("| SDXL base -> refiner | seconds |\n|---|---|")
    print(f"| tiny: base node, decode skipped (output_type=latent) | {min(skipped):.3f} |")
    print(f"| tiny: base node, its image also saved (decoded) | {min(decoded):.3f} |")
    print(f"| full-size SDXL VAE decode at {args.size} px, random weights (what the skip saves per image) | {full:.2f} |")


if __name__ == "__main__":
    main()
