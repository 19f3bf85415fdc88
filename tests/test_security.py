"""What data inside a file must never decide: where inputs may be read from, and whether code may run.

A PNG's text chunks and a run folder's manifest are data anyone can write. Each test crafts such a file in a private
temporary folder (never touching system paths) and checks that runner keeps to the folders the user allowed and to
the opt-ins the user gave on the command line (or to a Session).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import runner
from conftest import WORKFLOWS, latest_run, manifest, run_cli, statuses, write_workflow

COPY_NODES = ("nodes:\n"
              "  stolen: {{type: load_image, path: {path}}}\n"
              "  out: {{type: save_image, image: $stolen, name: copy.png}}\n")


def secret_image(folder):
    """An image only its owner should see, outside every folder the tests allow."""
    folder.mkdir(parents=True)
    path = folder / "private.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(path)
    return path


def crafted_png(path, workflow_text: str, claimed_path: str) -> None:
    """A PNG carrying a forged runner workflow and a forged original path, as PIL lets anyone write."""
    info = PngInfo()
    info.add_itxt("runner:workflow", workflow_text)
    info.add_itxt("runner:workflow_path", claimed_path)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)


# ------------------------------------------------------------------ item 1: PNG
@pytest.mark.parametrize("written", ["absolute", "relative"])
def test_a_crafted_png_cannot_read_files_outside_its_own_folder(tmp_path, capsys, written):
    secret = secret_image(tmp_path / "home" / "photos")
    shared = tmp_path / "downloads"
    shared.mkdir()
    # relative: the PNG claims to live beside the secret and names it relative to that folder
    path = str(secret) if written == "absolute" else "private.png"
    text = "version: 1\nname: harmless\n" + COPY_NODES.format(path=path)
    crafted_png(shared / "evil.png", text, str(secret.parent / "x.yaml"))
    out = tmp_path / "out"
    assert run_cli("run", shared / "evil.png", "--out", out, "--plain") == 2
    err = capsys.readouterr().err
    assert f"{shared / 'evil.png'} (embedded workflow):" in err and "nodes.stolen.path" in err
    assert "outside the folders this workflow may read from" in err and str(shared) in err
    assert f"--allow-path {secret.parent}" in err and "Traceback" not in err
    assert not out.exists() or not list(out.rglob("copy.png"))
    # the user's own decision widens it, and only then
    assert run_cli("run", shared / "evil.png", "--out", out, "--plain", "--allow-path", secret.parent) == 0
    assert Image.open(latest_run(out, "harmless") / "copy.png").tobytes() == Image.open(secret).tobytes()


def test_a_png_reads_from_its_own_folder_and_paths_start_where_it_was_run(demo, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain") == 0
    run_dir = latest_run(out, "demo")
    capsys.readouterr()
    # relative paths start from the recorded folder (wf/), but that folder is not the PNG's, nor allowed
    assert run_cli("run", run_dir / "final.png", "--out", out, "--plain") == 2
    err = capsys.readouterr().err
    assert f"resolves to {demo.parent / 'inputs' / 'room.png'}" in err and f"--allow-path {demo.parent / 'inputs'}" in err
    assert run_cli("run", run_dir / "final.png", "--out", out, "--plain", "--allow-path", demo.parent / "inputs") == 0
    # a PNG beside its inputs (a shared folder holding both) needs nothing more
    shared = tmp_path / "shared"
    shutil.copytree(demo.parent / "inputs", shared / "inputs")
    shutil.copy(run_dir / "final.png", shared / "final.png")
    shutil.rmtree(demo.parent)  # the recorded folder is gone: paths start from the PNG's folder
    assert run_cli("run", shared / "final.png", "--out", out, "--plain") == 0


# ------------------------------------------------------------------ item 1: reproduce
def test_reproduce_reads_the_recorded_folder_not_the_current_one(demo, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    assert run_cli("run", "wf/demo.yaml", "--out", out, "--plain") == 0  # a relative path, as users type it
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "wf" / "inputs").mkdir(parents=True)
    shutil.copy(demo, elsewhere / "wf" / "demo.yaml")
    Image.new("RGB", (64, 64), (0, 255, 0)).save(elsewhere / "wf" / "inputs" / "room.png")  # same names, other pixels
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert run_cli("reproduce", "latest", "--out", out) == 0
    said = capsys.readouterr().out
    assert "identical: all" in said and "changed" not in said


def test_reproduce_of_a_crafted_run_folder_reads_only_allowed_folders(demo, tmp_path, capsys):
    secret = secret_image(tmp_path / "home" / "photos")
    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain") == 0
    run_dir = latest_run(out, "demo")
    data = manifest(run_dir)
    for claimed in (str(secret.parent / "x.yaml"), "/x.yaml"):
        data["workflow"]["path"] = claimed
        (run_dir / "manifest.json").write_text(json.dumps(data))
        (run_dir / "workflow.yaml").write_text("version: 1\nname: demo\n" + COPY_NODES.format(path=secret))
        capsys.readouterr()
        assert run_cli("reproduce", run_dir, "--out", out) == 2
        err = capsys.readouterr().err
        assert "outside the folders this workflow may read from" in err and "Traceback" not in err, err
    # the real workflow file vouches for its folder only for what it names itself
    data["workflow"]["path"] = str(demo)
    (run_dir / "manifest.json").write_text(json.dumps(data))
    stolen = demo.parent / "inputs" / "other.png"
    shutil.copy(secret, stolen)  # in the workflow's folder, but not among the inputs the workflow names
    (run_dir / "workflow.yaml").write_text("version: 1\nname: demo\n" + COPY_NODES.format(path="inputs/other.png"))
    assert run_cli("reproduce", run_dir, "--out", out) == 2
    assert f"--allow-path {stolen.parent}" in capsys.readouterr().err


# ------------------------------------------------------------------ item 2: opt-ins
REMOTE = ("version: 1\nname: remote\nmodels:\n  m: {source: tiny:sd15, trust_remote_code: true}\n"
          "nodes:\n  g: {type: txt2img, model: $models.m, prompt: x, steps: 1}\n")


def test_a_workflow_cannot_turn_on_remote_code_by_itself(tmp_path, capsys):
    path = tmp_path / "remote.yaml"
    path.write_text(REMOTE)
    for command in ("validate", "run", "graph", "lock"):
        assert run_cli(command, path, *(["--out", tmp_path / "out"] if command == "run" else [])) == 2, command
        err = capsys.readouterr().err
        assert f"{path}:4:26: models.m.trust_remote_code: model 'm' asks for trust_remote_code: true" in err, err
        assert "fix: if you trust tiny:sd15, add --trust-remote-code m to the command" in err
    assert not (tmp_path / "out").exists()
    assert run_cli("validate", path, "--trust-remote-code", "m") == 0
    assert run_cli("validate", path, "--trust-remote-code", "other") == 2  # naming another model allows nothing
    assert run_cli("run", path, "--out", tmp_path / "out", "--plain", "--trust-remote-code", "m") == 0
    data = manifest(latest_run(tmp_path / "out", "remote"))
    assert data["consents"] == {"allow_pickle": {}, "trust_remote_code": {"m": "command line"}}
    assert data["models"]["$models.m"]["trust_remote_code"] is True


def test_session_opt_ins_and_an_embedded_workflow_that_never_can(tmp_path):
    with runner.Session(out=tmp_path / "out") as session:
        with pytest.raises(runner.WorkflowError, match="--trust-remote-code m"):
            session.load(REMOTE)
    with runner.Session(out=tmp_path / "out", trust_remote_code=["m"]) as session:
        run = session.run(REMOTE)
        assert run.status == "ok" and run.manifest["consents"]["trust_remote_code"] == {"m": "Session"}
        saved = run.folder
    with pytest.raises(runner.WorkflowError, match="names"):
        runner.Session(trust_remote_code=[1])
    png = tmp_path / "remote.png"
    crafted_png(png, REMOTE.replace("steps: 1}", "steps: 1}\n  s: {type: save_image, image: $g}"), str(tmp_path / "r.yaml"))
    with runner.Session(out=tmp_path / "out", trust_remote_code=["m"]) as session:
        with pytest.raises(runner.WorkflowError, match="a workflow embedded in an image can never turn it on") as info:
            session.load(png)
    assert "runner extract IMAGE.png --out wf.yaml" in str(info.value)
    assert saved.is_dir()


def test_allow_pickle_needs_the_command_line_too(tmp_path, capsys):
    path = write_workflow(tmp_path, "pk.yaml", "version: 1\nmodels:\n  sd: {source: tiny:sd15, allow_pickle: true}\n"
                                               "nodes:\n  g: {type: txt2img, model: $models.sd, prompt: x, steps: 1}\n")
    assert run_cli("validate", path) == 2
    assert "models.sd.allow_pickle: model 'sd' asks for allow_pickle: true" in capsys.readouterr().err
    assert run_cli("validate", path, "--allow-pickle", "sd") == 0
    # a --set that turns it on is the workflow's text too: the flag is still needed
    plain = write_workflow(tmp_path, "plain.yaml", "version: 1\nmodels:\n  sd: tiny:sd15\n"
                                                   "nodes:\n  g: {type: txt2img, model: $models.sd, prompt: x, steps: 1}\n")
    assert run_cli("validate", plain, "--set", "models.sd={source: tiny:sd15, trust_remote_code: true}") == 2
    assert "--trust-remote-code sd" in capsys.readouterr().err
