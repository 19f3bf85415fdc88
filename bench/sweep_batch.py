"""Benchmark: an 8-seed sweep as one batched pipeline call against eight calls of one image (issue 28, item 2).

`runner run bench/sweep_batch.yaml --seeds 1-8 --batch 8` against the same with `--batch 1`, each in a fresh process
and a fresh cache, alternating, fastest of --repeats (default 3 on tiny, 1 at full size): wall seconds, the
generation nodes' own seconds summed from the manifests, images per second, and whether the batched images'
pixels equal the unbatched ones (they need not: a batch may take other kernels; the manifest records the batch and
`runner reproduce` rebuilds it). Cases: the tiny SD 1.5 at 64 px and the full-size random SD 1.5 (bench/fullsize_sd15.py)
at 256 px. Run: `.venv/bin/python bench/sweep_batch.py [--only tiny|full] [--repeats N]`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from timing import BENCH, bench_options, timed

SEEDS = 8


def sweep(work: Path, name: str, model: str, size: int, batch: int, env: dict) -> tuple[float, float, list[bytes]]:
    """(wall s, the generation nodes' seconds, each variant's pixels) of one sweep in a fresh process and cache."""
    from PIL import Image

    out = work / f"out-{name}"
    wall = timed([sys.executable, "-m", "runner", "run", str(BENCH / "sweep_batch.yaml"), "--quiet", "--out", str(out),
                  "--set", f"models.sd15={model}", "--set", f"params.size={size}", "--seeds", f"1-{SEEDS}",
                  "--batch", str(batch)], {**env, "RUNNER_CACHE_DIR": str(work / f"cache-{name}")})
    folder = next((out / "bench-sweep-batch").glob("sweep-*"))
    nodes, pixels = 0.0, []
    for variant in sorted(p for p in folder.iterdir() if p.is_dir()):
        record = json.loads((variant / "manifest.json").read_text())["nodes"]["image"]
        assert (record.get("batch", {}).get("size", 1)) == min(batch, SEEDS), record.get("batch")
        nodes += record["seconds"] if record["status"] == "ran" else 0.0
        with Image.open(variant / "image.png") as image:
            pixels.append(image.convert("RGB").tobytes())
    return wall, nodes, pixels


def bench_case(label: str, model: str, size: int, work: Path, repeats: int, env: dict) -> dict:
    sweep(work, "warm", model, size, 1, env)  # builds tiny models, hashes the folder, fills the page cache
    results: dict[int, list[tuple[float, float, list[bytes]]]] = {1: [], SEEDS: []}
    for attempt in range(repeats):
        for batch in (1, SEEDS):
            results[batch].append(sweep(work, f"b{batch}-{attempt}", model, size, batch, env))
    unbatched, batched = (min(results[b], key=lambda r: r[0]) for b in (1, SEEDS))
    import numpy as np

    same = sum(a == b for a, b in zip(unbatched[2], batched[2]))
    most = max(int(np.abs(np.frombuffer(a, np.uint8).astype(int) - np.frombuffer(b, np.uint8)).max())
               for a, b in zip(unbatched[2], batched[2]))
    return {"case": label, "wall_1": unbatched[0], "wall_n": batched[0], "node_1": unbatched[1], "node_n": batched[1],
            "same": same, "most": most}


def main() -> int:
    args = bench_options(__doc__, "3 on tiny, 1 at full size")
    env = {**os.environ, "RUNNER_MODELS_DIR": str(args.models), "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    results = []
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "tiny"):
            results.append(bench_case("tiny sd15, 64 px", "tiny:sd15", 64, work / "tiny", args.repeats or 3, env))
        if args.only in (None, "full"):
            from fullsize_sd15 import build

            folder = build(args.models / "sd15-fullsize-random")
            results.append(bench_case("full-size SD1.5 (random), 256 px", str(folder), 256, work / "full",
                                      args.repeats or 1, env))
    print()
    print(f"{'case':34} {'batch 1 s':>9} {'batch 8 s':>9} {'ratio':>6} {'gen 1 s':>8} {'gen 8 s':>8} {'img/s 1':>8} "
          f"{'img/s 8':>8} same pixels  max diff")
    for r in results:
        print(f"{r['case']:34} {r['wall_1']:9.2f} {r['wall_n']:9.2f} {r['wall_n'] / r['wall_1']:6.3f} {r['node_1']:8.2f} "
              f"{r['node_n']:8.2f} {SEEDS / r['node_1']:8.2f} {SEEDS / r['node_n']:8.2f} {r['same']:>6}/{SEEDS} {r['most']:9}")
    print(f"\nbatch 1 / batch 8 s: wall of `runner run --seeds 1-{SEEDS} --batch 1|{SEEDS}` (fresh process and cache); "
          "ratio = batch 8 / batch 1;\ngen s: the generation nodes' own seconds (manifests); same pixels: variants "
          "whose image equals the unbatched one;\nmax diff: the largest difference of a pixel channel (0-255) between a batched and an unbatched image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
