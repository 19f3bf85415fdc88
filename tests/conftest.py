"""Shared test set-up: one tiny-model folder per session, one node cache per test, CLI helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA device: skipped (with the reason) where torch sees none."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (bench/gpu/run.sh runs these on a GPU machine)")
    for item in gpu:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """Tiny models are built once per session and shared by every test (they are deterministic)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, models_dir, monkeypatch) -> Path:
    """Each test gets its own node cache and output folder; nothing lands in the repo."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(cache))
    monkeypatch.setenv("RUNNER_MODELS_DIR", str(models_dir))
    return cache


@pytest.fixture
def demo(tmp_path) -> Path:
    """A private copy of the demo workflow and its input images (tests may edit them)."""
    import shutil

    folder = tmp_path / "wf"
    shutil.copytree(WORKFLOWS / "inputs", folder / "inputs")
    shutil.copy(WORKFLOWS / "demo.yaml", folder / "demo.yaml")
    return folder / "demo.yaml"


def write_workflow(folder: Path, name: str, text: str) -> Path:
    """`folder/name` holding `text`, with the demo photo beside it as in.png (what `path: in.png` reads)."""
    (folder / "in.png").write_bytes((WORKFLOWS / "inputs" / "room.png").read_bytes())
    workflow = folder / name
    workflow.write_text(text)
    return workflow


def run_cli(*args: str) -> int:
    from runner.cli import main

    return main([str(a) for a in args])


def run_subprocess(*args: str, cwd: Path | None = None, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd or REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, **kwargs)


def latest_run(out: Path, name: str) -> Path:
    runs = sorted((out / name).iterdir())
    return runs[-1]


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def statuses(run_dir: Path) -> dict[str, str]:
    return {node_id: node["status"] for node_id, node in manifest(run_dir)["nodes"].items()}
