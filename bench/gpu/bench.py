"""GPU benchmarks for bench/gpu/run.sh: runner against the plain diffusers script doing the same calls, on
random-weight models of the real architectures, in fresh processes on the GPU:

- sd15: the full-size SD 1.5 (bench/fullsize_sd15.py) at 512 px;
- sdxl: the full-size SDXL base (bench/fullsize_models.py) at 1024 px;
- flux: FLUX.1-dev at reduced depth (its full widths; 2 + 4 of its 19 + 38 blocks, 2 of T5-XXL's 24 layers) at
  1024 px.

The script side is what `runner export` writes for the same workflow: diffusers' documented calls, no runner. Both
sides load the checkpoint from disk and make one image in --steps steps (float16 on CUDA, as runner's dtype: auto);
the figures are wall seconds per process (imports and loading included, the faster of two alternating pairs), the
denoising speed in it/s the manifest records (steps_per_second), the ratio, and whether the pixels are identical. Results go
to OUT/bench.json. `--cases sd15` and `--size PX` make it shorter (a smoke test on a CPU).
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
name: gpu-{case}
seed: 7
models:
  model: {folder}
nodes:
  image:
    type: txt2img
    model: $models.model
    prompt: a lighthouse on a cliff at dusk, photograph{negative}
    steps: {steps}
    width: {size}
    height: {size}
  save:
    type: save_image
    image: $image
"""
# case -> (the builder's module and function, its size in px, a negative prompt: FLUX.1-dev takes none by default)
CASES = {"sd15": ("fullsize_sd15", "build", 512, True), "sdxl": ("fullsize_models", "build_sdxl", 1024, True),
         "flux": ("fullsize_models", "build_flux", 1024, False)}


def write_workflow(case: str, out: Path, steps: int, size: int | None, model: Path | None) -> tuple[Path, Path]:
    """The case's workflow in OUT (gpu_CASE.yaml) and the model folder it names."""
    _module, _function, default_size, negative = CASES[case]
    folder = model.resolve() if model else out / "models" / f"{case}-random"
    workflow = out / f"gpu_{case}.yaml"
    workflow.write_text(WORKFLOW.format(case=case, folder=json.dumps(str(folder)), steps=steps, size=size or default_size,
                                        negative="\n    negative_prompt: blurry" if negative else ""))
    return workflow, folder


def bench_case(case: str, out: Path, steps: int, size: int | None, model: Path | None) -> dict:
    import importlib

    module, function, default_size, _negative = CASES[case]
    workflow, folder = write_workflow(case, out, steps, size, model)
    started = time.perf_counter()
    if model is None:
        getattr(importlib.import_module(module), function)(folder)
    print(f"{case}: model ready in {time.perf_counter() - started:.0f} s: {folder}", flush=True)
    env = {**os.environ, "RUNNER_CACHE_DIR": str(out / "cache"), "PYTHONPATH": str(REPO)}
    script = out / f"gpu_{case}.py"
    subprocess.run([sys.executable, "-m", "runner", "export", str(workflow), "-o", str(script), "--force"], env=env,
                   cwd=REPO, check=True, capture_output=True)
    rows = []
    for _repeat in range(2):  # the first pair warms the disk cache and CUDA's kernels for both sides alike
        runner_s = timed([sys.executable, "-m", "runner", "run", str(workflow), "--no-cache", "--quiet",
                          "--out", str(out / "runs")], env)
        script_s = timed([sys.executable, str(script), str(out / f"script-out-{case}")], env)
        rows.append((runner_s, script_s))
    runner_s, script_s = rows[-1]
    run_dir = max((out / "runs" / f"gpu-{case}").iterdir(), key=lambda p: p.stat().st_mtime)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    node = manifest["nodes"]["image"]
    import numpy as np
    from PIL import Image

    ours = np.asarray(Image.open(run_dir / "save.png"))
    theirs = np.asarray(Image.open(out / f"script-out-{case}" / "save.png"))
    return {"case": case, "size": size or default_size, "device": manifest.get("device_name"),
            "dtype": manifest.get("dtype"), "steps": steps, "runner_s": round(runner_s, 2),
            "script_s": round(script_s, 2), "ratio": round(runner_s / script_s, 3), "node_s": node["seconds"],
            "it_per_s": node.get("steps_per_second"), "node_it_per_s_with_loading": round(steps / node["seconds"], 2),
            "identical_pixels": bool(ours.shape == theirs.shape and (ours == theirs).all()),
            "max_pixel_difference": int(np.abs(ours.astype(int) - theirs.astype(int)).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu-check")
    parser.add_argument("--cases", default=",".join(CASES), help=f"which of {', '.join(CASES)} (comma-separated)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, help="every case at this size instead of its own (a smoke test)")
    parser.add_argument("--model", type=Path, help="a model folder to use instead of building the random one (one case)")
    parser.add_argument("--dry-run", action="store_true", help="write the workflows and print the plan; run nothing")
    args = parser.parse_args()
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = [case for case in cases if case not in CASES]
    if unknown or (args.model and len(cases) != 1):
        parser.error(f"unknown cases {unknown}" if unknown else "--model takes one case")
    out = args.out.resolve()
    (out / "models").mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        for case in cases:
            module, function, size, _negative = CASES[case]
            write_workflow(case, out, args.steps, args.size, args.model)
            print(f"would build {case} ({module}.{function}), export gpu_{case}.yaml ({args.size or size} px, "
                  f"{args.steps} steps) and time runner against the script")
        return
    results = []
    for case in cases:
        results.append(bench_case(case, out, args.steps, args.size, args.model))
        (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")  # after each: a timeout keeps the rest
    print("| case | px | device | dtype | runner s | script s | ratio | node it/s | identical pixels |")
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(f"| {result['case']} | {result['size']} | {result['device']} | {result['dtype']} | {result['runner_s']:.2f} | "
              f"{result['script_s']:.2f} | {result['ratio']:.3f} | {result['it_per_s']} | {result['identical_pixels']} "
              f"(max difference {result['max_pixel_difference']}) |")


if __name__ == "__main__":
    main()
