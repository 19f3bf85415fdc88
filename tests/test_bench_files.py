"""`make bench` must run on a clean clone: its workflows validate where they are (their inputs beside them, inside
the folder the confinement rules let them read), and the hand-written scripts read the same input file."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("name", sorted(path.name for path in BENCH.glob("*.yaml")))
def test_bench_workflow_validates(name, capsys):
    assert run_cli("validate", BENCH / name) == 0, capsys.readouterr().err


def test_make_bench_runs_every_benchmark_and_the_readme_describes_each():
    """A benchmark script (one with a __main__ that is not a helper of the others) is run by `make bench` and has its
    section in bench/README.md."""
    helpers = {"timing.py", "fullsize_sd15.py", "fullsize_models.py", "handwritten_demo.py", "handwritten_two_stage.py"}
    scripts = sorted(path.name for path in BENCH.glob("*.py") if path.name not in helpers)
    makefile = (BENCH.parent / "Makefile").read_text().split("\nbench:", 1)[1].split("\n\n", 1)[0]
    readme = (BENCH / "README.md").read_text()
    assert [name for name in scripts if f"bench/{name}" not in makefile] == []
    assert [name for name in scripts if f"## {name}" not in readme] == []


def test_the_handwritten_script_reads_the_workflows_input():
    assert "inputs/room.png" in (BENCH / "demo_chain.yaml").read_text()
    assert '"inputs/room.png"' in (BENCH / "handwritten_demo.py").read_text()
    assert (BENCH / "inputs" / "room.png").read_bytes() == (BENCH.parent / "workflows" / "inputs" / "room.png").read_bytes()


# ------------------------------------------------------------------ bench/gpu: the GPU check, ready to run
def test_the_gpu_check_dry_run_checks_its_set_up_and_prints_its_plan(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHON": sys.executable, "RUNNER_GPU_WHEELS": str(tmp_path / "no-wheels"),
           "RUNNER_GPU_VENV": str(tmp_path / "venv"), "RUNNER_GPU_OUT": str(tmp_path / "out")}
    result = subprocess.run(["bash", str(BENCH / "gpu" / "run.sh"), "--dry-run"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "dry run: nothing is installed or run" in out
    assert "ok       python: Python 3." in out and "ok       repository:" in out
    assert "missing  wheels: no wheels in" in out and "make gpu-wheels" in out  # said, not fatal in a dry run
    assert "pytest -m gpu tests/test_gpu.py" in out and "python bench/gpu/bench.py" in out
    assert "dry run: 0 problem(s) in the set-up" in out
    assert not (tmp_path / "venv").exists() and not (tmp_path / "out").exists()  # nothing was made
    refused = subprocess.run(["bash", str(BENCH / "gpu" / "run.sh"), "--frobnicate"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and "usage: bench/gpu/run.sh [--dry-run]" in refused.stderr


def test_the_gpu_wheels_list_everything_runner_needs_here():
    import sys

    sys.path.insert(0, str(BENCH / "gpu"))
    try:
        from dependencies import closure, normal
    finally:
        sys.path.pop(0)
    listed = {normal(line.split("==")[0]) for line in (BENCH / "gpu" / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    missing = set(closure()) - listed
    assert not missing, f"add {sorted(missing)} to bench/gpu/requirements.txt (python bench/gpu/dependencies.py)"
    assert not {"torch", "numpy", "opencv-python-headless"} & listed


def test_the_gpu_benchmark_writes_its_workflow_in_a_dry_run(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(BENCH / "gpu" / "bench.py"), "--dry-run", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # the models are built on the GPU machine; here tiny ones of the same families stand in
    for case, tiny in (("sd15", "tiny:sd15"), ("sdxl", "tiny:sdxl"), ("flux", "tiny:flux")):
        assert f"would build {case}" in result.stdout
        assert run_cli("validate", tmp_path / f"gpu_{case}.yaml", "--set", f"models.model={tiny}") == 0, case
