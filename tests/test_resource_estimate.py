"""A generation call's working memory is estimated before the call and checked against the memory budget."""

from __future__ import annotations

from types import SimpleNamespace

from conftest import latest_run, manifest, run_cli, write_workflow

HUGE = """version: 1
name: huge
nodes:
  big: {type: txt2img, model: tiny:sd15, prompt: a room, steps: 2, num_images: 64, width: 8192, height: 8192}
"""


def test_an_impossible_call_is_refused_at_the_field_before_anything_loads(tmp_path, capsys, monkeypatch):
    from runner.nodes import call_checks

    workflow = write_workflow(tmp_path, "huge.yaml", HUGE)
    # 64 x 8192^2 is above the generation pixel budget: refused by validation before anything runs
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 2
    assert "more than the budget of 32 MP (RUNNER_MAX_GENERATION_PIXELS)" in capsys.readouterr().err
    # with the pixel budget raised, the memory estimate of the call refuses it when the run is planned, with the numbers
    monkeypatch.setattr(call_checks, "MAX_GENERATION_PIXELS", 1 << 40)
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain", "--max-ram", "16GB") == 2
    err = capsys.readouterr().err
    assert "huge.yaml:4:" in err and "nodes.big.num_images: this call needs about" in err, err
    assert "64 images of 8192 x 8192 px" in err and "more than the ram budget of 16.00 GB" in err
    assert "vae_tiling: true" in err and "--max-ram" in err
    assert not (tmp_path / "out").exists()  # refused before the run folder, before any model loads


def test_the_budget_flag_decides_and_a_call_that_fits_runs(tmp_path, capsys):
    text = HUGE.replace("num_images: 64, width: 8192, height: 8192", "num_images: 2, width: 512, height: 512")
    workflow = write_workflow(tmp_path, "fits.yaml", text)
    # tiny VAE, 2 x 512 x 512: about 100 MB of work; 40 MB of budget holds the tiny model but not the work: refused
    # when planned, at the field (the tiny model's VAE config read from its spec, nothing built or loaded)
    assert run_cli("run", workflow, "--out", tmp_path / "small", "--dry-run", "--max-ram", "40MB") == 2  # as the run
    assert "more than the ram budget of 40.00 MB" in capsys.readouterr().err
    assert run_cli("run", workflow, "--out", tmp_path / "small", "--plain", "--max-ram", "40MB") == 2
    err = capsys.readouterr().err
    assert "fits.yaml:4:" in err and "nodes.big.num_images" in err and "more than the ram budget of 40.00 MB" in err, err
    assert not (tmp_path / "small").exists()
    assert run_cli("run", workflow, "--out", tmp_path / "small", "--plain", "--max-ram", "40MB",
                   "--set", "nodes.big.width=64", "--set", "nodes.big.height=64") == 0  # 2 x 64 x 64 fits


def test_a_size_known_only_when_the_call_runs_is_checked_before_the_call(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "from_image.yaml", """version: 1
name: from_image
nodes:
  photo: {type: load_image, path: in.png, size: [1024, 1024]}
  big: {type: img2img, model: tiny:sd15, image: $photo, prompt: a room, steps: 2}
""")
    # img2img takes its size from the image: the plan cannot know it, the check before the call does
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain", "--max-ram", "60MB") == 1
    err = capsys.readouterr().err
    assert "MemoryEstimateExceeded" in err and "1 image of 1024 x 1024 px" in err and "budget" in err, err
    node = manifest(latest_run(tmp_path / "out", "from_image"))["nodes"]["big"]
    assert node["status"] == "failed" and "needs about" in node["error"]


def test_the_estimate_counts_images_size_and_tiling():
    from runner.models.estimate import working_bytes

    vae = SimpleNamespace(config=SimpleNamespace(block_out_channels=[128, 256, 512, 512], sample_size=512),
                          dtype="torch.float32", tile_sample_min_size=512)
    pipe = SimpleNamespace(vae=vae, vae_scale_factor=8, unet=SimpleNamespace(config=SimpleNamespace(sample_size=64)))
    one, how = working_bytes(pipe, {})  # fields left out: the model's default 512 x 512
    assert "1 image of 512 x 512 px" in how
    assert 0.7e9 < one < 1.2e9  # SD 1.5's VAE decode at 512 px in float32: the order of a GB
    four, _ = working_bytes(pipe, {"num_images_per_prompt": 4, "width": 1024, "height": 1024})
    assert 15 * one < four < 17 * one
    tiled, how = working_bytes(pipe, {"num_images_per_prompt": 4, "width": 1024, "height": 1024}, tiled=True)
    assert tiled < four / 3 and "(tiled)" in how
