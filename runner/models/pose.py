"""Human pose for pose ControlNets: person boxes, VitPose keypoints, an OpenPose-style skeleton image.

The flow is transformers' top-down one: a person detector (any
``AutoModelForObjectDetection`` checkpoint, e.g. RT-DETR) gives boxes, VitPose
(``VitPoseForPoseEstimation``) gives the 17 COCO keypoints inside each box, and
``draw_openpose`` draws them the way pose ControlNets
(lllyasviel/control_v11p_sd15_openpose) were trained: the 18-keypoint OpenPose
body layout on black, limbs and joints in the standard OpenPose colours, as
controlnet_aux's ``draw_bodypose`` does.

VitPose's own box crop (``do_affine_transform``) and heatmap decoding
(``post_process_pose_estimation``) need scipy, which runner does not install.
This module does the same two steps with OpenCV and NumPy: the crop is
mmpose's unbiased (UDP) warp with ``cv2.warpAffine`` (which transformers'
scipy code emulates), the decoding is argmax + DARK refinement with
``cv2.GaussianBlur``; the processor still does rescaling and normalisation
with the checkpoint's own settings.  The drawing is a pure function of the
keypoints, so it is testable without any model.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .sources import ModelSource, ModelUnavailable, missing_safetensors_explained

Keypoint = tuple[float, float, float]  # x, y (pixels), score

# ------------------------------------------------------------- OpenPose layout
# OpenPose body (18): 0 nose, 1 neck, 2 r_shoulder, 3 r_elbow, 4 r_wrist, 5 l_shoulder, 6 l_elbow, 7 l_wrist,
# 8 r_hip, 9 r_knee, 10 r_ankle, 11 l_hip, 12 l_knee, 13 l_ankle, 14 r_eye, 15 l_eye, 16 r_ear, 17 l_ear.
# COCO (17): 0 nose, 1 l_eye, 2 r_eye, 3 l_ear, 4 r_ear, 5 l_shoulder, 6 r_shoulder, 7 l_elbow, 8 r_elbow,
# 9 l_wrist, 10 r_wrist, 11 l_hip, 12 r_hip, 13 l_knee, 14 r_knee, 15 l_ankle, 16 r_ankle.
OPENPOSE_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
NECK = 1
# COCO index for each OpenPose keypoint; the neck (None) is the midpoint of the shoulders (COCO 5 and 6).
OPENPOSE_FROM_COCO = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
COCO_SHOULDERS = (5, 6)

# Limbs as pairs of OpenPose indices (controlnet_aux's limbSeq, which is 1-based, minus one), in drawing order.
OPENPOSE_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
# RGB; limb i is drawn in OPENPOSE_COLORS[i] at 60 %, joint j in OPENPOSE_COLORS[j] at full strength.
OPENPOSE_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
LIMB_BRIGHTNESS = 0.6
STICK_WIDTH = 4  # half-width of a limb, pixels
JOINT_RADIUS = 4  # pixels


def openpose_keypoints(coco: Sequence[Keypoint], min_score: float) -> list[tuple[float, float] | None]:
    """The 18 OpenPose body keypoints from 17 COCO ones: (x, y), or None where missing.

    A keypoint is missing when its score is below ``min_score`` or its position
    is not finite. The neck is the shoulders' midpoint, present only when both
    shoulders are.
    """
    if len(coco) != 17:
        raise ValueError(f"expected 17 COCO keypoints, got {len(coco)}")

    def present(point: Keypoint) -> tuple[float, float] | None:
        x, y, score = (float(v) for v in point)
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(score)) or score < min_score:
            return None
        return x, y

    points = [present(coco[i]) if i is not None else None for i in OPENPOSE_FROM_COCO]
    left, right = (present(coco[i]) for i in COCO_SHOULDERS)
    if left is not None and right is not None:
        points[NECK] = ((left[0] + right[0]) / 2, (left[1] + right[1]) / 2)
    return points


def draw_openpose(size: tuple[int, int], people: Sequence[Sequence[Keypoint]], min_score: float):
    """OpenPose-style skeleton image (RGB, black background) of ``size`` = (width, height).

    ``people``: for each person, the 17 COCO keypoints as (x, y, score) in
    pixels of that image. Keypoints scoring below ``min_score`` (and limbs
    touching them) are left out; so are keypoints whose position is not finite
    or lies more than one image width/height outside the image. Each person is
    drawn as controlnet_aux's ``draw_bodypose`` does: limbs as filled ellipses
    (half-width 4 px) at 60 % of their colour, then joints as 4 px discs at
    full colour.
    """
    import cv2
    from PIL import Image

    width, height = int(size[0]), int(size[1])
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in people:
        points = openpose_keypoints(person, min_score)
        points = [p if p is not None and -width <= p[0] <= 2 * width and -height <= p[1] <= 2 * height else None
                  for p in points]
        for (a, b), color in zip(OPENPOSE_LIMBS, OPENPOSE_COLORS):
            if points[a] is None or points[b] is None:
                continue
            (x0, y0), (x1, y1) = points[a], points[b]
            length = math.hypot(x0 - x1, y0 - y1)
            angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
            polygon = cv2.ellipse2Poly((int((x0 + x1) / 2), int((y0 + y1) / 2)), (int(length / 2), STICK_WIDTH),
                                       int(angle), 0, 360, 1)
            cv2.fillConvexPoly(canvas, polygon, [int(float(c) * LIMB_BRIGHTNESS) for c in color])
        for point, color in zip(points, OPENPOSE_COLORS):
            if point is not None:
                cv2.circle(canvas, (int(point[0]), int(point[1])), JOINT_RADIUS, color, thickness=-1)
    return Image.fromarray(canvas, "RGB")


def count_drawn(people: Sequence[Sequence[Keypoint]], size: tuple[int, int], min_score: float) -> int:
    """How many OpenPose keypoints (neck included) ``draw_openpose`` draws for these people."""
    width, height = size
    return sum(1 for person in people for p in openpose_keypoints(person, min_score)
               if p is not None and -width <= p[0] <= 2 * width and -height <= p[1] <= 2 * height)


# ----------------------------------------------------------------- loading
def _processor_kwargs(kwargs: dict) -> dict:
    return {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "subfolder", "trust_remote_code")
            if k in kwargs}


def _check_tiny_kind(source: ModelSource, wanted: str, role: str) -> None:
    if source.kind != "tiny":
        return
    from .tiny import TINY_NAMES, tiny_kind

    kind = tiny_kind(source.location)
    if kind != wanted:
        fits = [f"tiny:{n}" for n in TINY_NAMES if tiny_kind(n) == wanted]
        raise ModelUnavailable(f"'{source.label}' is a {kind} model, not a {role}; use {' or '.join(fits) or 'another model'}")


def _transformers_model(registry, source: ModelSource, identity: str, kind: str, role: str, model_class: str):
    """(model, image processor) of a transformers vision model, loaded once per run."""
    _check_tiny_kind(source, kind, role)

    def load():
        import transformers

        location, kwargs = registry.pretrained_args(source)
        with missing_safetensors_explained(source):
            model = getattr(transformers, model_class).from_pretrained(location, **kwargs).to(registry.device).eval()
        processor = transformers.AutoImageProcessor.from_pretrained(location, **_processor_kwargs(kwargs))
        return model, processor

    return registry.cached((kind, identity), load, load_label=identity, group=identity, estimate=registry.estimate(source),
                           source=source)


def person_detector(registry, source: ModelSource, identity: str):
    """(model, image processor) of an object detector (RT-DETR, DETR, ...), loaded once per run."""
    return _transformers_model(registry, source, identity, "object-detector", "person detector", "AutoModelForObjectDetection")


def pose_estimator(registry, source: ModelSource, identity: str):
    """(VitPoseForPoseEstimation, image processor), loaded once per run."""
    return _transformers_model(registry, source, identity, "pose-estimator", "pose model", "VitPoseForPoseEstimation")


# --------------------------------------------------------------- detection
def person_label(config) -> int:
    """The class id named "person" in the detector's labels (COCO: 0)."""
    for label_id, name in (getattr(config, "id2label", None) or {}).items():
        if str(name).strip().lower() == "person":
            return int(label_id)
    return 0


def detect_people(model, processor, image, min_score: float) -> list[tuple[list[float], float]]:
    """Person boxes as ([x, y, width, height] in pixels, score), best first, score >= min_score."""
    import torch

    width, height = image.size
    inputs = processor(images=image, return_tensors="pt")
    dtype = next(model.parameters()).dtype
    inputs = {k: (v.to(model.device, dtype) if v.is_floating_point() else v.to(model.device)) for k, v in inputs.items()}
    with torch.no_grad():
        outputs = model(**inputs)
    for name in ("logits", "pred_boxes"):
        if getattr(outputs, name, None) is not None:
            setattr(outputs, name, getattr(outputs, name).float().cpu())
    result = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(height, width)])[0]
    person = person_label(model.config)
    boxes = []
    for score, label, box in zip(result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist()):
        if label != person or score < min_score:
            continue
        x0, y0 = min(max(box[0], 0.0), width - 1.0), min(max(box[1], 0.0), height - 1.0)
        x1, y1 = min(max(box[2], x0 + 1.0), float(width)), min(max(box[3], y0 + 1.0), float(height))
        boxes.append(([x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0)], score))
    boxes.sort(key=lambda item: -item[1])
    return boxes


# ------------------------------------------------------------------ VitPose
_PADDING = 1.25  # VitPose/mmpose enlarge each box by 25 %


def _size(processor) -> tuple[int, int]:
    size = processor.size
    return int(size["width"]), int(size["height"])


def _center_and_scale(box: Sequence[float], aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """Box [x, y, w, h] -> its centre and the padded region (w, h) in pixels with the model input's aspect ratio."""
    x, y, w, h = (float(v) for v in box[:4])
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float32) * _PADDING


def _crop(image: np.ndarray, center: np.ndarray, region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The padded box warped to the model's input size (UDP warp with rotation 0, bilinear, black outside)."""
    import cv2

    width, height = size
    scale_x, scale_y = (width - 1.0) / region[0], (height - 1.0) / region[1]
    matrix = np.array([[scale_x, 0.0, scale_x * (0.5 * region[0] - center[0])],
                       [0.0, scale_y, scale_y * (0.5 * region[1] - center[1])]], dtype=np.float64)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR)


def _decode(heatmaps: np.ndarray, kernel: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (N, K, h, w) -> keypoints in heatmap pixels (N, K, 2; NaN where no peak) and scores (N, K):
    argmax, then DARK sub-pixel refinement (Gaussian-smoothed log-heatmap, one Newton step)."""
    import cv2

    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    index = flat.argmax(axis=2)
    scores = flat.max(axis=2).astype(np.float64)
    coords = np.stack([index % w, index // w], axis=-1).astype(np.float64)
    radius = (kernel - 1) // 2
    for i in range(n):
        for j in range(k):
            if scores[i, j] <= 0:
                coords[i, j] = np.nan
                continue
            smooth = cv2.GaussianBlur(np.ascontiguousarray(heatmaps[i, j], dtype=np.float32), (2 * radius + 1,) * 2,
                                      sigmaX=0.8, sigmaY=0.8, borderType=cv2.BORDER_REFLECT)
            p = np.pad(np.log(np.clip(smooth.astype(np.float64), 0.001, 50)), 1, mode="edge")
            x, y = int(coords[i, j, 0]) + 1, int(coords[i, j, 1]) + 1
            dx = 0.5 * (p[y, x + 1] - p[y, x - 1])
            dy = 0.5 * (p[y + 1, x] - p[y - 1, x])
            dxx = p[y, x + 1] - 2 * p[y, x] + p[y, x - 1]
            dyy = p[y + 1, x] - 2 * p[y, x] + p[y - 1, x]
            dxy = 0.5 * (p[y + 1, x + 1] - p[y, x + 1] - p[y + 1, x] + 2 * p[y, x] - p[y, x - 1] - p[y - 1, x]
                         + p[y - 1, x - 1])
            hessian = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
            with np.errstate(all="ignore"):
                coords[i, j] -= np.linalg.inv(hessian) @ np.array([dx, dy])
    return coords, scores


def estimate_poses(model, processor, image, boxes: Sequence[Sequence[float]]) -> list[list[Keypoint]]:
    """17 COCO keypoints (x, y, score) in image pixels for each person box [x, y, width, height]."""
    import torch

    if not boxes:
        return []
    size = _size(processor)
    array = np.asarray(image.convert("RGB"))
    regions = [_center_and_scale(box, size[0] / size[1]) for box in boxes]
    crops = [_crop(array, center, region, size) for center, region in regions]
    inputs = processor(images=crops, boxes=None, do_affine_transform=False, return_tensors="pt")
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        heatmaps = model(pixel_values=inputs["pixel_values"].to(model.device, dtype)).heatmaps
    heatmaps = heatmaps.float().cpu().numpy()
    coords, scores = _decode(heatmaps)
    hm_h, hm_w = heatmaps.shape[2:]
    people = []
    for (center, region), points, person_scores in zip(regions, coords, scores):
        xs = points[:, 0] * region[0] / (hm_w - 1.0) + center[0] - region[0] * 0.5
        ys = points[:, 1] * region[1] / (hm_h - 1.0) + center[1] - region[1] * 0.5
        people.append([(float(x), float(y), float(s)) for x, y, s in zip(xs, ys, person_scores)])
    return people


def pose_image(image, pose: tuple[Any, Any], detector: tuple[Any, Any] | None, min_score: float):
    """(skeleton image, info): detect people (or take the whole image as one), estimate and draw their poses.

    info: people (skeletons drawn), boxes_from ("detector" or "whole image"),
    detected (person boxes found, when a detector ran), keypoints (OpenPose
    keypoints drawn, necks included).
    """
    image = image.convert("RGB")
    width, height = image.size
    info: dict[str, Any] = {}
    boxes: list[list[float]] = []
    if detector is not None:
        found = detect_people(*detector, image, min_score)
        info["detected"] = len(found)
        boxes = [box for box, _score in found]
    info["boxes_from"] = "detector" if boxes else "whole image"
    if not boxes:
        boxes = [[0.0, 0.0, float(width), float(height)]]
    people = estimate_poses(*pose, image, boxes)
    info["people"] = len(people)
    info["keypoints"] = count_drawn(people, image.size, min_score)
    return draw_openpose(image.size, people, min_score), info
