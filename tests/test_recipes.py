"""Every recipe in workflows/ runs offline with the overrides of its `# offline:` comment (tiny models)."""

from __future__ import annotations

import pytest

from conftest import WORKFLOWS, latest_run, manifest, run_cli
from test_cli_language import EXAMPLES, RECIPES, offline_overrides


def test_every_recipe_runs_here():
    # the demo runs offline as it is (test_executor); every other file in workflows/ is parametrized below
    assert set(EXAMPLES) == set(RECIPES) - {"demo.yaml"}


@pytest.mark.parametrize("name", EXAMPLES)
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
