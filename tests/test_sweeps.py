"""Sweeps share the cache: nodes upstream of the swept values run once; one folder per variant plus an index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_workflow, manifest, run_cli

CHAIN = """version: 1
params: {strength: 0.5, prompt: a room}
models: {sd: tiny:sd15}
nodes:
  photo: {type: load_image, path: in.png}
  base: {type: txt2img, model: $models.sd, prompt: a house, steps: 2}
  hole: {type: make_mask, like: $photo, shapes: [{rect: [0, 0, 20, 20]}]}
  restyled: {type: img2img, model: $models.sd, image: $base, prompt: "${params.prompt}", strength: $params.strength, steps: 4}
  save: {type: save_image, image: $restyled}
"""


def sweep_folder(out: Path) -> Path:
    return next((out / "chain").glob("sweep-*"))


def test_a_2x3_grid_runs_the_upstream_nodes_once(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "chain.yaml", CHAIN)
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--plain", "--sweep", "params.strength=0.5,1.0",
                   "--sweep", "params.prompt=a cat,a dog,a bird") == 0
    folder = sweep_folder(out)
    index = json.loads((folder / "index.json").read_text())
    assert [v["values"] for v in index["variants"]][:2] == [{"params.strength": 0.5, "params.prompt": "a cat"},
                                                            {"params.strength": 0.5, "params.prompt": "a dog"}]
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert len(runs) == 6 and all((run / "save.png").is_file() for run in runs)
    executions = {}
    for run in runs:
        for node_id, node in manifest(run)["nodes"].items():
            executions[node_id] = executions.get(node_id, 0) + (node["status"] == "ran")
    assert executions == {"photo": 1, "base": 1, "hole": 1, "restyled": 6, "save": 6}
    assert f"sweep folder: {folder}" in capsys.readouterr().out


def test_zip_seeds_and_the_file_sweep_section(tmp_path):
    workflow = write_workflow(tmp_path, "chain.yaml", CHAIN + "sweep:\n  zip: {params.strength: [0.5, 1.0], params.prompt: [a cat, a dog]}\n")
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--plain", "--seeds", "1-2") == 0
    index = json.loads((sweep_folder(out) / "index.json").read_text())
    assert [v["values"] for v in index["variants"]] == [
        {"params.strength": 0.5, "params.prompt": "a cat", "seed": 1}, {"params.strength": 0.5, "params.prompt": "a cat", "seed": 2},
        {"params.strength": 1.0, "params.prompt": "a dog", "seed": 1}, {"params.strength": 1.0, "params.prompt": "a dog", "seed": 2}]
    first = sweep_folder(out) / index["variants"][0]["run"]
    assert "sweep:" not in (first / "workflow.yaml").read_text()
    assert manifest(first)["seed"] == 1


def test_bad_sweeps_are_invalid_input(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "chain.yaml", CHAIN)
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--sweep", "params.strength=0.5,7") == 2
    assert "should be at most 1 " in capsys.readouterr().err
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--zip", "--sweep", "params.strength=0.5,1",
                   "--sweep", "params.prompt=a") == 2
    assert "equally long" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing ran: every variant is validated first


def test_sweep_sizes_are_counted_before_anything_is_built(demo, tmp_path, capsys):
    import time

    started = time.perf_counter()
    grid = "sweep:\n  grid:\n" + "".join(f"    params.p{n}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n" for n in range(6))
    text = demo.read_text().replace("params:\n", "params:\n" + "".join(f"  p{n}: 0\n" for n in range(6)), 1)
    demo.write_text(text + grid)
    assert run_cli("run", demo, "--out", tmp_path / "out", "--dry-run") == 2
    err = capsys.readouterr().err
    assert "the sweep has 1000000 variants (10 x 10 x 10 x 10 x 10 x 10), more than the limit of 1000" in err
    assert "--max-variants" in err
    values = ",".join(str(n) for n in range(1000))
    plain = demo.parent / "plain.yaml"
    plain.write_text(text)
    assert run_cli("run", plain, "--out", tmp_path / "out", "--dry-run", "--sweep", f"params.p0={values}",
                   "--sweep", f"params.p1={values}") == 2
    assert "the sweep has 1000000 variants (1000 x 1000)" in capsys.readouterr().err
    assert run_cli("run", plain, "--out", tmp_path / "out", "--dry-run", "--seeds", "1-100000000") == 2
    assert "100000000 seeds is more than the limit of 1000 variants" in capsys.readouterr().err
    assert time.perf_counter() - started < 20  # refused without building a million variants (a loose bound)
    assert run_cli("run", plain, "--out", tmp_path / "out", "--dry-run", "--seeds", "9-1") == 2
    err = capsys.readouterr().err
    assert "the range 9-1 is empty" in err and "--seeds 1-9" in err
    assert run_cli("run", plain, "--out", tmp_path / "out", "--dry-run", "--seeds", "1-3", "--max-variants", "2") == 2
    capsys.readouterr()
    assert run_cli("run", plain, "--out", tmp_path / "out", "--dry-run", "--seeds", "1-3", "--max-variants", "3") == 0
    assert "sweep of 3 variants" in capsys.readouterr().out


EDGES = """version: 1
name: edges
params: {low: 50}
nodes:
  photo: {type: load_image, path: in.png, size: [64, 64]}
  edges: {type: canny, image: $photo, low: $params.low}
  save: {type: save_image, image: $edges}
"""


def test_sweep_variants_have_ids_unique_across_sweeps_and_every_command_takes_them(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "edges.yaml", EDGES)
    out = tmp_path / "out"
    for values in ("params.low=10,20", "params.low=30,40"):
        assert run_cli("run", workflow, "--out", out, "--quiet", "--sweep", values) == 0
    # in the order they ran (two sweeps in one second sort by their random suffix)
    first, second = [p.name for p in sorted((out / "edges").glob("sweep-*"), key=lambda p: (p / "index.json").stat().st_mtime_ns)]
    capsys.readouterr()
    assert run_cli("runs", "list", "--out", out) == 0
    listing = capsys.readouterr().out
    for sweep in (first, second):
        for variant in ("000", "001"):
            assert f"{sweep}/{variant}" in listing
    assert run_cli("runs", "show", f"{second}/001", "--out", out) == 0
    shown = capsys.readouterr().out
    assert f"run {second}/001: ok" in shown and "--set params.low=40" in shown
    assert run_cli("runs", "show", f"edges/{first}/000", "--out", out) == 0  # NAME/ in front works too
    assert "--set params.low=10" in capsys.readouterr().out
    assert run_cli("runs", "diff", f"{first}/000", f"{second}/001", "--out", out) == 0
    diff = capsys.readouterr().out
    assert "params.low" in diff and f"{first}/000" in diff
    # a variant's number alone is in every sweep: refused, with the ids that would do
    assert run_cli("runs", "show", "001", "--out", out) == 2
    err = capsys.readouterr().err
    assert "'001' is a sweep variant's number" in err and f"fix: name the sweep too, as SWEEP/001: e.g. {first}/001" in err
    # report: a sweep by a unique prefix of its id, a variant, the newest run
    assert run_cli("report", second[:-1], "--out", out) == 0
    assert f"wrote {out / 'edges' / second / 'index.html'}" in capsys.readouterr().out
    assert run_cli("report", "latest", "--out", out) == 0
    assert f"wrote {out / 'edges' / second / '001' / 'report.html'}" in capsys.readouterr().out
    assert run_cli("report", "sweep-", "--out", out) == 2
    assert "'sweep-' matches 2 runs or sweeps" in capsys.readouterr().err


def test_session_sweep_equals_the_cli_sweep(tmp_path, capsys):
    """Session.sweep gives what `runner run --sweep` gives: the same folders, index.json and image bytes (a 2x2 grid)."""
    import runner

    workflow = write_workflow(tmp_path, "chain.yaml", CHAIN)
    assert run_cli("run", workflow, "--out", tmp_path / "cli", "--quiet", "--sweep", "params.strength=0.5,1.0",
                   "--sweep", "params.prompt=a cat,a dog", "--set", "params.prompt=x") == 0
    with runner.Session(out=tmp_path / "py", cache_dir=tmp_path / "py-cache") as session:  # runs as the CLI did
        result = session.sweep(workflow, {"params.strength": [0.5, 1.0], "params.prompt": ["a cat", "a dog"]},
                               set=["params.prompt=x"])
        assert result.status == "ok" and result.exit_code == 0 and len(result.runs) == 4 and not result.failures
        dry = session.sweep(workflow, seeds="1-3", dry_run=True)
        assert dry.folder is None and dry.values == [{"seed": 1}, {"seed": 2}, {"seed": 3}]
        # values given as Python data are taken as they are: a text with a comma, a list (not split at commas)
        dry = session.sweep(workflow, {"params.prompt": ["a cat, in a hat", "a dog"]}, dry_run=True)
        assert dry.values == [{"params.prompt": "a cat, in a hat"}, {"params.prompt": "a dog"}]
        with __import__("pytest").raises(runner.CommandError, match="nothing to sweep"):
            session.sweep(workflow)
    cli, py = sweep_folder(tmp_path / "cli"), result.folder
    assert py.parent == tmp_path / "py" / "chain"
    cli_index, py_index = (json.loads((folder / "index.json").read_text()) for folder in (cli, py))
    assert cli_index.pop("command")[:2] == ["runner", "run"] and "command" not in py_index  # the command line it came from
    assert cli_index == py_index == result.index
    for item in py_index["variants"]:
        number = f"{item['variant']:03d}"
        assert (cli / number / "save.png").read_bytes() == (py / number / "save.png").read_bytes()
        assert result.runs[item["variant"]].folder == py / number


def test_validate_builds_every_variant_of_the_file_sweep_and_locates_a_bad_value(tmp_path, capsys):
    """runner validate checks the sweep: section as run --dry-run does; a bad swept value is located at its sweep
    entry in the file (not at a --set nobody wrote), and one from --sweep at that option."""
    path = write_workflow(tmp_path, "sw.yaml", "version: 1\nnodes:\n  a: {type: load_image, path: in.png}\n"
                          "sweep:\n  grid: {nodes.a.mode: [RGB, XYZ]}\n")
    for command in (["validate"], ["run", "--dry-run", "--out", tmp_path / "out"]):
        assert run_cli(*command, path) == 2
        err = capsys.readouterr().err
        assert f"error: {path}:5:10: nodes.a.mode: sweep: grid: nodes.a.mode value \"XYZ\": 'XYZ' is not allowed" in err, err
    path.write_text(path.read_text().replace("XYZ", "L"))
    assert run_cli("validate", path) == 0
    assert ", a sweep of 2 variants" in capsys.readouterr().out
    path.write_text(path.read_text().replace("sweep:\n  grid: {nodes.a.mode: [RGB, L]}\n", ""))
    assert run_cli("run", "--dry-run", "--out", tmp_path / "out", path, "--sweep", "nodes.a.mode=RGB,XYZ") == 2
    assert "error: --sweep nodes.a.mode=\"XYZ\": nodes.a.mode: 'XYZ' is not allowed" in capsys.readouterr().err


BATCH = """version: 1
params: {prompt: a house}
models: {sd: tiny:sd15}
nodes:
  photo: {type: load_image, path: in.png, size: [64, 64]}
  out: {type: STAGE, model: $models.sd, prompt: "${params.prompt}", steps: STEPS}
  save: {type: save_image, image: $out}
"""


def _variants(out: Path, name: str = "batch") -> list[Path]:
    folder = next((out / name).glob("sweep-*"))
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _pixels(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def _diffusers_batch(pipe, record: dict, seeds: list[int], **extra) -> list[bytes]:
    """The images of diffusers' own batched call (one CPU generator per image, as its docs make reproducible batches)
    with the arguments the manifest recorded, as PNG pixels."""
    import numpy as np
    import torch

    call = {**record["call"], **extra}
    images = pipe(**call, generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds]).images
    return [np.asarray(image.convert("RGB")).tobytes() for image in images]


def test_a_seed_sweep_batched_gives_diffusers_batched_bytes_and_reproduces(tmp_path, models_dir, capsys):
    """--batch 2 over three seeds: variants 0 and 1 share one call (num_images_per_prompt 2, a generator each),
    variant 2 runs alone; the images are diffusers' batched call's; reproduce rebuilds the batch of variant 1."""
    from diffusers import AutoPipelineForText2Image

    from runner.models.tiny import ensure_tiny

    workflow = write_workflow(tmp_path, "batch.yaml", BATCH.replace("STAGE", "txt2img").replace("STEPS", "2")
                              .replace("prompt: \"${params.prompt}\"", "prompt: a house, width: 64, height: 64"))
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--quiet", "--seeds", "1-3", "--batch", "2") == 0
    runs = _variants(out)
    nodes = [manifest(run)["nodes"]["out"] for run in runs]
    seeds = [node["generator"]["seed"] for node in nodes]
    assert [node["status"] for node in nodes] == ["ran", "cached", "ran"]
    assert [node.get("batch") for node in nodes] == [{"index": 0, "size": 2, "seeds": seeds[:2]},
                                                     {"index": 1, "size": 2, "seeds": seeds[:2]}, None]
    assert nodes[1]["call"] == nodes[0]["call"] and nodes[0]["call"]["num_images_per_prompt"] == 1  # each its own
    pipe = AutoPipelineForText2Image.from_pretrained(str(ensure_tiny("sd15", models_dir / "tiny")))
    pipe.set_progress_bar_config(disable=True)
    batched = _diffusers_batch(pipe, nodes[0], seeds[:2], num_images_per_prompt=2)
    assert [_pixels(run / "save.png") for run in runs[:2]] == batched
    assert [_pixels(runs[2] / "save.png")] == _diffusers_batch(pipe, nodes[2], seeds[2:])
    capsys.readouterr()
    assert run_cli("reproduce", runs[1], "--out", tmp_path / "again") == 0
    assert "identical" in capsys.readouterr().out


def test_variants_differing_in_prompt_and_seed_share_one_img2img_call(tmp_path, models_dir):
    """Two prompts x two seeds, --batch 4: one call with the prompt list, the shared input image computed once."""
    from diffusers import AutoPipelineForImage2Image
    from PIL import Image

    from runner.models.tiny import ensure_tiny

    workflow = write_workflow(tmp_path, "batch.yaml", BATCH.replace("STAGE", "img2img").replace("STEPS", "4")
                              .replace("steps: 4}", "steps: 4, image: $photo, strength: 0.5}"))
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--quiet", "--sweep", "params.prompt=a cat,a dog", "--seeds", "1-2",
                   "--batch", "4") == 0
    runs = _variants(out)
    nodes = [manifest(run)["nodes"]["out"] for run in runs]
    prompts = [node["call"]["prompt"] for node in nodes]
    seeds = [node["generator"]["seed"] for node in nodes]
    assert prompts == ["a cat", "a cat", "a dog", "a dog"]
    assert [node["batch"] for node in nodes] == [{"index": i, "size": 4, "seeds": seeds, "fields": {"prompt": prompts}}
                                                 for i in range(4)]
    assert [node["status"] for node in nodes] == ["ran", "cached", "cached", "cached"]
    pipe = AutoPipelineForImage2Image.from_pretrained(str(ensure_tiny("sd15", models_dir / "tiny")))
    pipe.set_progress_bar_config(disable=True)
    photo = Image.open(tmp_path / "in.png").convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
    expected = _diffusers_batch(pipe, nodes[0], seeds, prompt=prompts, image=photo)
    assert [_pixels(run / "save.png") for run in runs] == expected


def test_batch_without_a_sweep_is_refused_with_the_fix(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    workflow = write_workflow(tmp_path, "one.yaml", "version: 1\nnodes:\n  a: {type: load_image, path: in.png}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--batch", "2") == 2
    err = capsys.readouterr().err
    assert "--batch: it groups the variants of a sweep, and this run is not a sweep" in err and "fix: add --seeds" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exited:  # argparse's own refusal
        run_cli("run", workflow, "--out", tmp_path / "out", "--seeds", "1-2", "--batch", "0")
    assert exited.value.code == 2 and "argument --batch: 0 is below 1" in capsys.readouterr().err
