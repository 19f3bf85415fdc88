"""Image nodes (no models) through `runner run`: load (file, URL), masks, canny, grid, upscale, save."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import write_workflow, WORKFLOWS, latest_run, manifest, run_cli, statuses


LOCAL = ("--allow-private-urls",)  # the test server is on 127.0.0.1, which load_image refuses by default


def run_nodes(tmp_path: Path, nodes_yaml: str, *extra: str) -> tuple[int, Path | None]:
    workflow = write_workflow(tmp_path, "images.yaml", "version: 1\nnodes:\n" + nodes_yaml)
    code = run_cli("run", workflow, "--out", tmp_path / "out", "--plain", *extra)
    out = tmp_path / "out" / "images"
    return code, (latest_run(tmp_path / "out", "images") if out.exists() else None)


def test_masks_shapes_threshold_invert_grow_blur(tmp_path):
    code, run_dir = run_nodes(tmp_path, """
  photo: {type: load_image, path: in.png, size: [64, 48]}
  boxes: {type: make_mask, like: $photo, shapes: [{rect: [0, 0, 10, 10]}, {ellipse: [40, 20, 60, 40]}, {polygon: [[20, 40], [30, 30], [40, 40]]}]}
  grown: {type: make_mask, size: [64, 48], shapes: [{rect: [30, 20, 31, 21]}], grow: 3}
  bright: {type: make_mask, from: $photo, threshold: 200}
  inverted: {type: make_mask, like: $photo, shapes: [{rect: [0, 0, 10, 10]}], invert: true, blur: 2}
  s1: {type: save_image, image: $boxes}
  s2: {type: save_image, image: $grown}
  s3: {type: save_image, image: $bright}
  s4: {type: save_image, image: $inverted}
""")
    assert code == 0
    boxes = Image.open(run_dir / "s1.png")
    assert boxes.mode == "L" and boxes.size == (64, 48)
    assert boxes.getpixel((5, 5)) == 255 and boxes.getpixel((50, 30)) == 255 and boxes.getpixel((30, 10)) == 0
    grown = Image.open(run_dir / "s2.png")
    assert grown.getpixel((27, 17)) == 255 and grown.getpixel((25, 17)) == 0
    bright = Image.open(run_dir / "s3.png")
    assert set(bright.getdata()) <= {0, 255}
    inverted = Image.open(run_dir / "s4.png")
    assert inverted.getpixel((2, 2)) < 50 and inverted.getpixel((50, 40)) == 255 and 0 < inverted.getpixel((11, 5)) < 255


def test_masks_from_the_alpha_channel(tmp_path, capsys):
    """channel: alpha thresholds the opacity, transparency 255 - opacity (ComfyUI's LoadImage MASK: transparent =
    repaint); an image loaded without alpha is opaque everywhere."""
    pixels = Image.new("RGBA", (32, 32), (200, 200, 200, 255))
    for x in range(8, 16):
        for y in range(4, 12):
            pixels.putpixel((x, y), (10, 10, 10, 0 if x < 12 else 127))
    pixels.save(tmp_path / "cut.png")
    code, run_dir = run_nodes(tmp_path, """
  rgba: {type: load_image, path: cut.png, mode: RGBA}
  rgb: {type: load_image, path: cut.png}
  opaque: {type: make_mask, from: $rgba, channel: alpha}
  holes: {type: make_mask, from: $rgba, channel: transparency, grow: 1}
  none: {type: make_mask, from: $rgb, channel: transparency}
  s1: {type: save_image, image: $opaque}
  s2: {type: save_image, image: $holes}
  s3: {type: save_image, image: $none}
""")
    assert code == 0
    opaque, holes, none = (Image.open(run_dir / f"s{i}.png") for i in (1, 2, 3))
    assert opaque.getpixel((9, 5)) == 0 and opaque.getpixel((13, 5)) == 0 and opaque.getpixel((20, 20)) == 255
    assert holes.getpixel((9, 5)) == 255 and holes.getpixel((15, 11)) == 255  # alpha 127 rounds to transparent
    assert holes.getpixel((16, 12)) == 255 and holes.getpixel((18, 5)) == 0  # grown by one pixel, no further
    assert none.getextrema() == (0, 0)
    workflow = write_workflow(tmp_path, "bad.yaml", "version: 1\nnodes:\n  m: {type: make_mask, size: [8, 8], channel: alpha}\n")
    assert run_cli("validate", workflow) == 2
    assert "'channel' applies to 'from' only" in capsys.readouterr().err

def test_canny_grid_upscale_and_images_save(tmp_path):
    code, run_dir = run_nodes(tmp_path, """
  photo: {type: load_image, path: in.png}
  edges: {type: canny, image: $photo, low: 50, high: 150}
  sheet: {type: grid, images: [$photo, $edges, $photo], cols: 2, gap: 2}
  big: {type: upscale, image: $photo, scale: 1.5}
  one: {type: save_image, image: $sheet, name: sheet.png}
  two: {type: save_image, image: $big}
  many: {type: save_image, images: [$photo, $edges], name: pair.png}
""")
    assert code == 0
    edges = Image.open(run_dir / "pair_1.png")
    assert edges.mode == "RGB" and set(edges.convert("L").getdata()) <= {0, 255} and max(edges.convert("L").getdata()) == 255
    assert Image.open(run_dir / "sheet.png").size == (2 * 64 + 2, 2 * 64 + 2)
    assert Image.open(run_dir / "two.png").size == (96, 96)
    assert (run_dir / "pair_0.png").exists()
    assert manifest(run_dir)["nodes"]["many"]["published"] == ["pair_0.png", "pair_1.png"]


def test_load_image_missing_file_is_a_located_error(tmp_path, capsys):
    code, _ = run_nodes(tmp_path, "  photo: {type: load_image, path: nope.png}\n")
    assert code == 2
    err = capsys.readouterr().err
    assert "images.yaml:3:29: nodes.photo.path: input file nope.png does not exist" in err


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(2)
        if self.path.startswith(("/to-ftp", "/loop")):
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/room.png" if self.path.startswith("/to-ftp") else self.path)
            self.end_headers()
            return
        if self.path.startswith("/header-trickle"):  # the status line and headers a byte every 0.1 s, for a minute
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 600:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
            return
        if self.path.startswith("/trickle"):  # one byte every 0.1 s: no single wait is long, the whole is
            self.send_response(200)
            self.send_header("Content-Length", "40")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
            return
        super().do_GET()


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "room.png").write_bytes((WORKFLOWS / "inputs" / "room.png").read_bytes())
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_load_image_from_url_with_size_limit_and_timeout(tmp_path, http_root, monkeypatch, capsys):
    code, run_dir = run_nodes(tmp_path, f"  photo: {{type: load_image, url: '{http_root}/room.png'}}\n  keep: {{type: save_image, image: $photo}}\n", *LOCAL)
    assert code == 0
    assert Image.open(run_dir / "keep.png").size == (64, 64)
    assert statuses(run_dir)["photo"] == "ran"

    import runner.nodes.images as images

    monkeypatch.setattr(images, "URL_MAX_BYTES", 100)
    code, _ = run_nodes(tmp_path, f"  photo: {{type: load_image, url: '{http_root}/room.png?big'}}\n", *LOCAL)
    assert code == 1 and "larger than" in capsys.readouterr().err
    monkeypatch.setattr(images, "URL_TIMEOUT_S", 0.5)
    code, _ = run_nodes(tmp_path, f"  photo: {{type: load_image, url: '{http_root}/slow/room.png'}}\n", *LOCAL)
    assert code == 1 and "timed out" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["tiny:dpt", "tiny:depth-anything"])
def test_estimate_depth_gives_a_depth_map_at_the_input_size(tmp_path, model):
    code, run_dir = run_nodes(tmp_path, f"""
  photo: {{type: load_image, path: in.png, size: [72, 56]}}
  depth: {{type: estimate_depth, image: $photo, model: '{model}'}}
  as_mask: {{type: make_mask, from: $depth, threshold: 128}}
  save: {{type: save_image, image: $depth}}
""")
    assert code == 0
    depth = Image.open(run_dir / "save.png")
    assert depth.mode == "L" and depth.size == (72, 56)
    assert manifest(run_dir)["nodes"]["depth"]["models"][model].startswith(model + "@")


def test_upscale_with_a_diffusion_upscaler(tmp_path):
    code, run_dir = run_nodes(tmp_path, """
  photo: {type: load_image, path: in.png, size: [32, 24]}
  x4: {type: upscale, image: $photo, model: tiny:sd-x4-upscaler, prompt: a room, steps: 2}
  x2: {type: upscale, image: $photo, model: tiny:sd-x4-upscaler, prompt: a room, steps: 2, scale: 2, noise_level: 10}
  a: {type: save_image, image: $x4}
  b: {type: save_image, image: $x2}
""")
    assert code == 0
    assert Image.open(run_dir / "a.png").size == (128, 96)
    assert Image.open(run_dir / "b.png").size == (64, 48)
    data = manifest(run_dir)
    assert data["nodes"]["x4"]["pipeline_class"] == "StableDiffusionUpscalePipeline"
    assert data["nodes"]["x2"]["resized_from"] == [128, 96] and data["nodes"]["x2"]["call"]["noise_level"] == 10
    assert len([m for m in data["models_loaded"] if m.startswith("tiny:sd-x4-upscaler@")]) == 1


def test_url_redirects_deadline_and_ports_are_bounded(tmp_path, http_root, monkeypatch, capsys):
    import runner.nodes.images as images

    code, _ = run_nodes(tmp_path, f"  photo: {{type: load_image, url: '{http_root}/to-ftp/room.png'}}\n", *LOCAL)
    assert code == 1 and "only http(s) redirects are followed" in capsys.readouterr().err
    code, _ = run_nodes(tmp_path, f"  photo: {{type: load_image, url: '{http_root}/loop/room.png'}}\n", *LOCAL)
    assert code == 1 and "redirect" in capsys.readouterr().err
    monkeypatch.setattr(images, "URL_DEADLINE_S", 1)
    started = time.perf_counter()
    code, _ = run_nodes(tmp_path, f"  photo: {{type: load_image, url: '{http_root}/trickle/room.png'}}\n", *LOCAL)
    assert code == 1 and "took longer than 1 s in all" in capsys.readouterr().err
    assert time.perf_counter() - started < 30
    # the deadline covers the status line and the headers too (they used to hold a fetch for as long as they trickled)
    started = time.perf_counter()
    code, _ = run_nodes(tmp_path, f"  photo: {{type: load_image, url: '{http_root}/header-trickle/room.png'}}\n", *LOCAL)
    assert code == 1 and "took longer than 1 s in all" in capsys.readouterr().err
    assert time.perf_counter() - started < 20
    code, _ = run_nodes(tmp_path, "  photo: {type: load_image, url: 'http://127.0.0.1:70000/room.png'}\n")
    assert code == 2 and "ports are 1-65535" in capsys.readouterr().err


def test_grow_is_the_square_dilation_at_any_radius_and_big_outputs_are_refused(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import ImageDraw, ImageFilter

    import runner.nodes.images as images

    mask = Image.new("L", (97, 61), 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse([10, 12, 40, 30], fill=255)
    draw.polygon([(60, 5), (90, 40), (70, 55)], fill=255)
    draw.point((3, 58), fill=255)
    for radius in (1, 2, 5, 17):
        expected = mask.filter(ImageFilter.MaxFilter(2 * radius + 1))
        assert np.array_equal(np.asarray(images._grown(mask, radius)), np.asarray(expected)), radius
    assert not np.asarray(images._grown(Image.new("L", (8, 8), 0), 3)).any()
    monkeypatch.setattr(images, "MAX_OUTPUT_PIXELS", 100 * 100)
    code, _ = run_nodes(tmp_path, "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                                  "  big: {type: upscale, image: $photo, scale: 2}\n")
    assert code == 1 and "the image upscaled x2 would be 128 x 128 = 16,384 pixels, more than the limit of 10,000 pixels" in capsys.readouterr().err
    code, _ = run_nodes(tmp_path, "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                                  "  sheet: {type: grid, images: [$photo, $photo, $photo, $photo]}\n")
    assert code == 1 and "a 2 x 2 grid would be 128 x 128" in capsys.readouterr().err
    # the sheet's size is refused before the cells are decoded: one image is read, not 64
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    code, _ = run_nodes(tmp_path, "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                                  "  sheet: {type: grid, images: [" + ", ".join(["$photo"] * 64) + "]}\n")
    assert code == 1 and "a 8 x 8 grid would be 512 x 512" in capsys.readouterr().err
    assert len(opened) <= 2, len(opened)


def test_steps_beyond_the_schedule_are_a_clear_error(tmp_path, capsys):
    code, _ = run_nodes(tmp_path, "  out: {type: txt2img, model: tiny:sd15, steps: 1000}\n")
    err = capsys.readouterr().err
    assert code == 1 and "steps 1000: DDIMScheduler" in err and "takes at most 999 steps" in err
