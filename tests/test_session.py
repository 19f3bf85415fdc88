"""runner.Session: the Python API, models kept across runs and sweep variants, the memory-budgeted pool,
plain-data tasks and the executor interface, and the layering rules."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, WORKFLOWS, latest_run, manifest, run_cli, write_workflow
from PIL import Image, ImageChops

import runner


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.mode == b.mode and ImageChops.difference(a, b).getbbox() is None


def test_session_runs_a_path_text_or_dict_like_the_cli(demo, tmp_path, monkeypatch):
    assert run_cli("run", demo, "--out", tmp_path / "cli", "--quiet") == 0
    cli_run = latest_run(tmp_path / "cli", "demo")
    cli = manifest(cli_run)
    with runner.Session(out=tmp_path / "api", cache_dir=tmp_path / "api-cache") as session:
        run = session.run(demo)
        assert run.status == "ok" and run.exit_code == 0 and run.error is None
        assert run.folder.parent == tmp_path / "api" / "demo"
        assert run.manifest == json.loads((run.folder / "manifest.json").read_text())
        assert (run.folder / "report.html").is_file() and (run.folder / "workflow.yaml").is_file()
        # same cache keys and output bytes as `runner run` (here with a cache of its own: everything ran)
        assert all(node["status"] == "ran" for node in run.manifest["nodes"].values())
        for node_id, node in cli["nodes"].items():
            assert run.manifest["nodes"][node_id]["key"] == node["key"]
            assert run.manifest["nodes"][node_id]["outputs"] == node["outputs"]
        final = run.image("final")  # a save_image node: the PNG it wrote
        assert _same_pixels(final, Image.open(cli_run / "final.png"))
        assert run.image("fixed").size == final.size
        assert run.image("generated", "latents").shape[1] == 4
        with pytest.raises(KeyError, match="did you mean 'fixed'"):
            run.image("fixd")
        with pytest.raises(KeyError, match="has no output 'depth'"):
            run.image("fixed", "depth")
        # YAML text and dicts: relative paths start from the current folder
        monkeypatch.chdir(demo.parent)
        text_run = session.run(demo.read_text())
        assert text_run.status == "ok" and text_run.folder.parent == tmp_path / "api" / "demo"
        assert {n["status"] for n in text_run.manifest["nodes"].values()} == {"cached"}
        import yaml

        dict_run = session.run(yaml.safe_load(demo.read_text()), set={"params.prompt": "a red barn"})
        assert dict_run.manifest["workflow"]["overrides"] == ['params.prompt="a red barn"']
        ran = {n for n, node in dict_run.manifest["nodes"].items() if node["status"] == "ran"}
        assert "room" not in ran and "generated" in ran


def test_models_load_once_per_session(demo, tmp_path):
    with runner.Session(out=tmp_path / "out") as session:
        first = session.run(demo)
        second = session.run(demo, set={"params.prompt": "a red barn"})
        third = session.run(demo, set=["params.prompt=a blue barn"], only=["generated"])
    identity = first.manifest["nodes"]["generated"]["models"]["$models.sd15"]
    assert first.manifest["models_loaded"] == [identity] and first.manifest["models_reused"] == []
    assert second.manifest["models_loaded"] == [] and second.manifest["models_reused"] == [identity]
    assert third.manifest["models_reused"] == [identity] and set(third.manifest["nodes"]) == {"generated"}
    assert second.manifest["executor"] == {"name": "local"}


def test_sweep_variants_share_the_loaded_checkpoint(demo, tmp_path, capsys):
    code = run_cli("run", demo, "--out", tmp_path / "out", "--quiet", "--sweep", "params.prompt=a cat,a dog,a fox")
    assert code == 0
    sweep = next((tmp_path / "out" / "demo").glob("sweep-*"))
    variants = [manifest(sweep / f"{n:03d}") for n in range(3)]
    assert len(variants[0]["models_loaded"]) == 1
    assert [v["models_loaded"] for v in variants[1:]] == [[], []]
    assert [v["models_reused"] for v in variants[1:]] == [variants[0]["models_loaded"]] * 2


def test_invalid_workflow_raises_with_the_cli_text(tmp_path, capsys):
    broken = write_workflow(tmp_path, "broken.yaml", "version: 1\nnodes:\n  a: {type: load_image, paht: in.png}\n"
                                                     "  b: {type: save_image, image: $nope}\n")
    with runner.Session(out=tmp_path / "out") as session:
        with pytest.raises(runner.WorkflowError) as caught:
            session.run(broken)
    assert len(caught.value.problems) == 2
    assert run_cli("validate", broken) == 2
    assert capsys.readouterr().err.rstrip("\n") == str(caught.value)
    assert str(caught.value).endswith("2 problems found") and "broken.yaml:3:" in str(caught.value)
    # what the call was given, not the workflow, is at fault: a CommandError (also exit status 2 on the command line)
    with pytest.raises(runner.CommandError, match="unknown node 'nope'"):
        runner.Session(out=tmp_path / "out").run(WORKFLOWS / "demo.yaml", only=["nope"])
    with pytest.raises(runner.CommandError, match="not a size"):
        runner.Session(max_ram="lots")


def test_import_and_session_do_not_import_torch(tmp_path, demo):
    probe = (
        "import sys, runner\n"
        f"session = runner.Session(out={str(tmp_path / 'out')!r}, max_ram='8GB')\n"
        f"session.load({str(demo)!r})\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ the pool
THREE_CHECKPOINTS = ("sd15", "sdxl", "sd15-inpaint")


def _one_checkpoint_workflow(folder: Path, tiny: str) -> Path:
    node = "inpaint, image: $photo, mask: $hole" if "inpaint" in tiny else "img2img, image: $photo, strength: 0.5"
    return write_workflow(folder, f"{tiny.replace('-', '_')}.yaml",
                          "version: 1\nseed: 7\n"
                          f"models: {{ckpt: tiny:{tiny}}}\n"
                          "nodes:\n"
                          "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  hole: {type: make_mask, like: $photo, shapes: [{rect: [8, 8, 40, 40]}]}\n"
                          f"  out: {{type: {node}, model: $models.ckpt, prompt: a house, steps: 2}}\n"
                          "  save: {type: save_image, image: $out}\n")


def test_pool_keeps_within_a_budget_that_fits_two_checkpoints(tmp_path, models_dir):
    from runner.models.pool import estimate_bytes
    from runner.models.tiny import ensure_tiny

    sizes = [estimate_bytes(ensure_tiny(name, models_dir / "tiny"), "float32") for name in THREE_CHECKPOINTS]
    budget = sum(sizes) - min(sizes) // 2  # any two fit, all three do not
    workflows = [_one_checkpoint_workflow(tmp_path, name) for name in THREE_CHECKPOINTS]
    unbounded = {}
    with runner.Session(out=tmp_path / "free", cache_dir=tmp_path / "free-cache", max_ram=10**12) as session:
        for workflow in workflows:
            run = session.run(workflow)
            unbounded[workflow.name] = run.manifest["nodes"]["out"]["outputs"]
        assert len(session.pool.residents) == 3
    with runner.Session(out=tmp_path / "tight", cache_dir=tmp_path / "tight-cache", max_ram=budget) as session:
        runs = []
        for number, workflow in enumerate(workflows + workflows[:1]):  # the first checkpoint again, after its release
            runs.append(session.run(workflow, set={"seed": 7 if number < 3 else 8}))
            assert len(session.pool.residents) <= 2
            assert session.pool.resident_bytes("ram") <= budget
        assert session.pool.peak["ram"] <= budget
    assert [r.manifest["models_released"] for r in runs[:2]] == [[], []]
    released = runs[2].manifest["models_released"]
    assert [item["identity"] for item in released] == runs[0].manifest["models_loaded"]  # least recently used first
    assert "within the ram budget" in released[0]["reason"] and released[0]["bytes"] > 0
    assert runs[3].manifest["models_loaded"] == runs[0].manifest["models_loaded"]  # loaded again after its release
    for run, workflow in zip(runs, workflows):
        assert run.manifest["nodes"]["out"]["outputs"] == unbounded[workflow.name]


def test_a_budget_below_the_model_is_refused_before_anything_loads(demo, tmp_path, capsys):
    code = run_cli("run", demo, "--out", tmp_path / "out", "--max-ram", "64KB")
    err = capsys.readouterr().err
    assert code == 2
    assert "model 'tiny:sd15' needs about" in err and "more than the memory budget of 64.00 KB" in err
    assert "demo.yaml:" in err and "fix: raise the budget" in err
    assert not (tmp_path / "out" / "demo").exists()
    assert run_cli("run", demo, "--out", tmp_path / "out", "--max-ram", "plenty") == 2
    assert "'plenty' is not a size" in capsys.readouterr().err


def test_sizes_parse_like_users_write_them():
    from runner.core.sizes import format_size, parse_size

    assert parse_size("16GB") == 16 << 30 and parse_size("512MB") == 512 << 20 and parse_size("1.5GiB") == 3 << 29
    assert parse_size("2048") == 2048 and parse_size(None) is None and parse_size(10) == 10
    assert format_size(3 << 29) == "1.50 GB"
    with pytest.raises(ValueError):
        parse_size("16 parsecs")


def test_out_of_memory_releases_other_models_and_retries_once(tmp_path):
    """A CUDA out-of-memory error in a node frees the models it does not use and runs it again, once."""
    import torch
    from pydantic import Field

    from runner.executor.cache import NodeCache
    from runner.executor.engine import LocalExecutor, NodeFailed
    from runner.executor.plan import build_plan
    from runner.engine.progress import PlainEvents
    from runner.language.fields import Fields
    from runner.language.workflow import load_workflow
    from runner.models.pool import ModelPool, Resident
    from runner.models.resources import PoolResources
    from runner.nodes.base import NodeType

    calls = []

    class Flaky(Fields):
        failures: int = Field(1, ge=0)

    def run(ctx, f):
        calls.append(ctx.node_id)
        if len(calls) <= f.failures:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"image": Image.new("RGB", (8, 8))}

    catalogue = {"flaky": NodeType("flaky", Flaky, {"image": "image"}, 1, "fails with OOM first", run)}
    path = tmp_path / "wf.yaml"
    path.write_text("version: 1\nnodes:\n  a: {type: flaky}\n  b: {type: flaky, failures: 5}\n")
    workflow = load_workflow(path, catalogue=catalogue)
    plan = build_plan(workflow, lambda entry, base, kind: ({}, ""), ["a"])
    pool = ModelPool(tmp_path / "models", max_ram=1 << 30, max_vram=1 << 30)
    pool.residents[("cuda", "float16", "other")] = Resident("other", "cuda", "float16", "tiny:other", size=1 << 20)
    pool.residents[("cpu", "float32", "cpu-model")] = Resident("cpu-model", "cpu", "float32", "tiny:cpu", size=1 << 20)
    resources = PoolResources(pool)
    executor = LocalExecutor(NodeCache(tmp_path / "cache"), catalogue, resources)
    results = executor.run(plan, PlainEvents({"a": "flaky"}, quiet=True))
    assert results["a"].status == "ran" and calls == ["a", "a"]
    assert "out of memory" in results["a"].info["warnings"][0]
    assert list(pool.residents) == [("cpu", "float32", "cpu-model")]  # the GPU model went, the RAM one stayed
    calls.clear()
    plan = build_plan(workflow, lambda entry, base, kind: ({}, ""), ["b"])
    with pytest.raises(NodeFailed, match="out of memory"):
        executor.run(plan, PlainEvents({"b": "flaky"}, quiet=True))
    assert calls == ["b"]  # nothing left to release: no pointless retry


# ------------------------------------------------------- plain-data tasks
@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yaml")))
def test_tasks_are_plain_data_that_rebuild_the_same_fields(name, tmp_path):
    from runner.executor.cache import NodeCache
    from runner.executor.engine import LocalExecutor
    from runner.executor.plan import Task, build_plan
    from runner.engine.loading import load_workflow
    from runner.nodes import NODE_TYPES

    workflow = load_workflow(WORKFLOWS / name)
    plan = build_plan(workflow, lambda entry, base, kind: ({"entry": entry.model_dump(), "kind": "tiny", "location": "x"}, "id"))
    executor = LocalExecutor(NodeCache(tmp_path), NODE_TYPES, resources=None)
    for node_id, task in plan.tasks.items():
        data = json.loads(json.dumps(task.to_data()))  # JSON-able, so it travels to another process as is
        again = Task.from_data(data)
        assert again == task
        assert executor.fields(again) == workflow.nodes[node_id].fields


def test_an_input_replaced_after_planning_is_not_cached_under_the_old_key(demo, tmp_path):
    photo = demo.parent / "inputs" / "room.png"
    with runner.Session(out=tmp_path / "out") as session:
        workflow = session.load(demo)
        plan = session.plan(workflow)
        Image.open(photo).rotate(90).save(photo)  # replaced between planning and running
        run = session.run(workflow, plan=plan)
        assert run.status == "failed" and "inputs/room.png changed after the run was planned" in run.error
        assert not session.cache.has(plan.tasks["room"].key)
        again = session.run(demo)
    assert again.status == "ok" and again.manifest["nodes"]["room"]["key"] != plan.tasks["room"].key
    assert again.manifest["nodes"]["room"]["outputs"]["image"]


def test_a_cache_folder_that_is_a_file_is_a_clear_error(demo, tmp_path, monkeypatch, capsys):
    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "not-a-folder"))
    assert run_cli("run", demo, "--out", tmp_path / "out") == 2
    assert "the cache folder is a file, not a folder" in capsys.readouterr().err


def test_a_dict_workflow_that_is_not_plain_data_is_a_workflow_error(tmp_path):
    import runner
    from runner.language.errors import WorkflowError

    deep = inner = {}
    for _ in range(5000):  # deeper than YAML's writer can recurse
        inner["a"] = {}
        inner = inner["a"]
    with runner.Session(out=tmp_path / "out") as session:
        for workflow, says in ((deep, "nested too deeply"), ({"version": 1, "nodes": {"a": object()}}, "not plain data")):
            with pytest.raises(WorkflowError) as refused:
                session.load(workflow)
            assert says in str(refused.value) and "<workflow dict>" in str(refused.value)


def test_errors_in_a_workflow_dict_name_the_path_not_lines_of_yaml_nobody_wrote(tmp_path):
    import runner

    with runner.Session(out=tmp_path / "out") as session:
        with pytest.raises(runner.WorkflowError) as refused:
            session.run({"version": 1, "nodes": {"a": {"type": "load_image", "path": "in.png", "mode": "XYZ"}}})
    assert str(refused.value).startswith("error: <workflow dict>: nodes.a.mode: 'XYZ' is not allowed"), str(refused.value)


def test_a_failed_run_keeps_its_exception_traceback_and_says_so(tmp_path, capsys):
    """run.exception is what the node raised, raise_for_status() raises RunFailed from it, the repr says it failed, the
    manifest names a traceback file beside it, and `runner run --debug` prints that traceback."""
    import runner
    from conftest import run_cli

    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nnodes:\n  photo: {type: load_image, path: in.png}\n"
                              "  m: {type: make_mask, like: $photo}\n"
                              "  r: {type: inpaint, model: tiny:sd15-inpaint, image: $photo, mask: $m, "
                              "padding_mask_crop: 8, steps: 2}\n")
    with runner.Session(out=tmp_path / "out") as session:
        run = session.run(workflow)
    assert run.status == "failed" and type(run.exception).__name__ == "NodeInputError"
    assert repr(run).startswith(f"Run(status='failed', folder={str(run.folder)!r}, error=\"node 'r' (inpaint) failed: ")
    assert "fix='draw the area to repaint in white" in repr(run)
    with pytest.raises(runner.RunFailed) as failed:
        run.raise_for_status()
    assert failed.value.run is run and failed.value.__cause__ is run.exception
    assert "fix: draw the area to repaint in white" in str(failed.value)
    node = run.manifest["nodes"]["r"]
    assert node["error_type"] == "NodeInputError" and node["traceback"] == "traceback-r.txt"
    text = (run.folder / "traceback-r.txt").read_text()
    assert text.startswith("Traceback (most recent call last):") and "NodeInputError: padding_mask_crop" in text
    assert "traceback_text" not in node
    capsys.readouterr()
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--quiet", "--debug") == 1
    err = capsys.readouterr().err
    assert err.index("Traceback (most recent call last):") < err.index("error: node 'r' (inpaint) failed")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--quiet") == 1
    assert "Traceback" not in capsys.readouterr().err
    # a run that finished raises nothing
    ok = write_workflow(tmp_path, "ok.yaml", "version: 1\nnodes:\n  photo: {type: load_image, path: in.png}\n")
    with runner.Session(out=tmp_path / "out") as session:
        assert session.run(ok).raise_for_status().status == "ok"


def _python_blocks(markdown: Path, after: str = "") -> list[str]:
    """The ```python blocks of a page (those after the heading `after`)."""
    import re

    text = markdown.read_text()
    text = text[text.index(after):] if after else text
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_and_how_to_python_api_examples_run_on_the_demo(tmp_path, monkeypatch):
    """Issue 27 item 3: the examples a reader copies first run as written, from a folder holding the repository's
    workflows/ (the demo on tiny models): every run ends ok (none refused for strength x steps leaving no step)."""
    import shutil

    shutil.copytree(WORKFLOWS, tmp_path / "workflows")
    monkeypatch.chdir(tmp_path)
    readme = _python_blocks(REPO / "README.md", after="## Python API")[0]
    how_to = _python_blocks(REPO / "docs" / "how-to" / "python-api.md")[0]
    for source, example in (("README.md", readme), ("docs/how-to/python-api.md", how_to)):
        assert "workflows/demo.yaml" in example, source
        names: dict = {}
        exec(compile(example, source, "exec"), names)
        runs = [value for value in names.values() if isinstance(value, runner.Run)]
        sweeps = [value for value in names.values() if isinstance(value, runner.Sweep)]
        runs += [run for sweep in sweeps for run in sweep.runs.values()]
        assert runs and all(run.status == "ok" for run in runs), (source, [(run.status, run.error) for run in runs])
        assert all(sweep.status == "ok" and len(sweep.runs) == 4 for sweep in sweeps), source
        assert all(run.folder.resolve().is_relative_to(tmp_path / "outputs") for run in runs), source
    assert isinstance(names["again"].manifest["models_reused"], list)
