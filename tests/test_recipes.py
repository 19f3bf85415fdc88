"""Recipes in workflows/ whose node types execute in this version run offline with their `# offline:` overrides."""

from __future__ import annotations

import pytest

from conftest import WORKFLOWS, latest_run, manifest, run_cli
from test_cli_language import offline_overrides

RUNNABLE = ["txt2img.yaml", "img2img.yaml", "inpaint.yaml", "grid_upscale.yaml", "kandinsky22.yaml"]


@pytest.mark.parametrize("name", RUNNABLE)
def test_recipe_runs_offline_on_tiny_models(name, tmp_path):
    args = []
    for override in offline_overrides(name):
        args += ["--set", override]
    assert run_cli("run", WORKFLOWS / name, "--out", tmp_path / "out", "--plain", *args) == 0
    workflow_name = next((tmp_path / "out").iterdir()).name
    run_dir = latest_run(tmp_path / "out", workflow_name)
    data = manifest(run_dir)
    assert data["status"] == "ok" and data["counts"]["ran"] == len(data["nodes"])
    assert list(run_dir.glob("*.png"))
