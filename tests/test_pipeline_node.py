"""The `pipeline` node (any exported diffusers pipeline class by name) and validation-time call-argument checks."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, latest_run, manifest, run_cli
from PIL import Image

HEAD = "version: 1\nseed: 3\nmodels: {sd: tiny:sd15, xl: tiny:sdxl}\nnodes:\n"


def write(tmp_path: Path, nodes: str, name: str = "pipe") -> Path:
    Image.new("RGB", (64, 64), (200, 120, 40)).save(tmp_path / "in.png")
    path = tmp_path / f"{name}.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(nodes).lstrip("\n"), "  "))
    return path


def validate(path: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = run_cli("validate", path)
    return status, capsys.readouterr().err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------- running

def test_pipeline_node_runs_a_named_class(tmp_path):
    workflow = write(tmp_path, """
        gen:
          type: pipeline
          class: StableDiffusionPipeline
          model: $models.sd
          call: {prompt: a red barn, num_inference_steps: 2, height: 64, width: 64}
        save: {type: save_image, image: $gen, name: gen.png}
        """)
    assert run_cli("run", workflow, "--out", tmp_path / "a", "--plain") == 0
    first = latest_run(tmp_path / "a", "pipe")
    assert Image.open(first / "gen.png").size == (64, 64)
    node = manifest(first)["nodes"]["gen"]
    assert node["pipeline_class"] == "StableDiffusionPipeline"
    assert node["call"] == {"prompt": "a red barn", "num_inference_steps": 2, "height": 64, "width": 64}

    # same seed, fresh cache: the same bytes
    assert run_cli("run", workflow, "--out", tmp_path / "b", "--plain", "--no-cache") == 0
    assert sha(latest_run(tmp_path / "b", "pipe") / "gen.png") == sha(first / "gen.png")
    # another seed: other pixels
    workflow.write_text(workflow.read_text().replace("seed: 3", "seed: 4"))
    assert run_cli("run", workflow, "--out", tmp_path / "c", "--plain") == 0
    assert sha(latest_run(tmp_path / "c", "pipe") / "gen.png") != sha(first / "gen.png")


def test_pipeline_node_takes_an_image_through_a_link_in_call(tmp_path):
    workflow = write(tmp_path, """
        photo: {type: load_image, path: in.png}
        restyled:
          type: pipeline
          class: StableDiffusionImg2ImgPipeline
          model: $models.sd
          call: {image: $photo, prompt: x, strength: 0.5, num_inference_steps: 2}
        save: {type: save_image, image: $restyled, name: out.png}
        """)
    from runner.engine.loading import load_workflow

    loaded = load_workflow(workflow)
    assert loaded.graph.deps["restyled"] == ["photo"]
    assert [(str(link), path) for link, _a, path in loaded.nodes["restyled"].links()] == [("$photo", ("call", "image"))]

    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    run_dir = latest_run(tmp_path / "out", "pipe")
    assert Image.open(run_dir / "out.png").size == (64, 64)
    data = manifest(run_dir)
    assert data["nodes"]["restyled"]["pipeline_class"] == "StableDiffusionImg2ImgPipeline"
    assert data["nodes"]["restyled"]["call"]["image"] == "$photo"
    key = data["nodes"]["restyled"]["key"]

    # the upstream image is part of the cache key: a new input image re-runs the node
    Image.new("RGB", (64, 64), (10, 200, 90)).save(tmp_path / "in.png")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    again = manifest(latest_run(tmp_path / "out", "pipe"))["nodes"]["restyled"]
    assert again["key"] != key and again["status"] == "ran"


# ---------------------------------------------------------- pipeline: validation

@pytest.mark.parametrize("bad, words", [
    ("StableDifusionPipeline", ("unknown diffusers pipeline class 'StableDifusionPipeline'",
                                "did you mean 'StableDiffusionPipeline'?")),
    ("NotARealPipeline", ("unknown diffusers pipeline class 'NotARealPipeline'", "that diffusers")),
])
def test_unknown_pipeline_class(bad, words, tmp_path, capsys):
    workflow = write(tmp_path, f"p: {{type: pipeline, class: {bad}, model: $models.sd}}\n")
    status, err = validate(workflow, capsys)
    assert status == 2
    assert f"{workflow}:5:23: nodes.p.class: " in err
    for word in words:
        assert word in err


@pytest.mark.parametrize("bad", ["os.system", "diffusers.StableDiffusionPipeline", "builtins.eval", "__import__"])
def test_pipeline_class_is_never_an_import_path(bad, tmp_path, capsys):
    workflow = write(tmp_path, f"p: {{type: pipeline, class: '{bad}', model: $models.sd}}\n")
    status, err = validate(workflow, capsys)
    assert status == 2
    assert "nodes.p.class" in err and "diffusers pipeline class name" in err


def test_unknown_call_key_is_located_with_a_suggestion(tmp_path, capsys):
    workflow = write(tmp_path, """
        p:
          type: pipeline
          class: StableDiffusionPipeline
          model: $models.sd
          call:
            prompt: x
            num_inference_step: 2
            generator: 5
        """)
    status, err = validate(workflow, capsys)
    assert status == 2
    assert (f"{workflow}:11:7: nodes.p.call.num_inference_step: StableDiffusionPipeline takes no argument "
            "'num_inference_step' (did you mean 'num_inference_steps'?)") in err
    assert f"{workflow}:12:7: nodes.p.call.generator: 'generator' is not allowed in call" in err
    assert "2 problems found" in err


def test_links_in_call_are_type_checked(tmp_path, capsys):
    workflow = write(tmp_path, """
        base: {type: txt2img, model: $models.sd}
        p: {type: pipeline, class: StableDiffusionImg2ImgPipeline, model: $models.sd, call: {image: $base.latents}}
        q: {type: pipeline, class: StableDiffusionImg2ImgPipeline, model: $models.sd, call: {image: $nope}}
        """)
    status, err = validate(workflow, capsys)
    assert status == 2
    assert "nodes.p.call.image: link type mismatch: '$base.latents' is latents" in err
    assert "nodes.q.call.image: unknown node 'nope'" in err


# ------------------------------------------------------ pipeline_kwargs: validation

def test_unknown_pipeline_kwargs_key_on_txt2img(tmp_path, capsys):
    workflow = write(tmp_path, """
        gen:
          type: txt2img
          model: $models.sd
          pipeline_kwargs: {etta: 0.5}
        """)
    status, err = validate(workflow, capsys)
    assert status == 2
    assert (f"{workflow}:8:23: nodes.gen.pipeline_kwargs.etta: StableDiffusionPipeline takes no argument 'etta' "
            "(did you mean 'eta'?)") in err
    assert "a txt2img node runs for 'tiny:sd15'" in err


@pytest.mark.parametrize("key, field", [("num_inference_steps", "steps"), ("num_images_per_prompt", "num_images"),
                                        ("prompt", "prompt"), ("denoising_start", "denoising_start")])
def test_pipeline_kwargs_that_a_node_field_sets(key, field, tmp_path, capsys):
    node_type = "refine" if key == "denoising_start" else "txt2img"
    extra = ", image: $photo" if node_type == "refine" else ""
    workflow = write(tmp_path, f"""
        photo: {{type: load_image, path: in.png}}
        gen: {{type: {node_type}, model: $models.xl{extra}, pipeline_kwargs: {{{key}: 1}}}}
        """)
    status, err = validate(workflow, capsys)
    assert status == 2
    assert f"nodes.gen.pipeline_kwargs.{key}: '{key}' is not allowed in pipeline_kwargs" in err
    assert f"fix: use the node field '{field}'" in err


def test_pipeline_kwargs_that_runner_sets_itself(tmp_path, capsys):
    workflow = write(tmp_path, "gen: {type: txt2img, model: $models.sd, pipeline_kwargs: {generator: 1, output_type: latent}}\n")
    status, err = validate(workflow, capsys)
    assert status == 2
    assert "nodes.gen.pipeline_kwargs.generator: 'generator' is not allowed in pipeline_kwargs: runner sets it itself" in err
    assert "nodes.gen.pipeline_kwargs.output_type:" in err


def test_sdxl_only_argument_depends_on_the_checkpoint(tmp_path, capsys):
    xl = write(tmp_path, "gen: {type: txt2img, model: $models.xl, pipeline_kwargs: {original_size: [128, 128]}}\n", "xl")
    assert validate(xl, capsys) == (0, "")
    sd = write(tmp_path, "gen: {type: txt2img, model: $models.sd, pipeline_kwargs: {original_size: [128, 128]}}\n", "sd")
    status, err = validate(sd, capsys)
    assert status == 2
    assert "nodes.gen.pipeline_kwargs.original_size: StableDiffusionPipeline takes no argument 'original_size'" in err


def test_the_class_follows_task_and_controlnets(tmp_path, capsys):
    # strength is an img2img argument; controlnet_conditioning_scale belongs to the ControlNet variant
    workflow = write(tmp_path, """
        photo: {type: load_image, path: in.png}
        a: {type: img2img, model: $models.sd, image: $photo, pipeline_kwargs: {guess_mode: true}}
        b: {type: img2img, model: $models.sd, image: $photo, pipeline_kwargs: {guess_mode: true},
            controlnet: [{model: tiny:controlnet-sd15, image: $photo}]}
        c: {type: img2img, model: $models.sd, image: $photo, controlnet: [{model: tiny:controlnet-sd15, image: $photo}],
            pipeline_kwargs: {controlnet_conditioning_scale: 0.3}}
        """)
    status, err = validate(workflow, capsys)
    assert status == 2
    assert "nodes.a.pipeline_kwargs.guess_mode: StableDiffusionImg2ImgPipeline takes no argument 'guess_mode'" in err
    assert "nodes.b.pipeline_kwargs" not in err
    assert "nodes.c.pipeline_kwargs.controlnet_conditioning_scale: " in err and "'scale' on each controlnet item" in err
    assert "2 problems found" in err


def test_a_hub_model_that_is_not_cached_is_checked_at_run_time(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    workflow = write(tmp_path, "gen: {type: txt2img, model: someone/not-cached, pipeline_kwargs: {anything: 1}}\n")
    assert validate(workflow, capsys) == (0, "")


def test_a_cached_hub_snapshot_is_checked(tmp_path, capsys, monkeypatch):
    hub = tmp_path / "hub"
    repo = hub / "models--someone--sdxl"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    workflow = write(tmp_path, "gen: {type: txt2img, model: someone/sdxl, pipeline_kwargs: {original_sise: [1, 1]}}\n")
    status, err = validate(workflow, capsys)
    assert status == 2
    assert "StableDiffusionXLPipeline takes no argument 'original_sise' (did you mean 'original_size'?)" in err


def test_a_local_folder_is_checked_by_its_model_index(tmp_path, capsys):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    workflow = write(tmp_path, """
        gen2: {type: txt2img, model: my-model}
        gen: {type: inpaint, model: my-model, image: $gen2, mask: $gen2, pipeline_kwargs: {eta: 0.5, x: 1}}
        """)
    status, err = validate(workflow, capsys)
    assert status == 2
    assert "nodes.gen.pipeline_kwargs.x: StableDiffusionInpaintPipeline takes no argument 'x'" in err
    assert "pipeline_kwargs.eta" not in err


# ------------------------------------------------------------------- the index

def test_index_agrees_with_diffusers():
    """Signatures and AutoPipeline task classes read from source match the imported classes."""
    import inspect

    import diffusers
    from diffusers.pipelines import auto_pipeline

    from runner.models.signatures import AUTOPIPELINE_MAPPINGS, pipeline_index

    index = pipeline_index()
    for name in ("StableDiffusionPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionUpscalePipeline",
                 "StableDiffusionControlNetInpaintPipeline", "KandinskyV22CombinedPipeline", "FluxPipeline"):
        assert name in index.allowed
        expected = [p.name for p in inspect.signature(getattr(diffusers, name).__call__).parameters.values()
                    if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        assert list(index.signature(name).parameters) == expected, name
    for autopipeline, mapping_name in AUTOPIPELINE_MAPPINGS.items():
        mapping = getattr(auto_pipeline, mapping_name)
        for family_mapping in auto_pipeline.SUPPORTED_TASKS_MAPPINGS:
            for cls in family_mapping.values():
                found = auto_pipeline._get_task_class(mapping, cls.__name__, throw_error_if_not_exist=False)
                assert index.task_class(cls.__name__, autopipeline) == (found.__name__ if found else None), (autopipeline, cls.__name__)
    assert "DiffusionPipeline" not in index.allowed  # no __call__: nothing to run


def test_index_is_cached_per_diffusers_version(tmp_path):
    from runner.models import signatures

    signatures._MEMORY.clear()
    started = time.perf_counter()
    built = signatures.pipeline_index(tmp_path)
    cold = time.perf_counter() - started
    files = list((tmp_path / "signatures").glob("diffusers-*.json"))
    assert [f.name for f in files] == [f"diffusers-{built.version}.json"]
    signatures._MEMORY.clear()
    started = time.perf_counter()
    again = signatures.pipeline_index(tmp_path)
    warm = time.perf_counter() - started
    assert again.signatures == built.signatures and again.allowed == built.allowed
    assert warm < 0.1 and cold < 10, (cold, warm)


def test_validate_with_call_checks_imports_no_torch(tmp_path):
    workflow = write(tmp_path, """
        photo: {type: load_image, path: in.png}
        gen: {type: txt2img, model: $models.xl, pipeline_kwargs: {original_size: [64, 64]}}
        p: {type: pipeline, class: StableDiffusionImg2ImgPipeline, model: $models.sd, call: {image: $photo, prompt: x}}
        """)
    code = ("import sys, runner.cli\n"
            f"rc = runner.cli.main(['validate', {str(workflow)!r}])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers'))\n"
            "assert not heavy, heavy[:5]\n"
            "sys.exit(rc)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_pipeline_node_shares_the_checkpoint_with_generation_nodes(tmp_path):
    import json

    workflow = tmp_path / "share.yaml"
    workflow.write_text(
        "version: 1\nnodes:\n"
        "  a: {type: txt2img, model: tiny:sd15, prompt: x, steps: 2}\n"
        "  b: {type: pipeline, class: StableDiffusionImg2ImgPipeline, model: tiny:sd15,"
        " call: {image: $a, prompt: y, strength: 0.5, num_inference_steps: 2}}\n"
        "  c: {type: pipeline, class: StableDiffusionPipeline, model: tiny:sd15, call: {prompt: z, num_inference_steps: 2}}\n")
    from runner.cli import main

    assert main(["run", str(workflow), "--out", str(tmp_path / "out"), "--plain"]) == 0
    run = next((tmp_path / "out" / "share").iterdir())
    data = json.loads((run / "manifest.json").read_text())
    assert [m for m in data["models_loaded"] if m.startswith("tiny:sd15@")] == [data["nodes"]["a"]["models"]["tiny:sd15"]]
    assert data["nodes"]["b"]["pipeline_class"] == "StableDiffusionImg2ImgPipeline"
