"""Benchmark: the demo chain through `runner run` versus a hand-written diffusers script.

Both sides make the same diffusers calls with the same seeds (load -> mask ->
txt2img -> img2img -> inpaint -> save), each in a fresh process, alternating,
on tiny models and on a full-size random SD1.5 architecture at 256 px. The
script asserts that both produce identical PNG bytes and prints wall time and
peak RSS of each side and their ratios. Run: `make bench` or
`.venv/bin/python bench/demo_chain.py [--only tiny|full] [--repeats N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def measured(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def bench_case(label: str, model: str, model_folder: Path, size: int, steps: int, repeats: int, work: Path) -> dict:
    env = {**os.environ, "RUNNER_CACHE_DIR": str(work / "cache"), "RUNNER_MODELS_DIR": str(work / "models"),
           "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    runner_cmd = [sys.executable, "-m", "runner", "run", str(BENCH / "demo_chain.yaml"), "--no-cache", "--quiet",
                  "--out", str(work / "runs"), "--set", f"models.sd15={model}", "--set", f"params.size={size}",
                  "--set", f"params.steps={steps}"]
    script_cmd = [sys.executable, str(BENCH / "handwritten_demo.py"), str(model_folder), str(size), str(steps), str(work / "script")]
    # warm-up outside the timing: fills the file-hash cache of a local model folder and the OS page cache
    subprocess.run(runner_cmd[:5] + ["--dry-run"] + runner_cmd[9:], env=env, cwd=REPO, check=True, capture_output=True)
    timings = {"runner": [], "script": []}
    for _ in range(repeats):
        for side, command in (("script", script_cmd), ("runner", runner_cmd)):
            timings[side].append(measured(command, env))
    run_dir = sorted((work / "runs" / "bench-demo-chain").iterdir())[-1]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cache_root = work / "cache" / "nodes"
    identical = {}
    for node, name in (("fixed", "final.png"), ("generated", "txt2img.png")):
        key = manifest["nodes"][node]["key"]
        runner_png = (cache_root / key[:2] / key / "image.png").read_bytes()
        identical[name] = runner_png == (work / "script" / name).read_bytes()
    best = {side: min(values) for side, values in timings.items()}  # (wall, rss) of the fastest run
    peak = {side: max(rss for _w, rss in values) for side, values in timings.items()}
    return {"case": label, "size": size, "steps": steps, "repeats": repeats, "identical": identical,
            "runner_s": best["runner"][0], "script_s": best["script"][0],
            "runner_rss_mib": peak["runner"], "script_rss_mib": peak["script"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("tiny", "full"))
    parser.add_argument("--repeats", type=int, default=0, help="default: 3 for tiny, 1 for full")
    parser.add_argument("--models", type=Path, default=REPO / "outputs" / ".bench-models", help="where models are built")
    args = parser.parse_args()
    from runner.models.tiny import ensure_tiny

    results = []
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "tiny"):
            folder = ensure_tiny("sd15", args.models / "tiny")
            results.append(bench_case("tiny sd15, 64 px", "tiny:sd15", folder, 64, 2, args.repeats or 3, work / "tiny"))
        if args.only in (None, "full"):
            from fullsize_sd15 import build

            started = time.perf_counter()
            folder = build(args.models / "sd15-fullsize-random")
            print(f"full-size random SD1.5 ready in {time.perf_counter() - started:.1f} s: {folder}")
            results.append(bench_case("full-size SD1.5 (random), 256 px", str(folder), folder, 256, 2, args.repeats or 1, work / "full"))
    print()
    print(f"{'case':36} {'runner s':>9} {'script s':>9} {'ratio':>6} {'runner MiB':>11} {'script MiB':>11} {'ratio':>6}  identical PNG bytes")
    ok = True
    for r in results:
        same = all(r["identical"].values())
        ok &= same
        print(f"{r['case']:36} {r['runner_s']:9.2f} {r['script_s']:9.2f} {r['runner_s'] / r['script_s']:6.2f} "
              f"{r['runner_rss_mib']:11.0f} {r['script_rss_mib']:11.0f} {r['runner_rss_mib'] / r['script_rss_mib']:6.2f}  "
              f"{'yes' if same else 'NO: ' + str(r['identical'])}")
    print("\nwall: fastest of the repeats, each side in a fresh process (imports included); RSS: peak of the process")
    assert ok, "runner and the hand-written script produced different bytes"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
