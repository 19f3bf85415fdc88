"""Benchmark: the start of a fully cached run. `runner run` of the demo whose every node is in the cache, in fresh
processes: user+system CPU seconds and wall seconds (the fastest and the median of --repeats, default 7), and the
import time of the command's modules (`python -X importtime`, the top entries). Goal (issue 28): <= 0.25 s CPU.
Python may write its bytecode caches (__pycache__) as on any installed runner: PYTHONDONTWRITEBYTECODE is dropped
from the children's environment (with it, every one of runner's modules is compiled from source on each start:
about 0.11 s more here).
CPU time on a shared machine varies by 10-20% from run to run; `--instructions` also counts the instructions the
runner process executes (valgrind's callgrind, when installed; about 20 s; its two `git` calls, some 3 M
instructions, are not counted), which vary by well under 0.1% and so compare two versions of runner exactly.
Run: `.venv/bin/python bench/start_time.py [--repeats N] [--instructions]`.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RUNNER = [sys.executable, "-m", "runner", "run", str(REPO / "workflows" / "demo.yaml"), "--quiet"]


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--instructions", action="store_true",
                        help="also count the instructions of one cached run (needs valgrind)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "RUNNER_CACHE_DIR": str(Path(work) / "cache"),
               "RUNNER_MODELS_DIR": os.environ.get("RUNNER_MODELS_DIR", str(REPO / "outputs" / ".bench-models")),
               "TRANSFORMERS_VERBOSITY": "error"}
        out = ["--out", str(Path(work) / "out")]
        subprocess.run(RUNNER + out, env=env, cwd=REPO, check=True, capture_output=True)  # fills the cache
        cpu, wall = [], []
        for _ in range(args.repeats):
            before, started = child_cpu(), time.perf_counter()
            subprocess.run(RUNNER + out, env=env, cwd=REPO, check=True, capture_output=True)
            wall.append(time.perf_counter() - started)
            cpu.append(child_cpu() - before)
        instructions = count_instructions(RUNNER + out, env) if args.instructions else None
        imports = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "run",
                                  str(REPO / "workflows" / "demo.yaml"), "--quiet", *out], env=env, cwd=REPO,
                                 capture_output=True, text=True, check=True).stderr
    cumulative = []
    for line in imports.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if found and len(found.group(2)) <= 4:  # runner's own modules and what they import first
            cumulative.append((int(found.group(1)), found.group(3)))
    print(f"| cached demo run | fastest | median |\n|---|---|---|\n"
          f"| CPU s (user+sys) | {min(cpu):.3f} | {statistics.median(cpu):.3f} |\n"
          f"| wall s | {min(wall):.3f} | {statistics.median(wall):.3f} |")
    if instructions is not None:
        print(f"| instructions (callgrind) | {instructions / 1e6:.1f} M | |")
    print("\nslowest imports (cumulative ms):")
    for microseconds, module in sorted(cumulative, reverse=True)[:8]:
        print(f"  {microseconds / 1000:7.1f}  {module}")


def count_instructions(command: list[str], env: dict) -> int | None:
    """Instructions the runner process of one run executes (None without valgrind)."""
    if shutil.which("valgrind") is None:
        print("--instructions: valgrind is not installed; counting skipped", file=sys.stderr)
        return None
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
                          env={**env, "PYTHONHASHSEED": "0"}, cwd=REPO, capture_output=True, text=True, check=True)
    return sum(int(found) for found in re.findall(r"Collected : (\d+)", done.stderr))


if __name__ == "__main__":
    main()
