"""Condition images from vision models: depth and pose (transformers)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import node_type
from .fields import Fields, ImageIn, ModelIn


class EstimateDepth(Fields):
    image: ImageIn = Field(..., description="image to estimate depth for")
    model: ModelIn = Field("Intel/dpt-hybrid-midas", description="a transformers depth-estimation model (DPT, Depth Anything)")


@node_type("estimate_depth", fields=EstimateDepth, outputs={"depth": "depth"})
def estimate_depth(ctx, f: EstimateDepth, inputs=None) -> dict[str, Any]:
    """Monocular depth map (near = bright) from a transformers depth-estimation model, at the input's size."""
    image = ctx.load(f.image).convert("RGB")
    estimator = ctx.models.depth_estimator(*ctx.source(f.model))
    depth = estimator(image)["depth"]
    if depth.size != image.size:
        from PIL import Image

        depth = depth.resize(image.size, Image.Resampling.BICUBIC)
    return {"depth": depth.convert("L")}


class DetectPose(Fields):
    image: ImageIn = Field(..., description="photo with people")
    model: ModelIn = Field("usyd-community/vitpose-base-simple", description="a transformers pose model (VitPose)")
    detector: ModelIn = Field("PekingU/rtdetr_r50vd_coco_o365", description="person detector giving the boxes")
    min_score: float = Field(0.3, ge=0, le=1, description="drop detections and keypoints below this confidence")


@node_type("detect_pose", fields=DetectPose, outputs={"image": "image"})
def detect_pose(ctx, f: DetectPose, inputs=None) -> dict[str, Any]:
    """OpenPose-style skeleton image for pose ControlNets."""
    raise NotImplementedError("detect_pose does not execute yet in this version of runner; load a pose image with load_image instead")
