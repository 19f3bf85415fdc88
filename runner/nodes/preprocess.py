"""Condition images from vision models: depth and pose (transformers)."""


from typing import Any

from pydantic import Field

from ..language.fields import Fields, ImageIn, model_in
from .base import node_type


class EstimateDepth(Fields):
    image: ImageIn = Field(..., description="image to estimate depth for")
    model: model_in("depth-estimator") = Field("Intel/dpt-hybrid-midas", description="a transformers depth-estimation model (DPT, Depth Anything)")


def export_estimate_depth(script, f: EstimateDepth) -> None:
    from ..models.export_generation import transformers_pipeline

    script.need("from PIL import Image")
    estimator = transformers_pipeline(script, f.model, script.source(f.model), "depth-estimation")
    image = script.image(f.image, "RGB")
    if image.endswith(")"):
        script.line(f"start = {image}")
        image = "start"
    depth = script.output("depth", "L")
    script.line(f'{depth} = {estimator}({image})["depth"]')
    script.line(f"if {depth}.size != {image}.size:")
    script.line(f"    {depth} = {depth}.resize({image}.size, Image.Resampling.BICUBIC)")
    script.line(f'{depth} = {depth}.convert("L")  # near = bright')


@node_type("estimate_depth", fields=EstimateDepth, outputs={"depth": "depth"}, export=export_estimate_depth)
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
    model: model_in("pose-estimator") = Field("usyd-community/vitpose-base-simple",
                           description="a transformers VitPose model (VitPoseForPoseEstimation): 17 COCO keypoints per person box")
    detector: model_in("object-detector") | None = Field(
        "PekingU/rtdetr_r50vd_coco_o365",
        description="person detector giving the boxes (a transformers object-detection model such as RT-DETR; class "
                    "'person'); null: the whole image is one person box. When it finds no person above min_score, "
                    "the whole image is used too (recorded as boxes_from: whole image)")
    min_score: float = Field(0.3, ge=0, le=1, description="drop person detections and keypoints below this confidence")


def export_detect_pose(script, f: DetectPose) -> None:
    from ..models.export_generation import export_detect_pose as write

    write(script, f)


@node_type("detect_pose", fields=DetectPose, outputs={"image": "image"}, export=export_detect_pose)
def detect_pose(ctx, f: DetectPose, inputs=None) -> dict[str, Any]:
    """OpenPose-style skeleton image for pose ControlNets (person boxes, then VitPose keypoints), at the input's size."""
    from ..models.pose import person_detector, pose_estimator, pose_image

    image = ctx.load(f.image).convert("RGB")
    pose = pose_estimator(ctx.models, *ctx.source(f.model))
    detector = person_detector(ctx.models, *ctx.source(f.detector)) if f.detector is not None else None
    skeleton, info = pose_image(image, pose, detector, f.min_score)
    ctx.record(**info)
    return {"image": skeleton}
