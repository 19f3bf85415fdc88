"""Run history and provenance: runs list/show/diff, PNG metadata (A1111 parameters), workflows recovered from images."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from conftest import latest_run, manifest, run_cli, statuses, write_workflow


def test_runs_list_show_and_diff_of_one_param(demo, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain") == 0
    first = latest_run(out, "demo")
    assert run_cli("run", demo, "--out", out, "--plain", "--set", "params.strength=1.0") == 0
    second = latest_run(out, "demo")
    capsys.readouterr()
    assert run_cli("runs", "list", "--out", out) == 0
    listing = capsys.readouterr().out
    assert first.name in listing and second.name in listing
    assert run_cli("runs", "show", "latest", "--out", out) == 0
    shown = capsys.readouterr().out
    assert second.name in shown and "--set params.strength=1.0" in shown and "StableDiffusionInpaintPipeline" in shown
    assert f"command: runner run {demo} --out {out} --plain --set params.strength=1.0\n" in shown
    assert run_cli("runs", "diff", str(first), second.name, "--out", out) == 0
    diff = capsys.readouterr().out
    assert "params.strength" in diff and "0.6" in diff and "1.0" in diff
    assert "restyled.image" in diff and "fixed.image" in diff  # the outputs downstream of the param differ
    assert "generated.image" not in diff and "room.image" not in diff  # upstream or independent: identical
    assert "versions" not in diff and "models" not in diff
    assert run_cli("runs", "show", "nope", "--out", out) == 2


def test_png_carries_a1111_parameters_and_the_workflow_runs_again_from_it(demo, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain") == 0
    run_dir = latest_run(out, "demo")
    text = Image.open(run_dir / "final.png").text
    seed = manifest(run_dir)["nodes"]["fixed"]["seed"]
    assert text["parameters"].startswith("a large window with a view of pine trees\n")
    assert f"Seed: {seed}" in text["parameters"] and "Size: 64x64" in text["parameters"] and "Model: tiny-sd15" in text["parameters"]
    settings = text["parameters"].splitlines()[-1]
    # A1111's words and order, with the values the pipeline used (its own defaults for fields the node left out)
    assert re.fullmatch(rf"Steps: 2, Sampler: DDIM, CFG scale: 7\.5, Seed: {seed}, Size: 64x64, Model hash: [0-9a-f]{{10}}, "
                        r"Model: tiny-sd15, Denoising strength: 1", settings), settings
    capsys.readouterr()
    assert run_cli("extract", run_dir / "final.png") == 0
    assert "type: inpaint" in capsys.readouterr().out
    # its inputs are beside the workflow it came from, which the PNG names: read only where the user allows
    assert run_cli("run", run_dir / "final.png", "--out", out, "--plain", "--allow-path", demo.parent / "inputs") == 0
    again = latest_run(out, "demo")
    assert set(statuses(again).values()) == {"cached"}
    assert Image.open(again / "final.png").tobytes() == Image.open(run_dir / "final.png").tobytes()
    not_ours = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(not_ours)
    assert run_cli("run", not_ours, "--out", out) == 2
    assert "holds no runner workflow" in capsys.readouterr().err


def test_reproduce_in_a_fresh_process_gives_identical_hashes(demo, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain", "--set", "params.strength=0.7") == 0
    original = latest_run(out, "demo")
    result = subprocess.run([sys.executable, "-m", "runner", "reproduce", str(original), "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical" in result.stdout and "warning" not in result.stdout
    again = latest_run(out, "demo")
    data = manifest(again)
    assert data["reproduces"] == str(original) and set(statuses(again).values()) == {"ran"}


def test_reproduce_names_a_changed_model_file(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUNNER_MODELS_DIR", str(tmp_path / "models"))  # this test edits the model: a private copy
    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain") == 0
    original = latest_run(out, "demo")
    config = next((tmp_path / "models" / "tiny").glob("sd15-*")) / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"epsilon"', '"v_prediction"'))
    capsys.readouterr()
    assert run_cli("reproduce", original.name, "--out", out) == 1
    printed = capsys.readouterr().out
    assert "model $models.sd15 (tiny:sd15): file scheduler/scheduler_config.json changed" in printed
    assert "differs" in printed and "final.png (max pixel difference" in printed


def test_manifests_validate_against_the_committed_schema(demo, tmp_path):
    import json

    import jsonschema

    from conftest import REPO

    schema = json.loads((REPO / "schemas" / "manifest.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain") == 0
    ok = manifest(latest_run(out, "demo"))
    assert run_cli("run", demo, "--out", out, "--plain", "--set", "params.steps=1000") == 1
    failed = manifest(latest_run(out, "demo"))
    assert failed["status"] == "failed"
    import runner

    with runner.Session(out=out) as session:  # a run from the Python API records no command line
        from_python = session.run(demo, set={"params.steps": 3}).manifest
    # a generation node of 3 steps records its denoising speed, measured from its first step (a rate, not zero)
    assert from_python["nodes"]["generated"]["steps_per_second"] > 0
    assert "command" not in from_python and ok["command"] == ["runner", "run", str(demo), "--out", str(out), "--plain"]
    assert ok["nodes"]["final"]["published_files"][0]["path"] == "final.png"
    for data in (ok, failed, from_python):
        jsonschema.validate(data, schema)
    for broken in (dict(ok, command="runner run"),
                   dict(ok, nodes=dict(ok["nodes"], final=dict(ok["nodes"]["final"], published_files=[{"path": "final.png"}])))):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
    broken = dict(ok, status="fine")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_deterministic_runs_are_recorded_and_keyed_apart(demo, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain") == 0
    normal = manifest(latest_run(out, "demo"))
    assert normal["determinism"]["requested"] is False and normal["device_name"]
    # torch.use_deterministic_algorithms is process-wide: run it in its own process
    result = subprocess.run([sys.executable, "-m", "runner", "run", str(demo), "--out", str(out), "--plain", "--deterministic"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    strict = manifest(latest_run(out, "demo"))
    assert strict["determinism"]["requested"] is True and strict["determinism"]["deterministic_algorithms"] is True
    assert set(statuses(latest_run(out, "demo")).values()) == {"ran"}  # other kernels: other cache keys
    assert strict["nodes"]["fixed"]["key"] != normal["nodes"]["fixed"]["key"]


def test_a1111_text_names_samplers_loras_and_hashes_as_a1111_does(tmp_path):
    from runner.records.provenance import a1111_sampler

    assert a1111_sampler("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}) == "DPM++ 2M Karras"
    assert a1111_sampler("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}) == "DPM++ 2M SDE"
    assert a1111_sampler("EulerAncestralDiscreteScheduler", {}) == "Euler a"
    workflow = write_workflow(tmp_path, "lora.yaml",
                              "version: 1\nmodels: {sd: tiny:sd15, style: tiny:lora-sd15}\nnodes:\n"
                              "  out: {type: txt2img, model: $models.sd, prompt: a cat, steps: 2, scheduler: dpmpp_2m_karras,"
                              " lora: [{model: $models.style, scale: 0.7}]}\n"
                              "  save: {type: save_image, image: $out}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--quiet") == 0
    text = Image.open(latest_run(tmp_path / "out", "lora") / "save.png").text["parameters"]
    prompt, settings = text.splitlines()
    assert prompt == "a cat <lora:tiny-lora-sd15:0.7>"
    assert "Sampler: DPM++ 2M Karras" in settings and "CFG scale: 7.5" in settings
    assert re.search(r'Lora hashes: "tiny-lora-sd15: [0-9a-f]{10}"$', settings), settings


def test_damaged_run_records_and_images_are_clear_errors(demo, tmp_path, capsys):
    import zlib

    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--quiet") == 0
    good = latest_run(out, "demo")
    broken = out / "demo" / "20000101-000000.000-dead"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"workflow": {"name": "demo"}, "stat')  # truncated
    odd = out / "demo" / "20000101-000000.000-beef"
    odd.mkdir()
    (odd / "manifest.json").write_text('[1, 2, 3]')
    capsys.readouterr()
    assert run_cli("runs", "list", "--out", out) == 0
    captured = capsys.readouterr()
    assert good.name in captured.out and "skipped" in captured.err and "damaged manifest" in captured.err
    for command in (["runs", "show", str(broken)], ["runs", "diff", str(good), str(odd)], ["reproduce", str(broken)]):
        assert run_cli(*command, "--out", out) == 2
        assert "damaged manifest" in capsys.readouterr().err
    # a PNG whose text chunk decompresses to far more than PIL accepts
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (8, 8)).save(bomb)
    data = bomb.read_bytes()
    body = b"runner:workflow\x00\x00" + zlib.compress(b"a" * (64 << 20), 9)
    chunk = len(body).to_bytes(4, "big") + b"zTXt" + body + zlib.crc32(b"zTXt" + body).to_bytes(4, "big")
    bomb.write_bytes(data[:33] + chunk + data[33:])
    assert run_cli("extract", bomb) == 2
    assert "cannot read image" in capsys.readouterr().err
    long_name = demo.parent / "long.yaml"
    long_name.write_text(demo.read_text().replace("name: demo", "name: " + "x" * 300))
    assert run_cli("validate", long_name) == 2
    assert "at most 100 characters" in capsys.readouterr().err


def test_report_takes_latest_and_run_id_prefixes_like_runs_and_reproduce(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "edges.yaml", "version: 1\nnodes:\n  photo: {type: load_image, path: in.png}\n"
                                                      "  save: {type: save_image, image: $photo}\n")
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--quiet") == 0
    run_dir = latest_run(out, "edges")
    capsys.readouterr()
    for ref in ("latest", run_dir.name[:17], f"edges/{run_dir.name}", str(run_dir)):
        assert run_cli("report", ref, "--out", out) == 0, ref
        assert capsys.readouterr().out == f"wrote {run_dir / 'report.html'}\n"
    assert run_cli("report", "latest", "--out", tmp_path / "elsewhere") == 2
    assert "'latest' names the newest run, and there is none under" in capsys.readouterr().err
    assert run_cli("report", str(tmp_path), "--out", out) == 2  # a folder, but not one runner wrote
    assert "not a run folder (no manifest.json)" in capsys.readouterr().err


def test_reproduce_says_how_the_recorded_run_ended(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "fails.yaml", "version: 1\nmodels: {sd: tiny:sd15}\nnodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                              "  r: {type: img2img, model: $models.sd, image: $photo, strength: 0.01}\n")
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--quiet") == 1
    capsys.readouterr()
    assert run_cli("reproduce", "latest", "--out", out, "--quiet") == 1  # a node failed: the CLI's status for it
    said = capsys.readouterr().out
    assert ("reproduced the failure: node 'r' fails again, as in the recorded run (NodeInputError: strength 0.01 x "
            "steps 50 leaves no denoising step") in said
    assert "identical: all 1 node outputs have the recorded sha256" in said  # what it had finished: photo
    # the recorded failure is cured (more steps): the reproduction says the recorded run had failed, and finished
    text = workflow.read_text().replace("strength: 0.01", "strength: 0.01, steps: 100")
    (out / "fails" / latest_run(out, "fails").name / "workflow.yaml").write_text(text)
    assert run_cli("reproduce", "latest", "--out", out) == 0
    said = capsys.readouterr().out
    assert said.startswith("note: the recorded run had failed at node 'r' (img2img): NodeInputError: strength 0.01")
    verdict = [line for line in said.splitlines() if line.endswith("; the reproduction finished")]
    assert len(verdict) == 1 and verdict[0].startswith("the recorded run had failed at node 'r' (img2img)")
    assert "identical: all 1 node outputs have the recorded sha256" in said
