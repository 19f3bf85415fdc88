"""Benchmark: an 8-variant sweep on tiny models, local executor vs Ray with 1 and 2 workers.

Measured side by side in one invocation, each case a fresh `runner run ... --sweep params.strength=(8 values)` process on a fresh cache
(the tiny models are built once beforehand, outside the timing):
- `local`: the local executor (one process, models loaded once);
- `ray1`, `ray2`: `--executor ray --workers 1|2` (a local Ray cluster started and stopped by the command; each
  worker loads the checkpoint once).
Printed: wall seconds, the ratio to `local`, and the per-task overhead of Ray, (ray1 - local) / tasks run.
On 2 CPU cores the tiny models' work is milliseconds: the figures are Ray's fixed costs (cluster start, worker
processes importing torch) and per-task round trips, not a speed-up. Run: `.venv/bin/python bench/ray_sweep.py`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from timing import BENCH, bench_options, timed

VARIANTS = 8


def main() -> None:
    options = bench_options(__doc__, "1")
    work = Path(tempfile.mkdtemp(prefix="runner-bench-ray-"))
    workflow = BENCH / "sweep_chain.yaml"

    def env(name: str) -> dict:
        return {**os.environ, "RUNNER_CACHE_DIR": str(work / f"cache-{name}"), "RUNNER_MODELS_DIR": str(options.models),
                "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}

    strengths = ",".join(f"{0.5 + 0.06 * i:.2f}" for i in range(VARIANTS))
    plain = [sys.executable, "-m", "runner", "run", str(workflow), "--quiet"]
    base = plain + ["--sweep", f"params.strength={strengths}"]
    timed(plain + ["--out", str(work / "warm")], env("warm"))  # builds the tiny models
    cases = {"local": [], "ray1": ["--executor", "ray", "--workers", "1"], "ray2": ["--executor", "ray", "--workers", "2"]}
    seconds, tasks = {}, 0
    for name, extra in cases.items():
        best = None
        for attempt in range(max(1, options.repeats)):
            took = timed(base + ["--out", str(work / f"{name}{attempt}")] + extra, env(f"{name}{attempt}"))
            best = took if best is None else min(best, took)
        seconds[name] = best
        if name == "local":
            for manifest in (work / "local0").rglob("manifest.json"):
                tasks += json.loads(manifest.read_text())["counts"]["ran"]
    print(f"{VARIANTS}-variant sweep of {workflow.name} on tiny models, {tasks} tasks run:")
    for name, took in seconds.items():
        print(f"  {name:6s} {took:7.2f} s  ({took / seconds['local']:.2f} x local)")
    print(f"  Ray overhead per task (1 worker): {(seconds['ray1'] - seconds['local']) / max(tasks, 1):.3f} s")


if __name__ == "__main__":
    sys.exit(main())
