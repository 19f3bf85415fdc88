"""Nodes over plain images: load, mask, edges, grid, resize, save. Pillow and OpenCV only, no models."""


import math
import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ..core.empty import empty_list
from ..language.fields import (
    Fields,
    FilePath,
    ImageIn,
    ImagesIn,
    KeyedWhenSet,
    LatentsIn,
    MaskIn,
    model_in,
    RunFolderFile,
    Seed,
    Size,
)
from ..language.errors import Invalid, exactly_one
from ..core.limits import LIMITS, env_limit, pixels as shown_pixels
from .base import node_type

URL_TIMEOUT_S = 30  # connecting, and each wait for data
URL_DEADLINE_S = 120  # the whole download
URL_MAX_BYTES = 64 * 1024 * 1024
URL_MAX_REDIRECTS = 5
# the largest image a grid or upscale node makes, in pixels (RUNNER_MAX_PIXELS overrides; 8192 x 8192 by default)
MAX_OUTPUT_PIXELS = LIMITS["RUNNER_MAX_PIXELS"][0]  # read at each use (runner.core.limits)
# the largest image load_image decodes (RUNNER_MAX_INPUT_PIXELS overrides; 8192 x 8192 by default, so that what runner
# makes loads back): checked from the file's header before any pixel is decoded. Pillow's own guard (a warning above
# 89 MP, an error above 179 MP) would let a 13000 x 13000 image (169 MP, 0.5 GB decoded) through.
MAX_INPUT_PIXELS = LIMITS["RUNNER_MAX_INPUT_PIXELS"][0]  # read at each use (runner.core.limits)


# ------------------------------------------------- export (`runner export`)
# Each image node as the Pillow / OpenCV / torch lines of an exported script, doing what its run function below does,
# in the same order (the export tests compare the pixels).
GRID_HELPER = '''
def image_grid(images, rows, cols, gap):
    """A contact sheet, cells sized like the first image, `gap` black pixels between them (runner's grid node)."""
    width, height = images[0].size
    sheet = Image.new("RGB", (cols * width + (cols - 1) * gap, rows * height + (rows - 1) * gap))
    for index, image in enumerate(images):
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        row, col = divmod(index, cols)
        sheet.paste(image, (col * (width + gap), row * (height + gap)))
    return sheet
'''


def export_load_image(script, f) -> None:
    script.need("from PIL import Image, ImageOps")
    variable = script.output("image", f.mode)
    if f.path is not None:
        script.line(f"{variable} = Image.open(WORKFLOW_DIR / {script.literal(f.path)})")
    else:
        script.need("import io")
        script.need("import urllib.request")
        script.line(f"with urllib.request.urlopen({script.literal(f.url)}, timeout=30) as response:")
        script.line(f"    {variable} = Image.open(io.BytesIO(response.read()))")
    script.line(f'{variable} = ImageOps.exif_transpose({variable}).convert("{f.mode}")  # upright, as runner reads images')
    if f.size is not None:
        script.line(f"{variable} = {variable}.resize({script.expr('size', value=tuple(f.size))}, Image.Resampling.LANCZOS)")


def export_make_mask(script, f) -> None:
    script.need("from PIL import Image, ImageDraw")
    variable = script.output("mask", "L")
    if f.from_ is not None:
        source = script.ref(f.from_)
        if f.channel == "luminance":
            base = f'{source}.convert("L")'
        else:
            script.line(f'alpha = {source}.getchannel("A") if "A" in {source}.getbands() else '
                        f'{source}.convert("RGBA").getchannel("A")')
            base = "alpha" if f.channel == "alpha" else "alpha.point(lambda v: 255 - v)"
        script.line(f"{variable} = {base}.point(lambda v: 255 if v >= {f.threshold} else 0)")
    else:
        size = script.expr("size", value=tuple(f.size)) if f.size is not None else f"{script.ref(f.like)}.size"
        script.line(f'{variable} = Image.new("L", {size}, 0)')
    if f.shapes:
        script.line(f"draw = ImageDraw.Draw({variable})")
        for shape in f.shapes:
            if shape.rect is not None:
                script.line(f"draw.rectangle({script.literal(_box(shape.rect))}, fill=255)")
            elif shape.ellipse is not None:
                script.line(f"draw.ellipse({script.literal(_box(shape.ellipse))}, fill=255)")
            else:
                script.line(f"draw.polygon({script.literal([tuple(p) for p in shape.polygon])}, fill=255)")
    if f.grow:
        script.line(f"{variable} = {script.function(_grown)}({variable}, {f.grow})")
    if f.invert:
        script.line(f"{variable} = {variable}.point(lambda v: 255 - v)")
    if f.blur:
        script.need("from PIL import ImageFilter")
        script.line(f"{variable} = {variable}.filter(ImageFilter.GaussianBlur({script.literal(f.blur)}))")


def export_canny(script, f) -> None:
    script.need("import cv2")
    script.need("import numpy as np")
    script.need("from PIL import Image")
    source = script.image(f.image, "L")
    variable = script.output("image", "RGB")
    script.line(f"edges = cv2.Canny(np.asarray({source}), {script.expr('low')}, {script.expr('high')})")
    script.line(f"{variable} = Image.fromarray(np.stack([edges] * 3, axis=-1))  # white edges on black, 3 channels")


def export_grid(script, f) -> None:
    script.need("from PIL import Image")
    script.helper("image_grid", GRID_HELPER)
    images = script.images(f.images)
    variable = script.output("image", "RGB")
    if f.rows and f.cols:
        rows, cols = str(f.rows), str(f.cols)
        script.line(f"{variable} = image_grid({images}, rows={rows}, cols={cols}, gap={f.gap})")
        return
    script.need("import math")
    script.line(f"cells = {images}")
    if f.rows:
        script.line(f"cols = math.ceil(len(cells) / {f.rows})")
        script.line(f"{variable} = image_grid(cells, rows={f.rows}, cols=cols, gap={f.gap})")
    elif f.cols:
        script.line(f"{variable} = image_grid(cells, rows=math.ceil(len(cells) / {f.cols}), cols={f.cols}, gap={f.gap})")
    else:
        script.line("cols = math.ceil(math.sqrt(len(cells)))  # as square as possible")
        script.line(f"{variable} = image_grid(cells, rows=math.ceil(len(cells) / cols), cols=cols, gap={f.gap})")


def export_upscale(script, f) -> None:
    script.need("from PIL import Image")
    source = script.image(f.image, "RGB")
    resample = f"Image.Resampling.{RESIZE_METHODS[f.method]}"
    if f.model is not None:
        from ..models.export_generation import export_upscaler

        if source.endswith(")"):  # converted: once
            script.line(f"start = {source}")
            source = "start"
        upscaled = export_upscaler(script, f, source)
        variable = script.output("image", "RGB")
        script.line(f"{variable} = {upscaled}")
        if f.scale is not None:
            scale = script.expr("scale")
            script.line(f"size = (max(1, round({source}.width * {scale})), max(1, round({source}.height * {scale})))")
            script.line(f"if {variable}.size != size:  # the upscaler's own factor, resized to `scale`")
            script.line(f"    {variable} = {variable}.resize(size, {resample})")
        return
    variable = script.output("image", "RGB")
    if f.size is not None:
        size = script.expr("size", value=tuple(f.size))
    else:
        scale = script.expr("scale") if f.scale is not None else "2.0"
        if source.endswith(")"):  # converted: once
            script.line(f"start = {source}")
            source = "start"
        size = f"(max(1, round({source}.width * {scale})), max(1, round({source}.height * {scale})))"
    script.line(f"{variable} = {source}.resize({size}, {resample})")


def export_upscale_latents(script, f) -> None:
    source = script.ref(f.latents)
    variable = script.output("latents")
    if f.size is not None:
        size = f"({f.size[1] // LATENT_FACTOR}, {f.size[0] // LATENT_FACTOR})  # the latents of a {f.size[0]} x {f.size[1]} image"
        script.line(f"size = {size}")
    else:
        scale = script.expr("scale") if f.scale is not None else "2.0"
        script.line(f"size = (max(1, round({source}.shape[-2] * {scale})), max(1, round({source}.shape[-1] * {scale})))")
    script.line(f"{variable} = torch.nn.functional.interpolate({source}.float(), size=size, "
                f"mode={script.literal(LATENT_METHODS[f.method])}).to({source}.dtype)")


def export_save_image(script, f) -> None:

    name = f.name or f"{script.node_id}.png"
    if f.image is not None:
        script.line(f"{script.ref(f.image)}.save(OUT / {script.literal(name)})")
        return
    stem = re.sub(r"\.png$", "", name)
    script.line(f"for index, image in enumerate({script.images(f.images)}):")
    script.line(f'    image.save(OUT / f"{stem}_{{index}}.png")')


# ---------------------------------------------------------------- load_image
class LoadImage(Fields):
    path: FilePath | None = Field(None, description="image file, relative to the workflow file's folder (and inside it, "
                                                    "unless --allow-path allows another folder)")
    url: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        None, description=f"http(s) URL of a public address (timeout {URL_TIMEOUT_S} s per wait, {URL_DEADLINE_S} s in all, at most "
                         f"{URL_MAX_BYTES >> 20} MiB and {URL_MAX_REDIRECTS} redirects); assumed immutable for caching"
    )
    size: Size | None = Field(None, description="resize to [width, height] (Lanczos); default: keep the file's size")
    mode: Literal["RGB", "RGBA", "L"] = Field("RGB", description="colour mode after loading")

    @model_validator(mode="after")
    def _one_source(self):
        exactly_one({"path": self.path, "url": self.url})
        if self.url is not None:
            from urllib.parse import urlsplit

            if any(ord(c) < 33 or ord(c) == 127 for c in self.url):
                raise Invalid(f"the URL {self.url!r} contains a space or a control character",
                              "escape it as a browser does (a space is %20)")
            try:
                parts = urlsplit(self.url)
                port = parts.port
            except ValueError:
                raise Invalid(f"the port in {self.url} is out of range", "ports are 1-65535: fix the number after the ':'") from None
            if port == 0:
                raise Invalid(f"the port in {self.url} is 0, which no server listens on",
                              "ports are 1-65535: fix the number after the ':', or leave it out (80, 443)")
            if not parts.hostname:
                raise Invalid(f"the URL {self.url} names no host", "write it as http(s)://HOST/PATH, e.g. "
                                                                   "https://example.com/photo.png")
        return self


@node_type("load_image", fields=LoadImage, outputs={"image": "image"}, export=export_load_image)
def load_image(ctx, f: LoadImage, inputs=None) -> dict[str, Any]:
    """Read an image file or http(s) URL, upright (EXIF orientation applied), optionally resized."""
    from PIL import Image, ImageOps

    if f.path is not None:
        image = open_image(_planned_bytes(ctx, f.path), f.path)
    else:
        image = open_image(_fetch(f.url, ctx.task.allow_private_urls), f.url)
    image = ImageOps.exif_transpose(image).convert(f.mode)
    if f.size is not None and tuple(image.size) != tuple(f.size):
        image = image.resize(tuple(f.size), Image.Resampling.LANCZOS)
    return {"image": image}


def open_image(data: bytes, what: str):
    """The image in `data`, refused (a NodeInputError, before any pixel is decoded) above MAX_INPUT_PIXELS."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    from ..models.calls import NodeInputError

    fix = "make it smaller, or raise RUNNER_MAX_INPUT_PIXELS"
    limit = env_limit("RUNNER_MAX_INPUT_PIXELS", MAX_INPUT_PIXELS)
    try:
        with warnings.catch_warnings():  # the bound below is the one that counts; Pillow's warning would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # beyond even Pillow's own bound: it says how many pixels, not the size
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)) / 1e6:.0f} MP" if pixels else "too large"
        raise NodeInputError(f"{what} is {size}, more than the limit of {shown_pixels(limit)} for an input "
                             f"image: {fix}") from None
    except UnidentifiedImageError:
        raise NodeInputError(f"{what} is not an image Pillow can read") from None
    width, height = image.size
    if width * height > limit:
        raise NodeInputError(f"{what} is {width} x {height} = {shown_pixels(width * height)}, more than the limit of "
                             f"{shown_pixels(limit)} for an input image: {fix}")
    return image


def _planned_bytes(ctx, relative: str) -> bytes:
    """The file's bytes, read once: the ones decoded are the ones whose sha256 made the cache key (a file replaced
    between planning and running would otherwise be cached and published under the old file's key). Read by the
    rules of runner.core.input_files: a FIFO or device swapped in after planning is refused, not waited on."""
    import hashlib

    from ..core.input_files import read_input

    data = read_input(ctx.base_dir / relative, relative)
    planned = ctx.task.files.get(relative)
    if planned is not None and hashlib.sha256(data).hexdigest() != planned:
        from ..models.calls import NodeInputError

        raise NodeInputError(f"{relative} changed after the run was planned (its content is not the one the cache key "
                             "was computed from); nothing was stored: run again to use the new file")
    return data


def _fetch(url: str, allow_private: bool | list[str] = False) -> bytes:
    """The URL's bytes, by the limits above, from public addresses only unless `allow_private` (see url_fetch)."""
    from .url_fetch import fetch

    return fetch(url, allow=allow_private, timeout=URL_TIMEOUT_S, deadline=URL_DEADLINE_S, max_bytes=URL_MAX_BYTES,
                 max_redirects=URL_MAX_REDIRECTS)


# ----------------------------------------------------------------- make_mask
class Shape(Fields):
    rect: tuple[float, float, float, float] | None = Field(None, description="[x0, y0, x1, y1] in pixels")
    ellipse: tuple[float, float, float, float] | None = Field(None, description="bounding box [x0, y0, x1, y1]")
    polygon: list[tuple[float, float]] | None = Field(None, min_length=3, description="[[x, y], ...] points")

    @model_validator(mode="after")
    def _one_shape(self):
        exactly_one({"rect": self.rect, "ellipse": self.ellipse, "polygon": self.polygon},
                    "a shape is exactly one of rect, ellipse or polygon")
        return self


class MakeMask(Fields):
    like: ImageIn | None = Field(None, description="take the size from this image")
    size: Size | None = Field(None, description="[width, height] of the mask")
    from_: MaskIn | None = Field(None, alias="from", description="threshold this image into a mask")
    threshold: int = Field(128, ge=0, le=255, description="with 'from': pixels at or above become white")
    channel: Literal["luminance", "alpha", "transparency"] = Field(
        "luminance", description="with 'from': what is thresholded: the grey value, the opacity (alpha), or "
                                 "255 - alpha (transparent = repaint, as ComfyUI's LoadImage MASK; load the image with "
                                 "mode: RGBA)")
    shapes: list[Shape] = Field(default_factory=empty_list, description="white shapes drawn on black")
    invert: bool = Field(False, description="swap white and black")
    grow: int = Field(0, ge=0, le=512, description="dilate the white area by this many pixels")
    blur: float = Field(0, ge=0, le=256, description="Gaussian blur radius for soft edges")

    @model_validator(mode="after")
    def _one_base(self):
        exactly_one({"like": self.like, "size": self.size, "from": self.from_})
        if self.channel != "luminance" and self.from_ is None:
            raise Invalid("'channel' applies to 'from' only", "remove 'channel', or make the mask from an image with 'from'")
        return self


@node_type("make_mask", fields=MakeMask, outputs={"mask": "mask"}, export=export_make_mask)
def make_mask(ctx, f: MakeMask, inputs=None) -> dict[str, Any]:
    """A one-channel mask: white = repaint, black = keep."""
    from PIL import Image, ImageDraw, ImageFilter

    if f.from_ is not None:
        source = _mask_source(ctx.load(f.from_), f.channel)
        mask = source.point(lambda v: 255 if v >= f.threshold else 0)
    else:
        size = tuple(f.size) if f.size is not None else ctx.load(f.like).size
        mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for shape in f.shapes:
        if shape.rect is not None:
            draw.rectangle(_box(shape.rect), fill=255)
        elif shape.ellipse is not None:
            draw.ellipse(_box(shape.ellipse), fill=255)
        else:
            draw.polygon([tuple(p) for p in shape.polygon], fill=255)
    if f.grow:
        mask = _grown(mask, f.grow)
    if f.invert:
        mask = mask.point(lambda v: 255 - v)
    if f.blur:
        mask = mask.filter(ImageFilter.GaussianBlur(f.blur))
    coverage = mask_coverage(mask)
    if coverage in ("empty", "full"):
        ctx.warn(_mask_warning(coverage, mask.size, f))
    return {"mask": mask}


def _mask_source(image, channel: str):
    """The one-channel image that `from` thresholds: grey value, opacity, or transparency (255 - opacity).
    An image without alpha is fully opaque."""
    if channel == "luminance":
        return image.convert("L")
    alpha = image.getchannel("A") if "A" in image.getbands() else image.convert("RGBA").getchannel("A")
    return alpha if channel == "alpha" else alpha.point(lambda v: 255 - v)


REPAINT_LEVEL = 128  # diffusers' inpaint pipelines binarise the mask at 0.5: at or above it a pixel is repainted


def mask_coverage(mask) -> str:
    """'empty' (no pixel is repainted), 'full' (every pixel is) or 'partial', as diffusers' inpainting reads the mask."""
    histogram = mask.convert("L").histogram()
    white = sum(histogram[REPAINT_LEVEL:])
    return "empty" if white == 0 else "full" if white == sum(histogram) else "partial"


def _mask_warning(coverage: str, size: tuple[int, int], f: MakeMask) -> str:
    width, height = size
    outside = [(index, shape) for index, shape in enumerate(f.shapes) if not _overlaps(shape, width, height)]
    if coverage == "empty":
        if f.shapes and len(outside) == len(f.shapes):
            index, shape = outside[0]
            kind, values = next((k, v) for k, v in (("rect", shape.rect), ("ellipse", shape.ellipse),
                                                    ("polygon", shape.polygon)) if v is not None)
            why = (f"shapes[{index}] ({kind} {_coordinates(values)}) lies outside the {width} x {height} image"
                   + (" (and so do the others)" if len(f.shapes) > 1 else ""))
            fix = f"shapes are in pixels of the mask, from [0, 0] to [{width}, {height}]: move them inside"
        elif not f.shapes and f.from_ is None:
            why, fix = "it has no shapes", "add shapes (white = repaint), e.g. shapes: [{rect: [x0, y0, x1, y1]}]"
        elif f.from_ is not None:
            why, fix = (f"no pixel of 'from' ({f.channel}) reaches the threshold {f.threshold}",
                        "lower 'threshold', or check 'channel' (an image without transparency is opaque everywhere)")
        else:
            why, fix = (f"no pixel reaches half white ({REPAINT_LEVEL}), where diffusers' inpainting starts to repaint",
                        "make the shapes larger or the blur smaller")
        return (f"the mask is all black: {why}, so an inpaint with it repaints nothing (and still runs every "
                f"step); {fix}")
    why = "'invert' turned an empty mask white" if f.invert else "every pixel is white"
    return (f"the mask is all white ({why}), so an inpaint with it repaints the whole image and keeps nothing; "
            "if that is meant, img2img or txt2img says so more plainly")


def _coordinates(values) -> str:
    """[300, 80, 480, 260] as written (YAML integers arrive as floats), [[x, y], ...] for a polygon."""
    if values and isinstance(values[0], (list, tuple)):
        return "[" + ", ".join(_coordinates(point) for point in values) + "]"
    return "[" + ", ".join(f"{value:g}" for value in values) + "]"


def _overlaps(shape: Shape, width: int, height: int) -> bool:
    """True when the shape's bounding box reaches into the image."""
    if shape.polygon is not None:
        xs, ys = [p[0] for p in shape.polygon], [p[1] for p in shape.polygon]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    else:
        x0, y0, x1, y1 = _box(shape.rect if shape.rect is not None else shape.ellipse)
    return x1 >= 0 and y1 >= 0 and x0 < width and y0 < height


def _grown(mask, radius: int):
    """The white area dilated by a (2 radius + 1) square, as ImageFilter.MaxFilter makes it of a black and white mask,
    in time independent of the radius: white where the chessboard distance to the nearest white pixel <= radius."""
    import cv2
    import numpy as np
    from PIL import Image

    pixels = np.asarray(mask)
    distance = cv2.distanceTransform((pixels == 0).astype(np.uint8), cv2.DIST_C, 3)
    grown = np.where(distance <= radius, 255, 0).astype(np.uint8)
    if not (pixels > 0).any():
        grown[:] = 0
    return Image.fromarray(grown, mode="L")


def check_output_size(width: int, height: int, what: str) -> None:
    """Refuse an output image above MAX_OUTPUT_PIXELS before it is allocated."""
    limit = env_limit("RUNNER_MAX_PIXELS", MAX_OUTPUT_PIXELS)
    if width * height > limit:
        from ..models.calls import NodeInputError

        raise NodeInputError(f"{what} would be {width} x {height} = {shown_pixels(width * height)}, more than the limit of "
                             f"{shown_pixels(limit)}: make it smaller, or raise RUNNER_MAX_PIXELS")


def _box(values) -> list[float]:
    x0, y0, x1, y1 = values
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


# --------------------------------------------------------------------- canny
class Canny(Fields):
    image: ImageIn = Field(..., description="image to find edges in")
    low: int = Field(100, ge=0, le=1000, description="lower hysteresis threshold")
    high: int = Field(200, ge=0, le=1000, description="upper hysteresis threshold")


@node_type("canny", fields=Canny, outputs={"image": "image"}, export=export_canny)
def canny(ctx, f: Canny, inputs=None) -> dict[str, Any]:
    """Canny edge map (white edges on black, 3 channels) for edge ControlNets."""
    import cv2
    import numpy as np
    from PIL import Image

    gray = np.asarray(ctx.load(f.image).convert("L"))
    edges = cv2.Canny(gray, f.low, f.high)
    return {"image": Image.fromarray(np.stack([edges] * 3, axis=-1))}


# ---------------------------------------------------------------------- grid
class Grid(Fields):
    images: ImagesIn = Field(..., description="an images output, or a list of image links")
    rows: int | None = Field(None, ge=1, le=64, description="default: as square as possible")
    cols: int | None = Field(None, ge=1, le=64, description="default: as square as possible")
    gap: int = Field(0, ge=0, le=256, description="pixels between cells (black)")


@node_type("grid", fields=Grid, outputs={"image": "image"}, export=export_grid)
def grid(ctx, f: Grid, inputs=None) -> dict[str, Any]:
    """Side-by-side contact sheet of several images (cells sized like the first image)."""
    from PIL import Image

    count = ctx.count_many(f.images)
    cols = f.cols or (math.ceil(count / f.rows) if f.rows else math.ceil(math.sqrt(count)))
    rows = f.rows or math.ceil(count / cols)
    if rows * cols < count:
        raise ValueError(f"{rows} rows x {cols} cols hold {rows * cols} images, but {count} were given")
    first = f.images[0] if isinstance(f.images, list) else f.images
    loaded = ctx.load(first)
    width, height = (loaded[0] if isinstance(loaded, list) else loaded).size
    del loaded
    # the sheet's size is known from the count and the first image: refuse it before the other images are decoded
    check_output_size(cols * width + (cols - 1) * f.gap, rows * height + (rows - 1) * f.gap, f"a {rows} x {cols} grid")
    images = [im.convert("RGB") for im in ctx.load_many(f.images)]
    sheet = Image.new("RGB", (cols * width + (cols - 1) * f.gap, rows * height + (rows - 1) * f.gap))
    for index, image in enumerate(images):
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        row, col = divmod(index, cols)
        sheet.paste(image, (col * (width + f.gap), row * (height + f.gap)))
    return {"image": sheet}


# ------------------------------------------------------------------- upscale
# Pillow's resampling filters by the names ComfyUI's ImageScale uses (lanczos is runner's default)
RESIZE_METHODS = {"lanczos": "LANCZOS", "bicubic": "BICUBIC", "bilinear": "BILINEAR", "nearest-exact": "NEAREST",
                  "area": "BOX"}


class Upscale(Fields):
    image: ImageIn = Field(..., description="image to enlarge")
    scale: float | None = Field(None, gt=0, le=8, description="size factor; default 2 for a resize, the model's own "
                                                                "factor (x4) with a model; otherwise the model's output is resized")
    size: Annotated[Size | None, KeyedWhenSet()] = Field(None, description="the size to resize to, [width, height], "
                                                                         "instead of a scale (a resize only)")
    method: Annotated[Literal["lanczos", "bicubic", "bilinear", "nearest-exact", "area"], KeyedWhenSet()] = Field(
        "lanczos", description="resampling filter of a resize (and of resizing a model's output to `scale`): Pillow's "
                               "LANCZOS, BICUBIC, BILINEAR, NEAREST, BOX")
    model: model_in("upscaler") | None = Field(None, description="diffusion upscaler (e.g. stabilityai/stable-diffusion-x4-upscaler); "
                                                    "default: Lanczos resize")
    prompt: str = Field("", description="prompt for a diffusion upscaler")
    steps: int | None = Field(None, ge=1, le=1000, description="denoising steps for a diffusion upscaler; default: the pipeline's")
    noise_level: int | None = Field(None, ge=0, le=1000, description="noise added to the input (x4 upscaler); default: the pipeline's")
    seed: Seed | None = Field(None, description="noise seed for a diffusion upscaler; default: derived from the workflow seed")


    @model_validator(mode="after")
    def _scale_or_size(self):
        if self.size is not None and self.scale is not None:
            raise Invalid("give either scale or size, not both", "remove one of them")
        if self.size is not None and self.model is not None:
            raise Invalid("size is for a resize; a diffusion upscaler enlarges by its own factor",
                          "give scale (its output is resized to that factor), or remove model")
        return self


def _upscale_check(fields: Upscale, context) -> list:
    """A diffusion upscaler takes its prompt as text: weights under prompt_syntax: weighted would reach it as text."""
    from ..models.prompt_weights import is_weighted

    if context.prompt_syntax == "weighted" and fields.model is not None and is_weighted(fields.prompt):
        return [(("prompt",), "prompt_syntax: weighted, and a diffusion upscaler takes no weighted prompts in this "
                              "version of runner", "remove the weights from this prompt")]
    return []


@node_type("upscale", fields=Upscale, outputs={"image": "image"}, check=_upscale_check, export=export_upscale)
def upscale(ctx, f: Upscale, inputs=None) -> dict[str, Any]:
    """Enlarge an image: a resize (Lanczos by default), or a diffusion upscaler when `model` is given."""
    from PIL import Image

    image = ctx.load(f.image).convert("RGB")
    resample = getattr(Image.Resampling, RESIZE_METHODS[f.method])
    if f.model is None:
        if f.size is not None:
            size = tuple(f.size)
            check_output_size(*size, f"the image resized to {size[0]} x {size[1]}")
        else:
            scale = f.scale or 2.0
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            check_output_size(*size, f"the image upscaled x{scale:g}")
        return {"image": image.resize(size, resample)}
    from ..models.upscale import diffusion_upscale

    if f.scale is not None:
        check_output_size(round(image.width * f.scale), round(image.height * f.scale), f"the image upscaled x{f.scale:g}")
    result = diffusion_upscale(ctx, f, image)
    if f.scale is not None:
        size = (max(1, round(image.width * f.scale)), max(1, round(image.height * f.scale)))
        if result.size != size:
            ctx.record(resized_from=list(result.size))
            result = result.resize(size, resample)
    return {"image": result}


# ------------------------------------------------------------ upscale_latents
# torch's interpolation modes by the names ComfyUI's LatentUpscale uses
LATENT_METHODS = {"nearest-exact": "nearest-exact", "bilinear": "bilinear", "bicubic": "bicubic", "area": "area"}
LATENT_FACTOR = 8  # pixels per latent cell in the families that hand latents on (SD 1.x/2.x, SDXL)


class UpscaleLatents(Fields):
    latents: LatentsIn = Field(..., description="latents of a generation node ($node.latents)")
    scale: float | None = Field(None, gt=0, le=8, description="size factor (default 2, without size)")
    size: Size | None = Field(None, description=f"the image size the latents will decode to, [width, height] in pixels "
                                                f"(multiples of {LATENT_FACTOR}: latents are 1/{LATENT_FACTOR} of the "
                                                "image in SD and SDXL), instead of a scale")
    method: Literal["nearest-exact", "bilinear", "bicubic", "area"] = Field(
        "nearest-exact", description="torch.nn.functional.interpolate mode (ComfyUI's LatentUpscale default: nearest-exact)")

    @model_validator(mode="after")
    def _scale_or_size(self):
        if self.size is not None and self.scale is not None:
            raise Invalid("give either scale or size, not both", "remove one of them")
        if self.size is not None and any(side % LATENT_FACTOR for side in self.size):
            raise Invalid(f"size {list(self.size)}: latents are 1/{LATENT_FACTOR} of the image, so both sides must be "
                          f"multiples of {LATENT_FACTOR}",
                          f"use e.g. [{round(self.size[0] / 8) * 8 or 8}, {round(self.size[1] / 8) * 8 or 8}]")
        return self


@node_type("upscale_latents", fields=UpscaleLatents, outputs={"latents": "latents"}, export=export_upscale_latents)
def upscale_latents(ctx, f: UpscaleLatents, inputs=None) -> dict[str, Any]:
    """Enlarge latents for a second pass, without a decode (the latent hires fix, as ComfyUI's LatentUpscale)."""
    import torch

    latents = ctx.load(f.latents)
    height, width = latents.shape[-2:]
    if f.size is not None:
        target = (f.size[1] // LATENT_FACTOR, f.size[0] // LATENT_FACTOR)
    else:
        scale = f.scale or 2.0
        target = (max(1, round(height * scale)), max(1, round(width * scale)))
    check_output_size(target[1] * LATENT_FACTOR, target[0] * LATENT_FACTOR, "the upscaled latents' image")
    ctx.record(latent_size=[int(target[1]), int(target[0])], from_latent_size=[int(width), int(height)])
    with torch.inference_mode():
        upscaled = torch.nn.functional.interpolate(latents.float(), size=target, mode=LATENT_METHODS[f.method])
    return {"latents": upscaled.to(latents.dtype)}


# ---------------------------------------------------------------- save_image
SAFE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.png$"
SAVE_NAME_MAX = 100  # file systems allow 255 bytes; a series adds _N


class SaveImage(Fields):
    image: ImageIn | None = Field(None, description="the image to save")
    images: ImagesIn | None = Field(None, description="several images: saved as NAME_0.png, NAME_1.png, ...")
    name: Annotated[str, Field(pattern=SAFE_NAME, max_length=SAVE_NAME_MAX)] | None = Field(
        None, description=f"file name in the run folder (.png, no folders, at most {SAVE_NAME_MAX} characters); "
                          "default: NODE_ID.png"
    )

    @model_validator(mode="after")
    def _one_input(self):
        exactly_one({"image": self.image, "images": self.images})
        return self


def publish_save_image(ctx, f: SaveImage) -> list[str]:
    """Write the PNG(s) into the run folder, with the resolved workflow and seeds as text chunks."""
    name = f.name or f"{ctx.node_id}.png"
    if f.image is not None:
        return [ctx.publish_png(f.image, name)]
    stem = re.sub(r"\.png$", "", name)
    return [ctx.publish_png(source, f"{stem}_{i}.png") for i, source in enumerate(ctx.image_sources(f.images))]


def save_image_writes(f: SaveImage, node_id: str) -> list[RunFolderFile]:
    """What publish_save_image writes, as validation sees it (two nodes may not write the same file)."""
    return [RunFolderFile(f.name or f"{node_id}.png", numbered=f.images is not None, field=("name",) if f.name else ())]


@node_type("save_image", fields=SaveImage, outputs={}, publish=publish_save_image, writes=save_image_writes, export=export_save_image)
def save_image(ctx, f: SaveImage, inputs=None) -> dict[str, Any]:
    """Write images into the run folder as PNG with metadata (workflow, seeds) embedded."""
    return {}
