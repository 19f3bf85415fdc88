"""GPU benchmarks for bench/gpu/run.sh: runner against the plain diffusers script doing the same calls, on a
full-size random-weight SD 1.5 (bench/fullsize_sd15.py) at 512 px, in fresh processes on the GPU.

The script side is what `runner export` writes for the same workflow: diffusers' documented calls, no runner. Both
sides load the checkpoint from disk and make one 512 x 512 image in 20 steps (float16 on CUDA, as runner's dtype:
auto); the figures are wall seconds per process (imports and loading included), the denoising speed in it/s from
the node's recorded seconds, the ratio, and whether the pixels are identical. Results go to OUT/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "bench"))

from timing import timed  # noqa: E402  (bench/timing.py: wall seconds of one child process)

WORKFLOW = """\
version: 1
name: gpu-sd15
seed: 7
models:
  sd15: {folder}
nodes:
  image:
    type: txt2img
    model: $models.sd15
    prompt: a lighthouse on a cliff at dusk, photograph
    negative_prompt: blurry
    steps: {steps}
    width: 512
    height: 512
  save:
    type: save_image
    image: $image
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu-check")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--model", type=Path, help="an SD 1.5 folder to use instead of building the random full-size one")
    parser.add_argument("--dry-run", action="store_true", help="write the workflow and print the plan; run nothing")
    args = parser.parse_args()
    out = args.out.resolve()
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    folder = args.model.resolve() if args.model else models / "sd15-fullsize-random"
    workflow = out / "gpu_sd15.yaml"
    workflow.write_text(WORKFLOW.format(folder=json.dumps(str(folder)), steps=args.steps))
    if args.dry_run:
        print(f"would build {folder} (bench/fullsize_sd15.py), export {workflow} and time runner against the script")
        return
    from fullsize_sd15 import build

    started = time.perf_counter()
    if args.model is None:
        build(folder)
    print(f"model ready in {time.perf_counter() - started:.0f} s: {folder}", flush=True)
    env = {**os.environ, "RUNNER_CACHE_DIR": str(out / "cache"), "PYTHONPATH": str(REPO)}
    script = out / "gpu_sd15.py"
    subprocess.run([sys.executable, "-m", "runner", "export", str(workflow), "-o", str(script), "--force"], env=env,
                   cwd=REPO, check=True, capture_output=True)
    rows = []
    for repeat in range(2):  # the first pair warms the disk cache and CUDA's kernels for both sides alike
        runner_s = timed([sys.executable, "-m", "runner", "run", str(workflow), "--no-cache", "--quiet",
                          "--out", str(out / "runs")], env)
        script_s = timed([sys.executable, str(script), str(out / "script-out")], env)
        rows.append((runner_s, script_s))
    runner_s, script_s = rows[-1]
    run_dir = max((out / "runs" / "gpu-sd15").iterdir(), key=lambda p: p.stat().st_mtime)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    node = manifest["nodes"]["image"]
    from PIL import Image
    import numpy as np

    ours = np.asarray(Image.open(run_dir / "save.png"))
    theirs = np.asarray(Image.open(out / "script-out" / "save.png"))
    result = {"device": manifest.get("device_name"), "dtype": manifest.get("dtype"), "steps": args.steps,
              "runner_s": round(runner_s, 2), "script_s": round(script_s, 2), "ratio": round(runner_s / script_s, 3),
              "node_s": node["seconds"], "it_per_s": round(args.steps / node["seconds"], 2),
              "identical_pixels": bool(ours.shape == theirs.shape and (ours == theirs).all()),
              "max_pixel_difference": int(np.abs(ours.astype(int) - theirs.astype(int)).max())}
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| device | dtype | runner s | script s | ratio | node it/s | identical pixels |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {result['device']} | {result['dtype']} | {runner_s:.2f} | {script_s:.2f} | {result['ratio']:.3f} | "
          f"{result['it_per_s']} | {result['identical_pixels']} (max difference {result['max_pixel_difference']}) |")


if __name__ == "__main__":
    main()
