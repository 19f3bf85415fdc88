"""The engine end to end on tiny models: caching, invalidation, determinism, sharing, interruption."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import (
    REPO,
    latest_run,
    manifest,
    run_cli,
    run_subprocess,
    statuses,
    write_workflow,
)
import pytest
from PIL import Image

DEMO_NODES = {"room", "window_mask", "generated", "restyled", "fixed", "final", "first_draft"}


def run_demo(demo: Path, out: Path, *extra: str) -> Path:
    assert run_cli("run", demo, "--out", out, "--plain", *extra) == 0
    return latest_run(out, "demo")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_runs_end_to_end(demo, tmp_path, capsys):
    run_dir = run_demo(demo, tmp_path / "out")
    assert statuses(run_dir) == {n: "ran" for n in DEMO_NODES}
    data = manifest(run_dir)
    assert data["status"] == "ok" and data["device"] == "cpu" and data["dtype"] == "float32"
    assert {"torch", "diffusers", "transformers"} <= set(data["libraries"])
    assert data["nodes"]["fixed"]["pipeline_class"] == "StableDiffusionInpaintPipeline"
    assert data["nodes"]["restyled"]["pipeline_class"] == "StableDiffusionImg2ImgPipeline"
    assert data["nodes"]["generated"]["pipeline_class"] == "StableDiffusionPipeline"
    final = Image.open(run_dir / "final.png")
    assert final.size == (64, 64)
    assert "runner:workflow" in final.text and "inpaint" in final.text["runner:workflow"]
    assert '"node_seed"' in final.text["runner:seed"]
    assert (run_dir / "workflow.yaml").read_text().count("type:") == len(DEMO_NODES)
    assert f"run folder: {run_dir}" in capsys.readouterr().out


def test_second_run_executes_nothing_loads_nothing_imports_no_torch(demo, tmp_path):
    out = tmp_path / "out"
    first = run_demo(demo, out)
    probe = (
        "import sys, runner.cli\n"
        f"code = runner.cli.main(['run', {str(demo)!r}, '--out', {str(out)!r}, '--plain'])\n"
        "assert code == 0, code\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    second = latest_run(out, "demo")
    assert second != first
    assert statuses(second) == {n: "cached" for n in DEMO_NODES}
    assert manifest(second)["models_loaded"] == []
    assert sha(second / "final.png") == sha(first / "final.png")


def test_same_seed_in_two_processes_gives_identical_bytes(demo, tmp_path, isolated_cache):
    in_process = run_demo(demo, tmp_path / "a")
    other_cache = tmp_path / "other-cache"
    result = run_subprocess("run", demo, "--out", tmp_path / "b", "--plain", env={"RUNNER_CACHE_DIR": str(other_cache)})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # library progress bars and advisory warnings are silenced
    other = latest_run(tmp_path / "b", "demo")
    assert statuses(other) == {n: "ran" for n in DEMO_NODES}
    for name in ("final.png", "txt2img.png"):
        assert sha(in_process / name) == sha(other / name)


def test_changing_one_field_reruns_that_node_and_descendants_only(demo, tmp_path):
    out = tmp_path / "out"
    run_demo(demo, out)
    changed = run_demo(demo, out, "--set", "nodes.restyled.strength=0.5")
    assert {n for n, s in statuses(changed).items() if s == "ran"} == {"restyled", "fixed", "final"}
    back = run_demo(demo, out)
    assert set(statuses(back).values()) == {"cached"}


def test_param_change_reaches_every_user_of_the_param(demo, tmp_path):
    out = tmp_path / "out"
    run_demo(demo, out)
    changed = run_demo(demo, out, "--set", "params.prompt=a red barn")
    assert {n for n, s in statuses(changed).items() if s == "ran"} == {"generated", "first_draft", "restyled", "fixed", "final"}


def test_input_bytes_matter_and_mtime_does_not(demo, tmp_path):
    out = tmp_path / "out"
    run_demo(demo, out)
    image_path = demo.parent / "inputs" / "room.png"
    later = time.time() + 100
    os.utime(image_path, (later, later))
    assert set(statuses(run_demo(demo, out)).values()) == {"cached"}
    image = Image.open(image_path).convert("RGB")
    image.putpixel((0, 0), (1, 2, 3))
    image.save(image_path)
    rerun = statuses(run_demo(demo, out))
    assert {n for n, s in rerun.items() if s == "ran"} == {"room", "window_mask", "restyled", "fixed", "final"}


def test_only_force_no_cache_and_dry_run(demo, tmp_path, capsys):
    out = tmp_path / "out"
    only = run_demo(demo, out, "--only", "restyled")
    assert set(statuses(only)) == {"room", "restyled"}
    capsys.readouterr()
    assert run_cli("run", demo, "--out", out, "--dry-run") == 0
    table = capsys.readouterr().out
    assert "use cache" in table and "run" in table
    forced = run_demo(demo, out, "--force", "room")
    assert statuses(forced)["room"] == "ran" and statuses(forced)["restyled"] == "cached"
    everything = run_demo(demo, out, "--no-cache")
    assert set(statuses(everything).values()) == {"ran"}
    assert run_cli("run", demo, "--out", out, "--only", "restyld") == 2
    assert "did you mean 'restyled'" in capsys.readouterr().err


def test_dry_run_imports_no_torch(demo, tmp_path):
    probe = (
        "import sys, runner.cli\n"
        f"assert runner.cli.main(['run', {str(demo)!r}, '--out', {str(tmp_path)!r}, '--dry-run']) == 0\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "demo").exists()


def test_txt2img_img2img_inpaint_share_the_loaded_modules(demo, tmp_path):
    import runner

    with runner.Session(out=tmp_path / "out", cache_dir=tmp_path / "cache") as session:
        run = session.run(demo)
        assert run.status == "ok" and len(run.manifest["models_loaded"]) == 1
        identity = run.manifest["nodes"]["generated"]["models"]["$models.sd15"]
        objects = session.pool.objects
        pipes = [objects[("cpu", "float32", "pipeline", identity, autopipeline, (), None)][0] for autopipeline in
                 ("AutoPipelineForText2Image", "AutoPipelineForImage2Image", "AutoPipelineForInpainting")]
    assert [type(p).__name__ for p in pipes] == ["StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"]
    for component in ("unet", "vae", "text_encoder", "tokenizer"):
        assert getattr(pipes[0], component) is getattr(pipes[1], component) is getattr(pipes[2], component)


def test_inpaint_checkpoint_and_channel_mismatch(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "wf.yaml", 
        "version: 1\n"
        "models: {inpainter: tiny:sd15-inpaint}\n"
        "nodes:\n"
        "  photo: {type: load_image, path: in.png}\n"
        "  hole: {type: make_mask, like: $photo, shapes: [{ellipse: [10, 10, 40, 40]}], blur: 2}\n"
        "  fixed: {type: inpaint, model: $models.inpainter, image: $photo, mask: $hole, prompt: a cat, steps: 2}\n"
        "  save: {type: save_image, image: $fixed}\n"
    )
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    run_dir = latest_run(tmp_path / "out", "wf")
    assert manifest(run_dir)["nodes"]["fixed"]["pipeline_class"] == "StableDiffusionInpaintPipeline"
    assert Image.open(run_dir / "save.png").size == (64, 64)
    capsys.readouterr()
    code = run_cli("run", workflow, "--out", tmp_path / "out", "--plain",
                   "--set", "nodes.fixed.type=img2img", "--set", "nodes.fixed.mask=null", "--set", "nodes.fixed.strength=0.5")
    # img2img takes no mask field: that is a validation error (exit 2) naming the field
    assert code == 2 and "mask" in capsys.readouterr().err
    workflow.write_text(workflow.read_text().replace("type: inpaint, model: $models.inpainter, image: $photo, mask: $hole,",
                                                     "type: txt2img, model: $models.inpainter,"))
    # the checkpoint's denoiser channels are in its files: refused before the run, at the node's model (the run checks
    # the same for models known only once loaded, such as single files)
    runs_before = len(list((tmp_path / "out" / "wf").iterdir()))
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 2
    err = capsys.readouterr().err
    assert "nodes.fixed.model: model 'tiny:sd15-inpaint' is an inpainting checkpoint" in err and "9 input channels" in err
    assert "which a txt2img node cannot use" in err and "fix: use it in an inpaint node" in err
    assert len(list((tmp_path / "out" / "wf").iterdir())) == runs_before


def test_unreachable_hub_model_fails_fast_and_keeps_finished_nodes(demo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.perf_counter()
    code = run_cli("run", demo, "--out", tmp_path / "out", "--plain", "--set", "models.sd15=some-org/some-model")
    assert code == 1
    assert time.perf_counter() - started < 15
    err = capsys.readouterr().err
    assert "some-org/some-model" in err and "not in the local Hugging Face cache" in err and "hf download" in err
    run_dir = latest_run(tmp_path / "out", "demo")
    assert manifest(run_dir)["nodes"]["room"]["status"] == "ran"
    assert manifest(run_dir)["status"] == "failed"
    # the load node finished before the failure: a later run takes it from the cache
    capsys.readouterr()
    run_cli("run", demo, "--out", tmp_path / "out", "--plain", "--set", "models.sd15=some-org/some-model")
    assert statuses(latest_run(tmp_path / "out", "demo"))["room"] == "cached"


def test_interrupted_run_leaves_cache_readable_and_resumes(tmp_path, isolated_cache):
    workflow = write_workflow(tmp_path, "slow.yaml", 
        "version: 1\n"
        "nodes:\n"
        "  a_photo: {type: load_image, path: in.png}\n"
        "  b_mask: {type: make_mask, like: $a_photo, shapes: [{rect: [0, 0, 32, 32]}]}\n"
        "  c_slow: {type: img2img, model: tiny:sd15, image: $a_photo, strength: 1.0, steps: 500}\n"
        "  d_save: {type: save_image, image: $c_slow}\n"
    )
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(workflow), "--out", str(tmp_path / "out"), "--plain"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "c_slow: step" in line:  # inside the denoising loop
            break
    assert seen and "c_slow: step" in seen[-1], "".join(seen) + process.stderr.read()
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=60)
    assert process.returncode == 130, errors
    interrupted = latest_run(tmp_path / "out", "slow")
    assert manifest(interrupted)["status"] == "interrupted"
    assert statuses(interrupted) == {"a_photo": "ran", "b_mask": "ran", "c_slow": "interrupted", "d_save": "not run"}
    entries = list((isolated_cache / "nodes").glob("*/*"))
    assert len(entries) == 2 and all((e / "entry.json").is_file() for e in entries)  # no torn or stray entry
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain", "--set", "nodes.c_slow.steps=2") == 0
    resumed = statuses(latest_run(tmp_path / "out", "slow"))
    assert resumed == {"a_photo": "cached", "b_mask": "cached", "c_slow": "ran", "d_save": "ran"}


def test_quiet_prints_only_the_run_folder(demo, tmp_path, capsys):
    assert run_cli("run", demo, "--out", tmp_path / "out", "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"run folder: {latest_run(tmp_path / 'out', 'demo')}" and captured.err == ""


def test_live_progress_shows_each_node_state():
    import io

    from rich.console import Console

    from runner.engine.progress import LiveEvents

    buffer = io.StringIO()
    events = LiveEvents({"a": "load_image", "b": "txt2img"}, Console(file=buffer, force_terminal=True, width=100))
    events.start(["a", "b"])
    events.node_cached("a")
    events.node_started("b")
    events.node_step("b", 1, 2)
    events.node_done("b", 0.25)
    events.stop()
    text = buffer.getvalue()
    assert "cached" in text and "done" in text and "0.25 s" in text and "2/2" in text and "\x1b[" in text


def test_cache_info_and_clear(demo, tmp_path, capsys, isolated_cache):
    run_demo(demo, tmp_path / "out")
    capsys.readouterr()
    assert run_cli("cache") == 0
    assert f"{isolated_cache}: {len(DEMO_NODES)} cached node results" in capsys.readouterr().out
    assert run_cli("cache", "clear") == 0
    assert f"removed {len(DEMO_NODES)} cached node results" in capsys.readouterr().out
    assert set(statuses(run_demo(demo, tmp_path / "out")).values()) == {"ran"}


def test_cache_clear_deletes_only_what_runner_wrote(demo, tmp_path, capsys, isolated_cache, monkeypatch):
    run_demo(demo, tmp_path / "out")
    mine = isolated_cache / "nodes" / "ab" / "my-notes.txt"  # a user's file inside the cache's nodes/ folder
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_text("keep me")
    (isolated_cache / "nodes" / "holiday-photos").mkdir()
    capsys.readouterr()
    assert run_cli("cache", "clear") == 0
    assert f"removed {len(DEMO_NODES)} cached node results" in capsys.readouterr().out
    assert mine.read_text() == "keep me" and (isolated_cache / "nodes" / "holiday-photos").is_dir()
    # a folder that is not runner's cache (no marker): nothing is deleted, exit 2
    elsewhere = tmp_path / "someone-elses"
    (elsewhere / "nodes" / "ab" / ("ab" + "0" * 62)).mkdir(parents=True)
    (elsewhere / "nodes" / "ab" / ("ab" + "0" * 62) / "entry.json").write_text("{}")
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(elsewhere))
    assert run_cli("cache", "clear") == 2
    assert "no .runner-cache marker" in capsys.readouterr().err
    assert (elsewhere / "nodes" / "ab" / ("ab" + "0" * 62) / "entry.json").is_file()


def test_a_sigterm_inside_a_long_denoising_step_stops_the_run_there(tmp_path):
    """The command's handler raises at the next bytecode: a run stops inside a step (between two torch operations), not
    at its end. Here one step takes tens of seconds on 2 cores (seconds on a fast one): no step may finish."""
    import threading

    import runner
    from runner.cli import _as_interrupt
    from runner.engine.progress import PlainEvents

    class Signalling(PlainEvents):
        steps: list = []

        def node_phase(self, node_id, text):
            if "encoding the prompt" in text:  # the denoising loop starts next: signal once it is inside step 1
                threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()

        def node_step(self, node_id, step, total):
            self.steps.append(step)

    workflow = write_workflow(tmp_path, "long.yaml", "version: 1\nname: long\ndevice: cpu\nnodes:\n  gen: {type: txt2img, "
                                                     "model: tiny:sd15, prompt: a, steps: 2, width: 2048, height: 2048}\n")
    previous = signal.signal(signal.SIGTERM, _as_interrupt)  # what `runner run` installs
    try:
        with runner.Session(out=tmp_path / "out") as session:
            started = time.monotonic()
            run = session.run(workflow, events=lambda types: Signalling(types, quiet=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert run.status == "interrupted" and run.manifest["nodes"]["gen"]["status"] == "interrupted", run.error
    assert Signalling.steps == [] and time.monotonic() - started < 20  # stopped inside step 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_a_run_like_ctrl_c(tmp_path, isolated_cache, signum):
    workflow = write_workflow(tmp_path, "slow.yaml",
                              "version: 1\nnodes:\n"
                              "  a_photo: {type: load_image, path: in.png}\n"
                              "  c_slow: {type: img2img, model: tiny:sd15, image: $a_photo, strength: 1.0, steps: 500}\n")
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(workflow), "--out", str(tmp_path / "out"), "--plain"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    for line in process.stdout:
        if "c_slow: step" in line:
            break
    process.send_signal(signum)
    _rest, errors = process.communicate(timeout=60)
    assert process.returncode == 130, errors
    assert "Traceback" not in errors
    interrupted = latest_run(tmp_path / "out", "slow")
    assert manifest(interrupted)["status"] == "interrupted" and (interrupted / "report.html").is_file()
    assert statuses(interrupted) == {"a_photo": "ran", "c_slow": "interrupted"}
