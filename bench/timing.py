"""What the benchmark scripts share: the repository's paths, timing a command in a fresh process, their options."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))


def timed(command: list[str], env: dict) -> float:
    """Wall seconds of one child process (imports included); its stderr's end if it fails."""
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def bench_options(doc: str, repeats_default: str) -> argparse.Namespace:
    """--only tiny|full, --repeats N (0: the script's default per case), --models FOLDER."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--only", choices=("tiny", "full"))
    parser.add_argument("--repeats", type=int, default=0, help=f"default: {repeats_default}")
    parser.add_argument("--models", type=Path, default=REPO / "outputs" / ".bench-models", help="where models are built")
    return parser.parse_args()
