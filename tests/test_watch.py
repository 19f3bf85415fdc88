"""runner watch (the warm edit loop) and the latent hand-off of img2img and inpaint."""

from __future__ import annotations

import inspect
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO, manifest, run_cli, write_workflow

import runner


class WatchProcess:
    """`runner watch` in a subprocess, its output read line by line with a deadline for each expectation."""

    def __init__(self, *args, env: dict):
        self.process = subprocess.Popen([sys.executable, "-m", "runner", "watch", *map(str, args)], cwd=REPO,
                                        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = 90) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got:\n" + "\n".join(self.seen))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def test_watch_reruns_only_what_changed_survives_a_broken_edit_and_exits_130(demo, tmp_path, isolated_cache, models_dir):
    watch = WatchProcess(demo, "--quiet", "--out", tmp_path / "out",
                         env={"RUNNER_CACHE_DIR": str(isolated_cache), "RUNNER_MODELS_DIR": str(models_dir)})
    try:
        watch.expect(r"^watching ")
        first = watch.expect(r"^pass 1 ok: ran room, window_mask, generated, restyled, fixed, final, first_draft; "
                             r"cached nothing; [0-9.]+ s -> (.+)$")
        assert (Path(first.group(1)) / "report.html").is_file()
        assert (tmp_path / "out" / "demo" / "watch.html").is_file()
        # an edited prompt: only its descendants run again
        original = demo.read_text()
        demo.write_text(original.replace("soft morning light", "harsh noon light"))
        second = watch.expect(r"^pass 2 ok: ran generated, restyled, fixed, final, first_draft; cached room, window_mask; "
                              r"[0-9.]+ s -> (.+)$")
        assert manifest(Path(second.group(1)))["models_reused"]  # the checkpoint stayed loaded
        assert f"runnerWatch({{\"pass\": 2, \"report\": \"{Path(second.group(1)).name}/report.html\"" in \
            (tmp_path / "out" / "demo" / "watch-state.js").read_text()
        # a broken edit: the located error, and the session waits for the next save
        demo.write_text(original.replace("type: make_mask", "type: make_msk"))
        watch.expect(r"demo\.yaml:\d+:\d+: nodes\.window_mask\.type: unknown node type 'make_msk'")
        watch.expect(r"^waiting for the next save$")
        demo.write_text(original.replace("soft morning light", "harsh noon light"))
        watch.expect(r"^pass 3 ok: ran nothing; cached room, window_mask, generated, restyled, fixed, final, first_draft")
        # a replaced input image: the nodes that read it (and theirs) run again
        photo = demo.parent / "inputs" / "room.png"
        Image.open(photo).rotate(90).save(photo)
        watch.expect(r"^pass 4 ok: ran room, window_mask, restyled, fixed, final; cached generated, first_draft")
        watch.process.send_signal(signal.SIGINT)
        assert watch.process.wait(30) == 130
    finally:
        watch.stop()


def test_a_save_during_a_pass_stops_it_at_a_step_boundary(demo, tmp_path):
    """The Session stops a run once `should_stop()` holds: at the next denoising step, keeping finished nodes."""
    from runner.engine.run import SUPERSEDED

    steps = []

    def newer_version_waiting() -> bool:
        steps.append(1)
        return len(steps) > 4  # after a few checks: room and window_mask done, generated mid-way

    with runner.Session(out=tmp_path / "out") as session:
        stopped = session.run(demo, should_stop=newer_version_waiting)
        assert stopped.status == "interrupted" and stopped.error.startswith(SUPERSEDED)
        statuses = {n: node["status"] for n, node in stopped.manifest["nodes"].items()}
        assert statuses["room"] == statuses["window_mask"] == "ran"
        assert "interrupted" in statuses.values() and statuses["final"] == "not run"
        again = session.run(demo)
    assert again.status == "ok"
    assert again.manifest["nodes"]["room"]["status"] == "cached"


# ------------------------------------------------------------- latents
def _latent_chain(tmp_path: Path, model: str, second: str) -> Path:
    return write_workflow(tmp_path, "chain.yaml",
                          "version: 1\nseed: 3\n"
                          f"models: {{m: {model}}}\n"
                          "nodes:\n"
                          "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  hole: {type: make_mask, like: $photo, shapes: [{rect: [8, 8, 40, 40]}]}\n"
                          "  base: {type: txt2img, model: $models.m, prompt: a house, steps: 2, width: 64, height: 64}\n"
                          f"  second: {{{second}, model: $models.m, prompt: a red house, steps: 2}}\n"
                          "  save: {type: save_image, image: $second}\n")


@pytest.mark.parametrize("model", ["tiny:sd15", "tiny:sdxl"])
@pytest.mark.parametrize("second", ["type: img2img, latents: $base.latents, strength: 0.5",
                                    "type: inpaint, latents: $base.latents, mask: $hole, strength: 1.0"])
def test_img2img_and_inpaint_take_a_base_nodes_latents(tmp_path, model, second):
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

    from runner.models.tiny import ensure_tiny

    workflow = _latent_chain(tmp_path, model, second)
    with runner.Session(out=tmp_path / "out") as session:
        run = session.run(workflow)
    assert run.status == "ok", run.error
    node = run.manifest["nodes"]["second"]
    assert node["call"]["image"] == "Tensor"
    assert set(node["inputs"]) == ({"$base.latents", "$hole.mask"} if "inpaint" in second else {"$base.latents"})
    # the same hand-off written as diffusers code: output_type="latent", then the latents as `image`
    folder = ensure_tiny(model.removeprefix("tiny:"), Path(os.environ["RUNNER_MODELS_DIR"]) / "tiny")
    base = AutoPipelineForText2Image.from_pretrained(folder)
    base.set_progress_bar_config(disable=True)
    seeds = run.manifest["nodes"]
    latents = base("a house", num_inference_steps=2, width=64, height=64, output_type="latent",
                   generator=torch.Generator("cpu").manual_seed(seeds["base"]["seed"])).images
    if "inpaint" in second:
        pipe = AutoPipelineForInpainting.from_pipe(base)
        extra = {"mask_image": run.image("hole"), "width": 64, "height": 64, "strength": 1.0}
        if "masked_image_latents" in inspect.signature(pipe.__call__).parameters:
            extra["masked_image_latents"] = latents  # SD 1.x inpaint multiplies `image` with the pixel mask otherwise
    else:
        pipe = AutoPipelineForImage2Image.from_pipe(base)
        extra = {"strength": 0.5}
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a red house", image=latents, num_inference_steps=2,
                    generator=torch.Generator("cpu").manual_seed(seeds["second"]["seed"]), **extra).images[0]
    assert run.image("save").convert("RGB").tobytes() == expected.convert("RGB").tobytes()


def test_latents_are_refused_where_a_pipeline_cannot_take_them(tmp_path, capsys):
    workflow = _latent_chain(tmp_path, "tiny:sd15", "type: img2img, latents: $base.latents, image: $photo")
    assert run_cli("validate", workflow) == 2
    assert "give exactly one of 'image' or 'latents'" in capsys.readouterr().err
    workflow = _latent_chain(tmp_path, "tiny:sd15", "type: img2img, latents: $photo")
    assert run_cli("validate", workflow) == 2
    assert "latents" in capsys.readouterr().err
    nine = write_workflow(tmp_path, "nine.yaml",
                          "version: 1\nmodels: {sd: tiny:sd15, inp: tiny:sd15-inpaint}\nnodes:\n"
                          "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                          "  hole: {type: make_mask, like: $photo, shapes: [{rect: [8, 8, 40, 40]}]}\n"
                          "  base: {type: txt2img, model: $models.sd, steps: 2}\n"
                          "  second: {type: inpaint, model: $models.inp, latents: $base.latents, mask: $hole, steps: 2}\n")
    assert run_cli("run", nine, "--out", tmp_path / "out", "--quiet") == 1
    err = capsys.readouterr().err
    assert "9-channel UNet" in err and "give 'image'" in err
    kandinsky = write_workflow(tmp_path, "k.yaml",
                               "version: 1\nmodels: {sd: tiny:sd15, k: tiny:kandinsky22}\nnodes:\n"
                               "  base: {type: txt2img, model: $models.sd, steps: 2}\n"
                               "  second: {type: img2img, model: $models.k, latents: $base.latents, steps: 2}\n")
    assert run_cli("run", kandinsky, "--out", tmp_path / "out", "--quiet") == 2  # its family says so: validation
    assert "nodes.second.latents: Kandinsky 2.2 (model 'tiny:kandinsky22') takes an image here, not latents" in \
        capsys.readouterr().err


def test_watch_is_in_the_cli_help(capsys):
    with pytest.raises(SystemExit):
        run_cli("watch", "--help")
    out = capsys.readouterr().out
    assert "--open" in out and "--max-ram" in out and "--quiet" in out



def test_watch_page_shows_the_newest_pass_in_a_browser(demo, tmp_path):
    from test_report import CHROMIUM, console_errors, live_dom

    from runner.cli.watch import write_live_page

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    with runner.Session(out=tmp_path / "out") as session:
        first = session.run(demo)
        page = write_live_page(tmp_path / "out" / "demo", 1, first)
        second = session.run(demo, set={"params.prompt": "a barn"})
        write_live_page(tmp_path / "out" / "demo", 2, second)
    dom, log = live_dom(page, tmp_path)
    assert f'src="{second.folder.name}/report.html"' in dom
    assert f"runner watch: pass 2 ok ({second.folder.name})" in dom
    assert not console_errors(log)


def test_a_fully_cached_first_pass_loads_the_models_for_the_first_edit(demo, tmp_path, isolated_cache, models_dir):
    """The first pass came all from the cache and loaded nothing: the models the first edit needs load in the
    background while the user edits, so that edit's pass reuses them instead of loading them."""
    assert run_cli("run", demo, "--out", tmp_path / "out", "--quiet") == 0
    watch = WatchProcess(demo, "--quiet", "--out", tmp_path / "out",
                         env={"RUNNER_CACHE_DIR": str(isolated_cache), "RUNNER_MODELS_DIR": str(models_dir)})
    try:
        watch.expect(r"^pass 1 ok: ran nothing; cached room, window_mask, generated, restyled, fixed, final, first_draft")
        watch.expect(r"^loaded tiny:sd15 for the next edit$")
        demo.write_text(demo.read_text().replace("soft morning light", "harsh noon light"))
        second = watch.expect(r"^pass 2 ok: ran generated, restyled, fixed, final, first_draft; .* -> (.+)$")
        record = manifest(Path(second.group(1)))
        assert record["models_reused"] and not record["models_loaded"], (record["models_reused"], record["models_loaded"])
    finally:
        watch.stop()
