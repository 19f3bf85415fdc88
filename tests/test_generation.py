"""Generation nodes on tiny models: schedulers, pipeline_kwargs, several images, latents output."""

from __future__ import annotations

from pathlib import Path

from conftest import latest_run, manifest, run_cli
from PIL import Image


def write(tmp_path: Path, nodes_yaml: str) -> Path:
    workflow = tmp_path / "gen.yaml"
    workflow.write_text("version: 1\nseed: 7\nmodels: {sd: tiny:sd15}\nnodes:\n" + nodes_yaml)
    return workflow


def test_every_scheduler_name_maps_to_a_diffusers_class():
    import diffusers

    from runner.language.fields import SCHEDULERS
    from runner.models.schedulers import SCHEDULER_CLASSES

    assert set(SCHEDULERS) == set(SCHEDULER_CLASSES)
    for class_name, _overrides in SCHEDULER_CLASSES.values():
        assert hasattr(diffusers, class_name), class_name


def test_schedulers_swap_per_node_without_reloading(tmp_path):
    workflow = write(tmp_path, """
  a: {type: txt2img, model: $models.sd, prompt: a cat, steps: 3, scheduler: euler_a}
  b: {type: txt2img, model: $models.sd, prompt: a cat, steps: 3, scheduler: dpmpp_2m_karras}
  c: {type: txt2img, model: $models.sd, prompt: a cat, steps: 3}
  d: {type: txt2img, model: $models.sd, prompt: a cat, steps: 3, scheduler: unipc}
""")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    data = manifest(latest_run(tmp_path / "out", "gen"))
    assert [data["nodes"][n]["scheduler"] for n in "abcd"] == [
        "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "DDIMScheduler", "UniPCMultistepScheduler"]
    assert len(data["models_loaded"]) == 1


def test_num_images_latents_and_pipeline_kwargs(tmp_path, capsys):
    workflow = write(tmp_path, """
  gen: {type: txt2img, model: $models.sd, prompt: a cat, steps: 2, num_images: 3, width: 72, height: 56,
        pipeline_kwargs: {eta: 0.5}}
  all: {type: save_image, images: $gen.images, name: cat.png}
""")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    run_dir = latest_run(tmp_path / "out", "gen")
    assert [Image.open(run_dir / f"cat_{i}.png").size for i in range(3)] == [(72, 56)] * 3
    data = manifest(run_dir)
    assert data["nodes"]["gen"]["call"]["eta"] == 0.5 and data["nodes"]["gen"]["call"]["num_images_per_prompt"] == 3
    key = data["nodes"]["gen"]["key"]
    entry = Path(tmp_path / "cache" / "nodes" / key[:2] / key)
    assert (entry / "latents.safetensors").is_file() and len(list(entry.glob("images_*.png"))) == 3
    from safetensors.torch import load_file

    assert tuple(load_file(str(entry / "latents.safetensors"))["latents"].shape) == (3, 4, 7, 9)

    capsys.readouterr()
    # checked before anything runs (the checkpoint's class is known: see test_pipeline_node.py)
    bad = write(tmp_path, "  gen: {type: txt2img, model: $models.sd, steps: 2, pipeline_kwargs: {etta: 0.5}}\n")
    assert run_cli("run", bad, "--out", tmp_path / "out", "--plain") == 2
    assert "takes no argument 'etta' (did you mean 'eta'?)" in capsys.readouterr().err
    reserved = write(tmp_path, "  gen: {type: txt2img, model: $models.sd, steps: 2, pipeline_kwargs: {num_inference_steps: 3}}\n")
    assert run_cli("run", reserved, "--out", tmp_path / "out", "--plain") == 2
    assert "use the node field 'steps'" in capsys.readouterr().err


def test_pipeline_kwargs_are_still_checked_at_run_time():
    """For checkpoints whose class validation cannot know (uncached hub models, single files)."""
    import pytest

    from runner.models.calls import NodeInputError, checked_pipeline_kwargs
    from runner.nodes.arguments import CALL_ARGUMENTS

    def _checked_pipeline_kwargs(pipe, extra):
        return checked_pipeline_kwargs(pipe, extra, CALL_ARGUMENTS)

    class Pipe:
        def __call__(self, prompt=None, eta=0.0, original_size: tuple | None = None, **kwargs):
            pass

    assert _checked_pipeline_kwargs(Pipe(), {"eta": 0.5, "original_size": [8, 8]}) == {"eta": 0.5, "original_size": (8, 8)}
    with pytest.raises(NodeInputError, match="takes no argument 'etta' \\(did you mean 'eta'\\?\\)"):
        _checked_pipeline_kwargs(Pipe(), {"etta": 0.5})
    with pytest.raises(NodeInputError, match="use the node field 'steps'"):
        _checked_pipeline_kwargs(Pipe(), {"num_inference_steps": 3})


def test_derived_seeds_do_not_change_when_a_node_is_added(tmp_path):
    workflow = write(tmp_path, "  a: {type: txt2img, model: $models.sd, steps: 2}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    first = manifest(latest_run(tmp_path / "out", "gen"))["nodes"]["a"]["seed"]
    workflow.write_text(workflow.read_text().replace("nodes:\n", "nodes:\n  z: {type: txt2img, model: $models.sd, steps: 2}\n"))
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    data = manifest(latest_run(tmp_path / "out", "gen"))
    assert data["nodes"]["a"]["seed"] == first and data["nodes"]["a"]["status"] == "cached"
    assert data["nodes"]["z"]["seed"] != first


def test_random_seed_is_drawn_and_recorded(tmp_path):
    workflow = write(tmp_path, "  a: {type: txt2img, model: $models.sd, steps: 2, seed: random}\n  s: {type: save_image, image: $a}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    run_dir = latest_run(tmp_path / "out", "gen")
    seed = manifest(run_dir)["nodes"]["a"]["seed"]
    assert f"seed: {seed}" in (run_dir / "workflow.yaml").read_text()
    assert f'"node_seed": {seed}' in Image.open(run_dir / "s.png").text["runner:seed"]


def test_memory_options_run_and_offload_on_cpu_warns_instead_of_crashing(tmp_path, capsys):
    workflow = write(tmp_path, """
  a: {type: txt2img, model: $models.sd, prompt: a cat, steps: 2, attention_slicing: true, vae_tiling: true}
  b: {type: txt2img, model: $models.sd, prompt: a cat, steps: 2, offload: sequential}
""")
    workflow.write_text(workflow.read_text().replace("version: 1\n", "version: 1\noffload: model\n"))
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    err = capsys.readouterr().err
    assert "warning: a: offload 'model' needs a CUDA device; running without it on cpu" in err
    assert "warning: b: offload 'sequential' needs a CUDA device" in err
    data = manifest(latest_run(tmp_path / "out", "gen"))
    assert data["nodes"]["b"]["offload"].startswith("ignored") and data["nodes"]["b"]["warnings"]


def test_strength_times_steps_below_one_is_a_clear_error(tmp_path, capsys):
    workflow = write(tmp_path, """
  a: {type: txt2img, model: $models.sd, steps: 2}
  b: {type: img2img, model: $models.sd, image: $a, strength: 0.25, steps: 2}
""")
    # both written: refused before anything runs
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 2
    assert "nodes.b.strength: strength 0.25 x steps 2 leaves no denoising step" in capsys.readouterr().err
    # the steps left to the pipeline's default: the run knows them (Kandinsky 2.2's img2img defaults to 100 steps, SD's
    # to 50: strength 0.01 leaves none)
    workflow.write_text(workflow.read_text().replace("strength: 0.25, steps: 2", "strength: 0.01"))
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 1
    assert "strength 0.01 x steps 50 leaves no denoising step" in capsys.readouterr().err
