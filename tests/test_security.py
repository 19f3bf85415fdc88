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
    with pytest.raises(runner.CommandError, match="names"):
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


# ------------------------------------------------------------------ item 4: output files
def _import_source(tmp_path):
    """A small ComfyUI API graph to import (the test suite's own example)."""
    source = tmp_path / "graph.json"
    shutil.copy(sorted((WORKFLOWS.parent / "tests" / "comfyui").glob("*.json"))[0], source)
    return source


@pytest.mark.parametrize("command", ["schema", "extract", "import"])
def test_output_targets_are_written_as_named_and_never_replaced_by_a_rename(command, demo, tmp_path, capsys):
    import threading

    if command == "extract":
        out = tmp_path / "out"
        assert run_cli("run", demo, "--out", out, "--quiet") == 0
        base = ["extract", latest_run(out, "demo") / "final.png", "--out"]
    elif command == "import":
        base = ["import", "comfyui", _import_source(tmp_path), "-o"]
    else:
        base = ["schema", "--out"]
    capsys.readouterr()
    # a FIFO is streamed into (its reader gets the text) and stays a FIFO
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    code = run_cli(*base, fifo)
    reader.join(timeout=30)
    if reader.is_alive() and stat_kind(fifo) == "fifo":  # nothing wrote into it: release the reader
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert code == 0 and got and got[0].startswith(b"{" if command == "schema" else b"#")
    assert stat_kind(fifo) == "fifo"
    # a symlink is followed: its target is written, the link stays a link
    target, link = tmp_path / "real.txt", tmp_path / "link.txt"
    os.symlink(target, link)
    assert run_cli(*base, link) == 0 and link.is_symlink() and same(target.read_bytes(), got[0])
    # an existing file holding something else is kept unless --force; one holding the same text is fine
    assert run_cli(*base, link) == 0
    target.write_text("my notes\n")
    capsys.readouterr()
    assert run_cli(*base, link) == 2
    err = capsys.readouterr().err
    assert "exists and holds something else (9 bytes): it is kept" in err and "fix: add --force" in err
    assert target.read_text() == "my notes\n"
    assert run_cli(*base, link, "--force") == 0 and same(target.read_bytes(), got[0])
    # folders and empty names are located errors; missing folders are made
    capsys.readouterr()
    for bad, says in ((tmp_path, "is a folder"), (".", "is a folder"), ("", "the output file name is empty")):
        assert run_cli(*base, bad) == 2, bad
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and err.startswith(f"error: {base[-1]} "), err
    nested = tmp_path / "missing" / "dir" / "x.txt"
    assert run_cli(*base, nested) == 0 and same(nested.read_bytes(), got[0])
    assert oct(nested.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
    # - is standard output
    capsys.readouterr()
    assert run_cli(*base, "-") == 0
    assert capsys.readouterr().out.encode().startswith(got[0][:20])


def same(a: bytes, b: bytes) -> bool:
    """The same output (an imported workflow is named after the file it is written to: that line aside)."""
    def drop(text: bytes) -> list[bytes]:
        return [line for line in text.splitlines() if not line.startswith(b"name: ")]

    return drop(a) == drop(b)


def stat_kind(path) -> str:
    import stat

    mode = os.lstat(path).st_mode
    return "fifo" if stat.S_ISFIFO(mode) else "link" if stat.S_ISLNK(mode) else "file" if stat.S_ISREG(mode) else "other"


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_character_device_is_written_into_not_replaced(tmp_path):
    """As root, `-o /dev/null` used to replace the machine's /dev/null with a regular file; here a private null device
    node in a temporary folder stands in for it."""
    import stat

    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    assert run_cli("import", "comfyui", _import_source(tmp_path), "-o", null) == 0
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert run_cli("schema", "--out", null) == 0 and stat.S_ISCHR(os.lstat(null).st_mode)


# ------------------------------------------------------------------ item 5: damaged records
MANIFEST_DAMAGE = {
    "seconds": lambda m: m.update(seconds="slow"),
    "a node's seconds": lambda m: m["nodes"]["photo"].update(seconds=[1]),
    "overrides": lambda m: m["workflow"].update(overrides=5),
    "counts": lambda m: m.update(counts="many"),
    "a node's outputs": lambda m: m["nodes"]["photo"].update(outputs={"image": 5}),
    "a node's published": lambda m: m["nodes"]["out"].update(published=[{"x": 1}]),
    "command": lambda m: m.update(command="runner run"),
    "libraries": lambda m: m.update(libraries=[1]),
    "a model's files": lambda m: m.update(models={"$models.x": {"files": [1]}}),
    "nodes": lambda m: m.update(nodes=[]),
    "nested deep": None,  # not JSON runner could write at all: 100,000 brackets deep
}
SMALL = ("version: 1\nname: small\nnodes:\n  photo: {type: load_image, path: in.png, size: [32, 32]}\n"
         "  out: {type: save_image, image: $photo}\n")


def test_a_damaged_manifest_is_skipped_or_a_located_error_never_a_crash(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "small.yaml", SMALL)
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--quiet") == 0
    good = latest_run(out, "small")
    for kind, damage in MANIFEST_DAMAGE.items():
        assert run_cli("run", workflow, "--out", out, "--quiet") == 0
        bad = latest_run(out, "small")
        data = manifest(bad)
        if damage is None:
            (bad / "manifest.json").write_text("[" * 100_000)
        else:
            damage(data)
            (bad / "manifest.json").write_text(json.dumps(data))
        capsys.readouterr()
        assert run_cli("runs", "list", "--out", out) == 0, kind
        said = capsys.readouterr()
        assert f"warning: skipped {bad}: damaged manifest" in said.err.replace("\n", ""), (kind, said.err)
        assert good.name in said.out and bad.name not in said.out
        for command in (["runs", "show", bad], ["runs", "diff", good, bad], ["reproduce", bad, "--out", out],
                        ["report", bad]):
            code = run_cli(*command)
            err = capsys.readouterr().err
            assert "Traceback" not in err, (kind, command, err)
            assert code == 2 and f"error: {bad / 'manifest.json'}: damaged manifest: " in err, (kind, command, err)
        shutil.rmtree(bad)
    # a manifest that vanished between listing and reading
    os.symlink(tmp_path / "nowhere", out / "small" / "dangling")
    assert run_cli("runs", "list", "--out", out) == 0


def test_cache_verify_quarantines_damaged_records_instead_of_crashing(tmp_path, isolated_cache, capsys):
    from test_cache_sharing import RECORD_DAMAGE

    workflow = write_workflow(tmp_path, "small.yaml", SMALL.replace("  out:", "  edges: {type: canny, image: $photo}\n"
                                                                            "  big: {type: upscale, image: $edges, scale: 2}\n  out:"))
    kinds = list(RECORD_DAMAGE)
    for start in range(0, len(kinds), 3):
        assert run_cli("run", workflow, "--out", tmp_path / "out", "--quiet") == 0
        entries = {json.loads(e.read_text())["node_id"]: e for e in (isolated_cache / "nodes").glob("*/*/entry.json")}
        for node, kind in zip(("photo", "edges", "big"), kinds[start:start + 3]):
            record = json.loads(entries[node].read_text())
            RECORD_DAMAGE[kind](record)
            entries[node].write_text(json.dumps(record))
        capsys.readouterr()
        assert run_cli("cache", "verify") == 1
        said = capsys.readouterr()
        assert said.out.count("damaged: ") == len(kinds[start:start + 3]) and "Traceback" not in said.err, said


# ------------------------------------------------------------------ item 6: arguments a pipeline swallows
def test_img2img_width_is_refused_at_validate_and_at_run_time(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "sized.yaml", "version: 1\nmodels: {sd: tiny:sd15}\nnodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                              "  a: {type: img2img, model: $models.sd, image: $photo, width: 32, height: 32, steps: 2}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{workflow}:5:56: nodes.a.width: StableDiffusionImg2ImgPipeline (what this img2img node runs for " \
           "'tiny:sd15') takes no 'width': diffusers would accept it and ignore it" in err, err
    assert "fix: remove width: StableDiffusionImg2ImgPipeline makes an image of its input's size; to change the size, " \
           "resize the input image first (load_image size: [W, H], or an upscale node)" in err
    assert "nodes.a.height" in err and not (tmp_path / "out").exists()


def test_the_run_refuses_what_its_pipeline_would_swallow(tmp_path):
    """Where the class is not known before the run (validate cannot see it), the call is checked as it is made."""
    from runner.models.calls import refuse_swallowed
    from runner.models.errors import NodeInputError

    class Swallowing:
        def __call__(self, prompt=None, strength=0.8, **kwargs):
            return None

    refuse_swallowed(Swallowing(), {"prompt": "x", "strength": 0.5})
    with pytest.raises(NodeInputError, match="Swallowing takes no 'width', 'num_inference_steps'") as info:
        refuse_swallowed(Swallowing(), {"prompt": "x", "width": 8, "num_inference_steps": 2},
                         {"width": "width", "steps": "num_inference_steps"})
    assert info.value.hint.startswith("remove width: Swallowing makes an image of its input's size")


# every generation node type on every family it runs on (with a ControlNet where it takes one): what validate refuses
# is exactly what the class that then runs does not name, and what it lets through is called and recorded as set
CASES = [("txt2img", "sd15", None), ("txt2img", "sdxl", None), ("txt2img", "kandinsky22", None),
         ("txt2img", "sd15", "controlnet-sd15"), ("txt2img", "sdxl", "controlnet-sdxl"),
         ("img2img", "sd15", None), ("img2img", "sdxl", None), ("img2img", "kandinsky22", None),
         ("img2img", "sd15", "controlnet-sd15"), ("img2img", "sdxl", "controlnet-sdxl"),
         ("inpaint", "sd15", None), ("inpaint", "sd15-inpaint", None), ("inpaint", "sdxl", None),
         ("inpaint", "kandinsky22-inpaint", None), ("inpaint", "sd15", "controlnet-sd15"),
         ("depth2img", "sd2-depth", None), ("refine", "sdxl-refiner", None), ("refine", "sdxl", None)]


@pytest.mark.parametrize("node_type,model,controlnet", CASES, ids=["-".join(filter(None, c)) for c in CASES])
def test_every_field_set_is_an_argument_the_pipeline_takes(node_type, model, controlnet, tmp_path, capsys):
    import inspect

    import diffusers

    from runner.nodes import NODE_TYPES

    spec = NODE_TYPES[node_type].model.spec
    values = {"prompt": "a room", "negative_prompt": "blur", "steps": 4, "guidance_scale": 5.0, "width": 64,
              "height": 64, "num_images": 1, "strength": 1.0 if node_type == "inpaint" else 0.75}
    fields = {f: v for f, v in values.items() if f in spec.arguments and f in NODE_TYPES[node_type].model.model_fields}
    inputs = {"txt2img": "", "img2img": ", image: $photo", "refine": ", image: $photo", "depth2img": ", image: $photo",
              "inpaint": ", image: $photo, mask: $mask"}[node_type]
    cn = f", controlnet: [{{model: tiny:{controlnet}, image: $photo}}]" if controlnet else ""

    def workflow(chosen: dict) -> str:
        body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in chosen.items())
        return write_workflow(tmp_path, "all.yaml", "version: 1\nnodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                              "  mask: {type: make_mask, like: $photo, shapes: [{rect: [8, 8, 40, 40]}]}\n"
                              f"  gen: {{type: {node_type}, model: tiny:{model}{inputs}{cn}, {body}}}\n")

    path = workflow(fields)
    capsys.readouterr()
    code = run_cli("validate", path)
    err = capsys.readouterr().err
    refused = {f for f in fields if f"nodes.gen.{f}: " in err and "takes no" in err}
    assert code == (2 if refused else 0), err
    kept = {f: v for f, v in fields.items() if f not in refused}
    assert run_cli("run", workflow(kept), "--out", tmp_path / "out", "--plain") == 0, capsys.readouterr().err
    record = manifest(latest_run(tmp_path / "out", "all"))["nodes"]["gen"]
    parameters = inspect.signature(getattr(diffusers, record["pipeline_class"]).__call__).parameters
    assert refused == {f for f in fields if spec.arguments[f] not in parameters}, record["pipeline_class"]
    for field, value in kept.items():
        assert record["call"][spec.arguments[field]] == value, (field, record["call"])


@pytest.mark.parametrize("node_type", ["depth2img", "refine"])
def test_node_types_whose_pipelines_take_no_size_do_not_offer_one(node_type, tmp_path, capsys):
    from runner.nodes import NODE_TYPES
    from runner.schema import schema_text

    assert not {"width", "height", "controlnet"} & set(NODE_TYPES[node_type].model.model_fields)
    definitions = json.loads(schema_text())["definitions"]
    declared = [d for d in definitions.values() if d.get("properties", {}).get("type", {}).get("const") == node_type]
    assert len(declared) == 1 and not {"width", "height", "controlnet"} & set(declared[0]["properties"])
    model = "tiny:sd2-depth" if node_type == "depth2img" else "tiny:sdxl-refiner"
    workflow = write_workflow(tmp_path, "sized.yaml", "version: 1\nnodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                              f"  a: {{type: {node_type}, model: {model}, image: $photo, width: 32}}\n")
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    assert f"nodes.a.width: a {node_type} node takes no 'width': " in err and "makes an image of its input's size" in err
    assert "fix: remove it; to change the size, resize the input image first" in err


# ------------------------------------------------------------------ item 3: one Session, several threads
SHARED_A = ("version: 1\nname: thread_a\nmodels: {sd: tiny:sd15}\nnodes:\n"
            "  gen: {type: txt2img, model: $models.sd, prompt: a red barn, steps: 4, scheduler: euler,\n"
            "        lora: [{model: tiny:lora-sd15, scale: 0.8}]}\n")
SHARED_B = ("version: 1\nname: thread_b\nmodels: {sd: tiny:sd15}\nnodes:\n"
            "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
            "  gen: {type: img2img, model: $models.sd, image: $photo, prompt: a blue lake, steps: 6, strength: 0.7,\n"
            "        scheduler: ddim}\n")


def test_a_session_shared_by_threads_gives_the_images_of_serial_runs(tmp_path):
    import threading

    a = write_workflow(tmp_path, "a.yaml", SHARED_A)
    b = write_workflow(tmp_path, "b.yaml", SHARED_B)
    seeds = [1, 2, 3, 4]

    def image_bytes(run) -> bytes:
        assert run.status == "ok", run.error
        return run.image("gen").tobytes()

    with runner.Session(out=tmp_path / "serial", cache_dir=tmp_path / "serial-cache") as session:
        expected = {(path.name, seed): image_bytes(session.run(path, {"seed": seed})) for path in (a, b) for seed in seeds}
    got, errors = {}, []
    with runner.Session(out=tmp_path / "threads", cache_dir=tmp_path / "shared-cache") as session:
        def work(path):
            try:
                for seed in seeds:
                    got[(path.name, seed)] = image_bytes(session.run(path, {"seed": seed}))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(path,)) for path in (a, b, a)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    assert not errors and got == expected
    # what the threads stored is what a serial run serves: the same keys and bytes as the serial cache
    serial = {e.parent.name: e.read_text() for e in (tmp_path / "serial-cache" / "nodes").glob("*/*/entry.json")}
    shared = {e.parent.name: e.read_text() for e in (tmp_path / "shared-cache" / "nodes").glob("*/*/entry.json")}
    assert set(serial) == set(shared)
    outputs = lambda text: json.loads(text)["outputs"]  # noqa: E731
    assert all(outputs(serial[key]) == outputs(shared[key]) for key in serial)
