"""Progress as people know it from diffusers and ComfyUI: phases while importing and loading, steps with their rate
and the time left, the decode after the last step; plain lines for logs, a live row per node on a terminal."""

from __future__ import annotations

import io
import re

from conftest import run_cli, run_subprocess, write_workflow

GENERATE = """version: 1
name: progress
models:
  sd: tiny:sd15
nodes:
  photo: {type: load_image, path: in.png, size: [64, 64]}
  gen: {type: txt2img, model: $models.sd, prompt: a red barn, steps: 10, width: 64, height: 64}
  again: {type: img2img, model: $models.sd, image: $photo, prompt: a barn, steps: 4, strength: 1.0}
  out: {type: save_image, image: $gen}
"""


def _lines(text: str, node: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith((f"{node}:", f"running  {node} ",
                                                                                  f"done     {node} "))]


def test_plain_lines_tell_loading_each_tenth_of_the_steps_with_rate_and_eta_and_the_decode(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "progress.yaml", GENERATE)
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    out = capsys.readouterr().out
    gen = _lines(out, "gen")
    assert gen[0] == "running  gen (txt2img)"
    loading = next(line for line in gen if line.startswith("gen: loading "))
    assert re.fullmatch(r"gen: loading tiny:sd15 \(about [0-9.]+ MB in float32, onto cpu\) from /\S+/tiny/sd15-[0-9a-f]+",
                        loading), loading
    steps = [line for line in gen if ": step " in line]
    assert [line.split()[2] for line in steps] == [f"{n}/10" for n in range(1, 11)]  # one line per 10 %
    assert steps[0] == "gen: step 1/10"  # a rate needs two steps
    assert all(re.search(r"\([0-9.]+ (it/s|s/it), ETA [0-9:]+ s?\)$", line) for line in steps[1:-1]), steps
    assert re.search(r"\([0-9.]+ (it/s|s/it)\)$", steps[-1])  # nothing left to wait for at the last step
    # after the last step the VAE decodes: said before the node is done
    assert gen[gen.index(steps[-1]) + 1] == "gen: decoding the latents (VAE)"
    assert re.fullmatch(r"done     gen \(txt2img\) in [0-9.]+ s \(10 steps, [0-9.]+ (it/s|s/it)\)", gen[-1]), gen[-1]
    again = _lines(out, "again")
    # below 10 steps every step has its line; the model is loaded already, the input image is encoded
    assert "again: encoding the prompt and the input image" in again and not any("loading" in line for line in again)
    assert [line.split()[2] for line in again if ": step " in line] == ["1/4", "2/4", "3/4", "4/4"]


def test_the_first_model_of_a_process_says_it_imports_the_libraries(tmp_path):
    workflow = write_workflow(tmp_path, "progress.yaml", GENERATE)
    assert run_cli("run", workflow, "--out", tmp_path / "warm", "--only", "gen", "--plain") == 0  # builds tiny:sd15
    result = run_subprocess("run", workflow, "--out", tmp_path / "out", "--only", "gen", "--plain", "--no-cache")
    assert result.returncode == 0, result.stderr
    gen = _lines(result.stdout, "gen")
    assert gen[1] == "gen: importing torch, diffusers and transformers (once per process)"
    assert gen[2].startswith("gen: loading tiny:sd15 (about ")
    assert "Writing model shards" not in result.stderr and "it/s]" not in result.stderr  # no library progress bars


def test_quiet_prints_no_progress(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "progress.yaml", GENERATE)
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("run folder: ") and captured.out.count("\n") == 1, captured.out
    assert captured.err == ""


def test_live_rows_show_phase_steps_rate_elapsed_eta_and_decode():
    import time

    from rich.console import Console

    from runner.engine.progress import LiveEvents

    buffer = io.StringIO()
    events = LiveEvents({"a": "load_image", "b": "txt2img"}, Console(file=buffer, force_terminal=True, width=160))
    events.start(["a", "b"])
    assert events.cell("b", "steps") == "" and events.cell("b", "note") == ""  # queued: no '0/?'
    events.node_cached("a")
    events.node_started("b")
    events.node_phase("b", "loading tiny:sd15 (about 6.51 MB in float32, onto cpu) from /models/tiny/sd15")
    assert events.cell("b", "note").startswith("loading tiny:sd15") and events.cell("b", "steps") == ""
    for step in range(1, 5):
        time.sleep(0.05)
        events.node_step("b", step, 10)
    assert events.cell("b", "steps") == "4/10" and events.cell("b", "note") == ""
    assert re.fullmatch(r"[0-9.]+ (it/s|s/it)", events.cell("b", "rate"))
    assert re.fullmatch(r"0:0[0-9]", events.cell("b", "elapsed")) and re.fullmatch(r"ETA 0:0[0-9]", events.cell("b", "eta"))
    events.node_step("b", 10, 10)
    events.node_phase("b", "decoding the latents (VAE)")
    assert events.cell("b", "eta") == "" and events.cell("b", "note") == "decoding the latents (VAE)"
    events.progress.refresh()
    events.node_done("b", 0.75)
    events.stop()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    assert "decoding the latents (VAE)" in text and "10/10" in text and "0.75 s" in text and "ETA" in text
    assert "0/?" not in text


def test_a_tiny_model_built_on_first_use_says_so_before_it_loads(tmp_path, capsys, monkeypatch):
    """The build (seconds) happens in the node that first loads the model, on a progress line of its own, not silently
    in the memory check before the run starts."""
    monkeypatch.setenv("RUNNER_MODELS_DIR", str(tmp_path / "fresh-models"))
    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nnodes:\n  d: {type: estimate_depth, image: $p, "
                              "model: tiny:dpt}\n  p: {type: load_image, path: in.png, size: [64, 64]}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    out = capsys.readouterr().out
    building = out.index("d: building tiny:dpt (first use of this tiny model")
    assert building < out.index("d: loading tiny:dpt"), out
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain", "--force", "d") == 0
    assert "building tiny:dpt" not in capsys.readouterr().out  # built once, kept


def test_make_demo_says_it_is_setting_up_the_environment_before_pip(tmp_path):
    """Issue 27 item 8: on a fresh clone `make demo` first prints what the silent minute of pip is for. A dry run
    (make -n) with a .venv that does not exist yet lists the recipe in the order make would run it."""
    import shutil
    import subprocess

    import pytest
    from conftest import REPO

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "fresh" / ".venv"
    done = subprocess.run([make, "-n", "demo", f"VENV={venv}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    announce = next(i for i, line in enumerate(lines) if line.startswith("echo") and "setting up the environment" in line)
    pip = next(i for i, line in enumerate(lines) if " -m pip install" in line and not line.startswith("echo"))
    demo = next(i for i, line in enumerate(lines) if "runner run workflows/demo.yaml" in line)
    assert announce < pip < demo, lines
    assert not venv.exists()  # a dry run creates nothing
