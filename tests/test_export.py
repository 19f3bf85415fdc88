"""Every recipe in workflows/ runs offline, and `runner export` writes it as a diffusers script that saves
pixel-identical images.

Each recipe (the demo as it is, every other file with the overrides of its `# offline:` comment: tiny models) runs
offline with the overrides of its `# offline:` comment (tiny models): `runner run` here, `runner
export` here, then every exported script in one fresh Python process in which `import runner` fails (the scripts
import nothing of runner; one process, so torch and diffusers are imported once). The scripts also compile and pass
`ruff check --select F` (no unused imports, no undefined names).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import WORKFLOWS, latest_run, manifest, run_cli
from test_cli_language import RECIPES, offline_overrides

# workflows using what no recipe does (LoRAs, several ControlNets, PAG with a ControlNet, latents into inpaint and
# upscale_latents, mask shapes, weighted prompts with embeddings on SD and SDXL, T2I- and IP-Adapters on SDXL and
# FLUX, a diffusion upscaler, the pipeline node, a single-file checkpoint with a VAE swapped in, ...): each runs and
# exports as the recipes do
FEATURES = Path(__file__).parent / "export_features"
FEATURE_NAMES = sorted(path.stem for path in FEATURES.glob("*.yaml"))

# a sweep over a param, a node field and the workflow seed: the export writes it as one loop over the variants
SWEEP = """\
version: 1
name: swept
seed: 5
params:
  prompt: a red barn
  strength: 0.5
models:
  sd15: tiny:sd15
nodes:
  photo: {type: load_image, path: in.png, size: [64, 64]}
  gen: {type: txt2img, model: $models.sd15, prompt: "${params.prompt}, photo", steps: 2}
  re: {type: img2img, model: $models.sd15, image: $photo, prompt: $params.prompt, strength: $params.strength, steps: 4}
  s1: {type: save_image, image: $gen}
  s2: {type: save_image, images: $re.images}
sweep:
  grid:
    params.prompt: [a red barn, a blue house]
    nodes.gen.steps: [2, 3]
  zip:
    seed: [5, 6]
    params.strength: [0.5, 0.75]
"""

# runs each script given on the command line (SCRIPT OUT pairs) after making sure runner cannot be imported
DRIVER = """\
import runpy, sys
sys.modules["runner"] = None  # as on a machine without runner: `import runner` fails
try:
    import runner
except ImportError:
    pass
else:
    raise SystemExit("runner is importable")
pairs = sys.argv[1:]
for script, out in zip(pairs[::2], pairs[1::2]):
    sys.argv = [script, out]
    runpy.run_path(script, run_name="__main__")
    print("ran", script, flush=True)
"""


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert(image.mode))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, models_dir):
    """{recipe: (runner's run folder, the script, the script's output folder)}, every script run once."""
    root = tmp_path_factory.mktemp("export")
    done: dict[str, tuple[Path, Path, Path]] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNNER_MODELS_DIR", str(models_dir))
        for name in RECIPES:
            overrides = [] if name == "demo.yaml" else [part for value in offline_overrides(name) for part in ("--set", value)]
            out = root / name.removesuffix(".yaml")
            patch.setenv("RUNNER_CACHE_DIR", str(out / "cache"))  # each recipe runs every node
            assert run_cli("run", WORKFLOWS / name, "--out", out / "runs", "--quiet", *overrides) == 0, name
            script = out / "script.py"
            assert run_cli("export", WORKFLOWS / name, *overrides, "-o", script) == 0, name
            workflow = next((out / "runs").iterdir()).name
            done[name] = (latest_run(out / "runs", workflow), script, out / "script_out")
        for name, text in [("sweep", SWEEP)] + [(path.stem, path.read_text()) for path in sorted(FEATURES.glob("*.yaml"))]:
            folder = root / name
            folder.mkdir()
            patch.setenv("RUNNER_CACHE_DIR", str(folder / "cache"))
            (folder / "in.png").write_bytes((WORKFLOWS / "inputs" / "room.png").read_bytes())
            (folder / "workflow.yaml").write_text(text)
            if "sd15.safetensors" in text:  # a single-file checkpoint: tiny:sd15 in the original layout
                from test_single_file import tiny_single_file

                tiny_single_file("sd15", folder / "sd15.safetensors")
            assert run_cli("run", folder / "workflow.yaml", "--out", folder / "runs", "--quiet") == 0, name
            assert run_cli("export", folder / "workflow.yaml", "-o", folder / "script.py") == 0, name
            runs = next((folder / "runs").iterdir())
            run_dir = next(p for p in runs.iterdir() if p.is_dir()) if name == "sweep" else latest_run(folder / "runs", runs.name)
            done[name] = (run_dir, folder / "script.py", folder / "script_out")
        driver = root / "driver.py"
        driver.write_text(DRIVER)
        pairs = [str(part) for _run, script, out in done.values() for part in (script, out)]
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH",)}
        result = subprocess.run([sys.executable, str(driver), *pairs], cwd=root, env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, result.stderr[-4000:]
    return done


@pytest.mark.parametrize("name", [*RECIPES, *FEATURE_NAMES])
def test_exported_recipe_saves_the_same_pixels(exported, name):
    run_dir, script, script_out = exported[name]
    data = manifest(run_dir)
    assert data["status"] == "ok" and data["counts"]["ran"] == len(data["nodes"])
    saved = sorted(path.name for path in run_dir.glob("*.png"))
    assert saved, name
    assert sorted(path.name for path in script_out.glob("*.png")) == saved
    for file in saved:
        ours, theirs = _pixels(run_dir / file), _pixels(script_out / file)
        assert ours.shape == theirs.shape and np.array_equal(ours, theirs), f"{name}: {file} differs"


def test_a_sweep_exports_as_one_loop_with_the_same_pixels(exported):
    sweep_dir, script, script_out = exported["sweep"]
    text = script.read_text()
    assert text.count("# gen (txt2img)") == 1 and "for number, variant in enumerate(VARIANTS):" in text
    assert "node_seed(workflow_seed, " in text  # the seeds follow the swept workflow seed, as runner derives them
    index = json.loads((sweep_dir / "index.json").read_text())
    variants = sorted(path for path in sweep_dir.iterdir() if path.is_dir())
    assert len(variants) == 8 == len(index["variants"])
    for variant in variants:
        for file in ("s1.png", "s2_0.png"):
            assert np.array_equal(_pixels(variant / file), _pixels(script_out / variant.name / file)), (variant.name, file)


@pytest.mark.parametrize("name", [*RECIPES, *FEATURE_NAMES, "sweep"])
def test_exported_script_imports_no_runner_and_passes_ruff(exported, name):
    script = exported[name][1]
    tree = ast.parse(script.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "runner" not in imported
    assert imported <= {"sys", "pathlib", "math", "hashlib", "io", "urllib", "typing", "torch", "numpy", "cv2", "PIL",
                         "diffusers", "transformers", "compel", "safetensors", "huggingface_hub", "torchao"}, imported
    compiled = subprocess.run([sys.executable, "-m", "py_compile", str(script)], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F", str(script)],
                          capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


# ------------------------------------------------------------------ the command and the Python API
def test_a_hub_recipe_exports_without_its_model_files(capsys):
    """Nothing of the hub is here: the script names the hub ids (diffusers' docs' way), the seeds runner derives."""
    from runner.executor.plan import derived_seed

    assert run_cli("export", WORKFLOWS / "canny_controlnet.yaml", "--set", "params.prompt=a bronze bust") == 0
    script = capsys.readouterr().out
    assert 'sd15 = DiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=dtype, ' \
           "use_safetensors=True)" in script
    assert 'canny_cn = ControlNetModel.from_pretrained("lllyasviel/control_v11p_sd15_canny"' in script
    assert "AutoPipelineForText2Image.from_pipe(sd15, controlnet=canny_cn)" in script
    assert "UniPCMultistepScheduler.from_config(sd15.scheduler.config)" in script
    assert f'torch.Generator("cpu").manual_seed({derived_seed(8, "statue")})' in script
    assert 'prompt = "a bronze bust"' in script and "control_guidance_end=0.9," in script
    compile(script, "script.py", "exec")


def test_the_python_api_exports_a_workflow_dict():
    from runner import Session

    workflow = {"version": 1, "name": "api", "seed": 3, "params": {"steps": 2},
                "nodes": {"image": {"type": "txt2img", "model": "tiny:sd15", "prompt": "a barn", "steps": "$params.steps",
                                    "seed": 77},
                          "save": {"type": "save_image", "image": "$image"}}}
    script = Session().export(workflow)
    assert "num_inference_steps=steps," in script and "steps = 2" in script
    assert 'manual_seed(77)  # the node\'s own seed' in script
    assert 'image.save(OUT / "save.png")' in script
    compile(script, "script.py", "exec")


def test_what_the_export_cannot_write_is_refused_where_it_is_written(tmp_path, capsys):
    workflow = tmp_path / "models_swept.yaml"
    workflow.write_text("version: 1\nname: swept\nmodels:\n  sd15: tiny:sd15\nnodes:\n"
                        "  image: {type: txt2img, model: $models.sd15, prompt: a barn, steps: 1}\n"
                        "  save: {type: save_image, image: $image}\n"
                        "sweep:\n  grid:\n    models.sd15: ['tiny:sd15', 'tiny:sdxl']\n")
    assert run_cli("export", workflow, "-o", tmp_path / "script.py") == 2
    err = capsys.readouterr().err
    assert "the sweep sets models.sd15, which the export cannot write as a loop" in err
    assert "fix: export each variant alone: runner export WF --set models.sd15=VALUE" in err
    assert not (tmp_path / "script.py").exists()


def test_the_export_example_page_is_what_the_exporter_writes():
    from runner.cli.export_example import PAGE, export_example

    committed = (WORKFLOWS.parent / "docs" / "reference" / PAGE).read_text(encoding="utf-8")
    assert committed == export_example(WORKFLOWS.parent), "docs/reference/export-example.md is stale: run `make docs`"
