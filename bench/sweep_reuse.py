"""Benchmark: a 4-variant sweep of the last stage runs in one Session, so the checkpoint loads once.

Measured side by side in one invocation, each in a fresh process and a fresh cache:
- `single`: one `runner run` of the chain (imports, checkpoint load, upstream node, downstream node);
  its manifest gives the downstream node's own seconds;
- `sweep`: `runner run --sweep params.strength=A,B,C,D`: the upstream node runs once, the downstream four times;
- `loop`: the same four variants as four separate `runner run` processes on one cache (what a shell loop does,
  and what every sweep variant cost before the Session: imports and the checkpoint load each time).
Target (full size, where model work dominates): sweep <= (single + 3 x downstream) x 1.05; on tiny models the
per-process costs dominate and the ratio is informative only. `single` and `sweep` are the fastest of --repeats
runs (default 3 on tiny, 1 at full size). Run: `.venv/bin/python bench/sweep_reuse.py [--only tiny|full]`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from timing import BENCH, bench_options, timed

STRENGTHS = ("0.5", "0.6", "0.7", "0.8")


def bench_case(label: str, model: str, size: int, work: Path, repeats: int) -> dict:
    def env(name: str) -> dict:
        return {**os.environ, "RUNNER_CACHE_DIR": str(work / f"cache-{name}"), "RUNNER_MODELS_DIR": str(work.parent / "models"),
                "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}

    base = [sys.executable, "-m", "runner", "run", str(BENCH / "sweep_chain.yaml"), "--quiet", "--set", f"models.sd15={model}",
            "--set", f"params.size={size}"]
    # warm-up outside the timing: tiny models get built, local folders hashed, the page cache filled
    timed(base + ["--out", str(work / "warm")], env("warm"))
    singles, sweeps, downstreams = [], [], []
    for attempt in range(repeats):  # alternating, each in a fresh cache
        singles.append(timed(base + ["--out", str(work / f"single{attempt}"), "--set", f"params.strength={STRENGTHS[0]}"],
                             env(f"single{attempt}")))
        run_dir = sorted((work / f"single{attempt}" / "bench-sweep-chain").iterdir())[-1]
        nodes = json.loads((run_dir / "manifest.json").read_text())["nodes"]
        downstreams.append(nodes["second"]["seconds"])
        sweeps.append(timed(base + ["--out", str(work / f"sweep{attempt}"), "--sweep", "params.strength=" + ",".join(STRENGTHS)],
                            env(f"sweep{attempt}")))
    single, sweep, downstream = min(singles), min(sweeps), min(downstreams)
    sweep_dir = next((work / "sweep0" / "bench-sweep-chain").glob("sweep-*"))
    manifests = [json.loads((sweep_dir / f"{n:03d}" / "manifest.json").read_text()) for n in range(len(STRENGTHS))]
    loads = sum(len(m["models_loaded"]) for m in manifests)
    loop = sum(timed(base + ["--out", str(work / "loop"), "--set", f"params.strength={s}"], env("loop")) for s in STRENGTHS)
    ideal = single + (len(STRENGTHS) - 1) * downstream
    return {"case": label, "target": label.startswith("full"), "single_s": single, "downstream_s": downstream, "sweep_s": sweep, "ideal_s": ideal,
            "loop_s": loop, "sweep_loads": loads, "upstream_s": nodes["base"]["seconds"]}


def main() -> int:
    args = bench_options(__doc__, "3 on tiny, 1 at full size")
    results = []
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        work = Path(tmp)
        (work / "models").mkdir()
        if args.only in (None, "tiny"):
            results.append(bench_case("tiny sd15, 64 px", "tiny:sd15", 64, work / "tiny", args.repeats or 3))
        if args.only in (None, "full"):
            from fullsize_sd15 import build

            folder = build(args.models / "sd15-fullsize-random")
            results.append(bench_case("full-size SD1.5 (random), 256 px", str(folder), 256, work / "full", args.repeats or 1))
    print()
    print(f"{'case':34} {'single s':>9} {'down s':>7} {'sweep s':>8} {'ideal s':>8} {'ratio':>6} {'4 runs s':>9} "
          f"{'gain':>5} loads")
    ok = True
    for r in results:
        ratio = r["sweep_s"] / r["ideal_s"]
        ok &= r["sweep_loads"] == 1 and (ratio <= 1.05 or not r["target"])
        print(f"{r['case']:34} {r['single_s']:9.2f} {r['downstream_s']:7.2f} {r['sweep_s']:8.2f} {r['ideal_s']:8.2f} "
              f"{ratio:6.3f} {r['loop_s']:9.2f} {r['loop_s'] / r['sweep_s']:5.2f} {r['sweep_loads']}")
    print("\nideal = one full run + 3 x the downstream node's seconds; ratio = sweep / ideal (target <= 1.05);"
          "\n4 runs = four separate `runner run` processes on one cache; gain = 4 runs / sweep; loads = checkpoint loads "
          "in the whole sweep")
    if not ok:
        print("TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
