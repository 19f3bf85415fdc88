"""detect_pose: OpenPose drawing from hand-made keypoints, the node on tiny VitPose + RT-DETR through `runner run`,
its skeleton feeding an OpenPose ControlNet, the pose recipe offline, and deterministic tiny builds."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, WORKFLOWS, latest_run, manifest, run_cli
from PIL import Image

from runner.models.pose import (
    OPENPOSE_COLORS,
    OPENPOSE_LIMBS,
    draw_openpose,
    openpose_keypoints,
)

MISSING = (0.0, 0.0, 0.0)


def coco(**points) -> list[tuple[float, float, float]]:
    """17 COCO keypoints, all missing except the named ones: name=(x, y, score)."""
    names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
             "left_knee", "right_knee", "left_ankle", "right_ankle"]
    assert set(points) <= set(names)
    return [points.get(name, MISSING) for name in names]


def colours(image: Image.Image) -> set[tuple]:
    return {tuple(int(v) for v in c) for c in np.asarray(image.convert("RGB")).reshape(-1, 3)}


def dim(color) -> tuple:
    return tuple(int(float(c) * 0.6) for c in color)


# ------------------------------------------------------------------ drawing
def test_openpose_layout_tables():
    assert len(OPENPOSE_COLORS) == 18 and len(OPENPOSE_LIMBS) == 17
    assert OPENPOSE_LIMBS[0] == (1, 2) and OPENPOSE_COLORS[0] == (255, 0, 0)  # neck -> right shoulder, red
    assert {i for limb in OPENPOSE_LIMBS for i in limb} == set(range(18))


def test_openpose_keypoints_from_coco():
    person = coco(nose=(50, 10, 0.9), left_shoulder=(60, 30, 0.8), right_shoulder=(40, 30, 0.5),
                  left_eye=(55, 8, 0.9), right_ankle=(45, 90, 0.2))
    points = openpose_keypoints(person, min_score=0.3)
    assert points[0] == (50, 10)  # nose
    assert points[1] == (50, 30)  # neck: shoulders' midpoint
    assert points[2] == (40, 30) and points[5] == (60, 30)  # OpenPose right/left shoulder = COCO 6/5
    assert points[15] == (55, 8)  # left eye
    assert points[10] is None  # right ankle below min_score
    # the neck needs both shoulders
    assert openpose_keypoints(coco(left_shoulder=(60, 30, 0.8), right_shoulder=(40, 30, 0.1)), 0.3)[1] is None
    assert openpose_keypoints(coco(nose=(math.nan, 3, 0.9)), 0.3)[0] is None
    with pytest.raises(ValueError):
        openpose_keypoints(person[:16], 0.3)


def test_draw_openpose_colours_and_places():
    person = coco(nose=(100, 20, 0.9), left_shoulder=(120, 60, 0.9), right_shoulder=(80, 60, 0.8),
                  left_elbow=(160, 100, 0.9), left_wrist=(170, 170, 0.1))
    image = draw_openpose((200, 190), [person], min_score=0.3)
    assert image.mode == "RGB" and image.size == (200, 190)
    px = image.load()
    assert px[90, 60] == dim(OPENPOSE_COLORS[0])  # neck -> right shoulder limb, at its midpoint
    assert px[110, 60] == dim(OPENPOSE_COLORS[1])  # neck -> left shoulder limb
    assert px[100, 40] == dim(OPENPOSE_COLORS[12])  # neck -> nose limb
    assert px[100, 60] == OPENPOSE_COLORS[1]  # neck joint (drawn over the limbs)
    assert px[80, 60] == OPENPOSE_COLORS[2]  # right shoulder joint
    assert px[100, 20] == OPENPOSE_COLORS[0]  # nose joint
    assert px[160, 100] == OPENPOSE_COLORS[6]  # left elbow joint
    assert px[140, 80] == dim(OPENPOSE_COLORS[4])  # left shoulder -> left elbow limb
    # the low-score left wrist: no joint, no elbow -> wrist limb
    assert px[170, 170] == (0, 0, 0) and px[165, 135] == (0, 0, 0)
    # black background elsewhere
    assert px[5, 185] == (0, 0, 0) and px[195, 5] == (0, 0, 0)
    drawn = colours(image)
    assert dim(OPENPOSE_COLORS[5]) not in drawn and OPENPOSE_COLORS[7] not in drawn


def test_draw_openpose_several_people_and_nothing():
    one = coco(left_shoulder=(30, 20, 0.9), right_shoulder=(10, 20, 0.9))
    two = [(x + 50, y, s) for x, y, s in one]
    image = draw_openpose((100, 40), [one, two], min_score=0.5)
    assert image.getpixel((20, 20)) == OPENPOSE_COLORS[1] and image.getpixel((70, 20)) == OPENPOSE_COLORS[1]
    assert colours(draw_openpose((16, 8), [], 0.3)) == {(0, 0, 0)}
    assert colours(draw_openpose((16, 8), [one], 0.95)) == {(0, 0, 0)}
    # far-away or non-finite keypoints are skipped, not drawn or crashed on
    wild = coco(left_shoulder=(1e12, 5, 0.9), right_shoulder=(math.inf, 5, 0.9), nose=(4, 4, 0.9))
    assert draw_openpose((16, 8), [wild], 0.3).getpixel((4, 4)) == OPENPOSE_COLORS[0]


# ------------------------------------------------------------ node on tiny models
def write(tmp_path: Path, nodes_yaml: str, name: str = "pose") -> Path:
    (tmp_path / "person.png").write_bytes((WORKFLOWS / "inputs" / "person.png").read_bytes())
    workflow = tmp_path / f"{name}.yaml"
    workflow.write_text(f"version: 1\nname: {name}\nseed: 3\nnodes:\n  photo: {{type: load_image, path: person.png}}\n"
                        + nodes_yaml)
    return workflow


POSE_NODES = """
  wide: {type: load_image, path: person.png, size: [96, 64]}
  detected: {type: detect_pose, image: $photo, model: tiny:vitpose, detector: tiny:rtdetr}
  whole: {type: detect_pose, image: $wide, model: tiny:vitpose, detector: null, min_score: 0.0}
  nobody: {type: detect_pose, image: $photo, model: tiny:vitpose, detector: tiny:rtdetr, min_score: 1.0}
  s1: {type: save_image, image: $detected}
  s2: {type: save_image, image: $whole}
  s3: {type: save_image, image: $nobody}
"""


def test_detect_pose_runs_deterministically_and_records(tmp_path):
    workflow = write(tmp_path, POSE_NODES)
    out = tmp_path / "out"
    pixels = []
    for _ in range(2):
        assert run_cli("run", workflow, "--out", out, "--plain", "--no-cache") == 0
        run_dir = latest_run(out, "pose")
        images = [Image.open(run_dir / f"s{i}.png") for i in (1, 2, 3)]
        assert [(im.mode, im.size) for im in images] == [("RGB", (64, 64)), ("RGB", (96, 64)), ("RGB", (64, 64))]
        pixels.append([im.tobytes() for im in images])
    assert pixels[0] == pixels[1]

    nodes = manifest(run_dir)["nodes"]
    detected, whole, nobody = nodes["detected"], nodes["whole"], nodes["nobody"]
    # the random detector does find "people" at min_score 0.3: one skeleton per box
    assert detected["boxes_from"] == "detector" and detected["people"] == detected["detected"] >= 1
    assert set(detected["models"]) == {"tiny:vitpose", "tiny:rtdetr"}
    # detector: null -> the whole image is one person; min_score 0 draws every keypoint with a peak (+ the neck)
    assert whole["boxes_from"] == "whole image" and whole["people"] == 1 and "detected" not in whole
    assert 1 <= whole["keypoints"] <= 18
    assert list(whole["models"]) == ["tiny:vitpose"]
    assert len(colours(Image.open(run_dir / "s2.png"))) > 1  # a skeleton, not just black
    # nothing scores 1.0: no person found, the whole image is used instead
    assert nobody["boxes_from"] == "whole image" and nobody["detected"] == 0 and nobody["people"] == 1


def test_detect_pose_is_cached_and_models_load_once(tmp_path):
    workflow = write(tmp_path, POSE_NODES)
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--plain") == 0
    data = manifest(latest_run(out, "pose"))
    assert all(data["nodes"][n]["status"] == "ran" for n in ("detected", "whole", "nobody"))
    # each model loads once, although three nodes use them
    assert [m.split("@")[0] for m in data["models_loaded"]] == ["tiny:vitpose", "tiny:rtdetr"]
    assert run_cli("run", workflow, "--out", out, "--plain") == 0
    assert all(node["status"] == "cached" for node in manifest(latest_run(out, "pose"))["nodes"].values()
               if node["type"] == "detect_pose")


def test_wrong_tiny_kind_is_refused_before_the_run(tmp_path, capsys):
    workflow = write(tmp_path, "  pose: {type: detect_pose, image: $photo, model: tiny:rtdetr, detector: null}\n")
    for command in (("validate", workflow), ("run", workflow, "--out", tmp_path / "out", "--plain")):
        assert run_cli(*command) == 2
        err = capsys.readouterr().err
        assert (f"{workflow}:6:44: nodes.pose.model: model 'tiny:rtdetr' is a person detector, used where a pose "
                "estimator is expected") in err and "detect_pose node's detector:" in err and "tiny:vitpose" in err, err
    assert not (tmp_path / "out").exists()


def test_pose_image_feeds_an_openpose_controlnet(tmp_path):
    workflow = write(tmp_path, """
  pose: {type: detect_pose, image: $photo, model: tiny:vitpose, detector: null, min_score: 0.0}
  posed:
    type: txt2img
    model: tiny:sd15
    prompt: a dancer
    controlnet: [{model: tiny:controlnet-sd15, image: $pose}]
    width: 64
    height: 64
    steps: 2
  save: {type: save_image, image: $posed}
""", name="posed")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    run_dir = latest_run(tmp_path / "out", "posed")
    data = manifest(run_dir)
    assert data["nodes"]["posed"]["pipeline_class"] == "StableDiffusionControlNetPipeline"
    assert Image.open(run_dir / "save.png").size == (64, 64)


def test_pose_recipe_runs_offline_on_tiny_models(tmp_path):
    from test_cli_language import offline_overrides

    from runner.engine.loading import load_workflow
    from runner.models.tiny import TINY_NAMES

    name = "pose_controlnet.yaml"
    overrides = offline_overrides(name)
    workflow = load_workflow(WORKFLOWS / name, overrides)
    for model_name, entry in workflow.models.items():
        assert entry.source.startswith("tiny:") and entry.source[5:] in TINY_NAMES, model_name
    real = {entry.source for entry in load_workflow(WORKFLOWS / name).models.values()}
    assert real == {"stable-diffusion-v1-5/stable-diffusion-v1-5", "lllyasviel/control_v11p_sd15_openpose",
                    "usyd-community/vitpose-base-simple", "PekingU/rtdetr_r50vd_coco_o365"}
    args = [arg for override in overrides for arg in ("--set", override)]
    assert run_cli("run", WORKFLOWS / name, "--out", tmp_path / "out", "--plain", *args) == 0
    run_dir = latest_run(tmp_path / "out", "pose-controlnet")
    data = manifest(run_dir)
    assert data["status"] == "ok" and data["counts"]["ran"] == len(data["nodes"])
    assert data["nodes"]["posed"]["pipeline_class"] == "StableDiffusionControlNetPipeline"
    assert Image.open(run_dir / "pose.png").size == (64, 64) and Image.open(run_dir / "astronaut.png").size == (64, 64)


# ------------------------------------------------------------------ tiny builds
def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_tiny_pose_models_build_deterministically_and_load(tmp_path):
    import transformers

    from runner.models import tiny

    names = ["vitpose", "rtdetr"]
    here = {name: tiny.ensure_tiny(name, tmp_path / "a") for name in names}
    code = ("import sys, pathlib; from runner.models import tiny; "
            f"[tiny.ensure_tiny(n, pathlib.Path(sys.argv[1])) for n in {names!r}]")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], cwd=REPO, check=True, capture_output=True)
    for name, folder in here.items():
        assert _digests(tmp_path / "b" / folder.name) == _digests(folder), name
        assert "model.safetensors" in _digests(folder) and not list(folder.glob("*.bin"))
    assert {tiny.tiny_kind(n) for n in names} == {"pose-estimator", "object-detector"}

    detector = transformers.AutoModelForObjectDetection.from_pretrained(here["rtdetr"])
    assert type(detector).__name__ == "RTDetrForObjectDetection" and detector.config.id2label[0] == "person"
    assert "RTDetrImageProcessor" in type(transformers.AutoImageProcessor.from_pretrained(here["rtdetr"])).__name__
    pose = transformers.VitPoseForPoseEstimation.from_pretrained(here["vitpose"])
    assert pose.config.num_labels == 17
    processor = transformers.AutoImageProcessor.from_pretrained(here["vitpose"])
    assert "VitPoseImageProcessor" in type(processor).__name__ and processor.size["height"] == 64


def test_heatmap_decoding_matches_transformers_when_scipy_is_there():
    """runner decodes heatmaps without scipy; where scipy is installed, transformers' own decoding must agree."""
    pytest.importorskip("scipy")
    import transformers

    from runner.models import pose

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:12]
    heatmaps = np.zeros((2, 17, 16, 12), np.float32)
    for i in range(2):
        for k in range(17):
            cx, cy = rng.uniform(0, 11), rng.uniform(0, 15)
            heatmaps[i, k] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.5) * rng.uniform(0.2, 1)
    boxes = [[10.5, 5.2, 40.3, 80.1], [60, 30, 50, 20]]
    processor = getattr(transformers, "VitPoseImageProcessorPil")(size={"height": 64, "width": 48})
    regions = [pose._center_and_scale(box, 48 / 64) for box in boxes]
    reference, scores = processor.keypoints_from_heatmaps(
        heatmaps.copy(), np.array([c for c, _ in regions]), np.array([r / 200.0 for _, r in regions]), kernel=11)
    coords, mine = pose._decode(heatmaps)
    for (center, region), ours, theirs in zip(regions, coords, reference):
        xs = ours[:, 0] * region[0] / 11 + center[0] - region[0] / 2
        ys = ours[:, 1] * region[1] / 15 + center[1] - region[1] / 2
        assert np.allclose(np.stack([xs, ys], -1), theirs, atol=1e-3)
    assert np.allclose(mine, scores[..., 0])
