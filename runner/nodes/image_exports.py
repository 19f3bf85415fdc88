"""The image nodes as the Pillow / OpenCV / torch lines of an exported script (`runner export`), each one doing what
the node's run function in runner.nodes.images does, in the same order (the parity tests compare the pixels)."""

from __future__ import annotations

GROW_HELPER = '''
def grown(mask, radius):
    """The mask's white area dilated by a (2 radius + 1) square (runner's make_mask `grow`)."""
    pixels = np.asarray(mask)
    distance = cv2.distanceTransform((pixels == 0).astype(np.uint8), cv2.DIST_C, 3)
    result = np.where(distance <= radius, 255, 0).astype(np.uint8)
    if not (pixels > 0).any():
        result[:] = 0
    return Image.fromarray(result, mode="L")
'''

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
    from .images import _box

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
        script.need("import cv2")
        script.need("import numpy as np")
        script.helper("grown", GROW_HELPER)
        script.line(f"{variable} = grown({variable}, {f.grow})")
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
    from .images import RESIZE_METHODS

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
    from .images import LATENT_FACTOR, LATENT_METHODS

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
    import re

    name = f.name or f"{script.node_id}.png"
    if f.image is not None:
        script.line(f"{script.ref(f.image)}.save(OUT / {script.literal(name)})")
        return
    stem = re.sub(r"\.png$", "", name)
    script.line(f"for index, image in enumerate({script.images(f.images)}):")
    script.line(f'    image.save(OUT / f"{stem}_{{index}}.png")')
