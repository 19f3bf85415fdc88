"""report.html and a sweep's index.html, rendered in headless Chromium and checked from the live DOM."""

from __future__ import annotations

import html
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import write_workflow, REPO, latest_run, manifest, run_cli
from runner.core.hashing import sha256_file
from runner.core.sizes import format_size
from test_graph_layout import assert_edges_avoid_boxes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
ARTIFACTS = REPO / "outputs" / "test-artifacts"


def chromium(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([CHROMIUM, *flags, *extra, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)


def live_dom(page: Path, tmp_path: Path) -> tuple[str, str]:
    """(the DOM after scripts ran, the browser's log)."""
    done = chromium(page, tmp_path, "--virtual-time-budget=3000", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line and re.search(r"error|uncaught", line, re.I)]


@needs_chromium
def test_console_errors_are_seen(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('boom'); undefinedFunction();</script></body></html>")
    _dom, log = live_dom(page, tmp_path)
    assert console_errors(log)  # the check below would catch a broken report


@needs_chromium
def test_run_report_in_a_browser(demo, tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain") == 0
    assert run_cli("run", demo, "--out", out, "--plain", "--set", "nodes.restyled.strength=1.0") == 0
    run_dir = latest_run(out, "demo")
    page = run_dir / "report.html"
    text = page.read_text()
    assert not re.search(r"https?://", text)  # self-contained: nothing to fetch
    dom, log = live_dom(page, tmp_path)
    states = dict(re.findall(r'<article class="node" id="node-([a-z_0-9]+)" data-node="[^"]*" data-state="([a-z ]+)"', dom))
    assert states == {"room": "cached", "window_mask": "cached", "generated": "cached", "first_draft": "cached",
                      "restyled": "ran", "fixed": "ran", "final": "ran"}
    assert len(re.findall(r'class="graph-node"', dom)) == 7
    assert 'data-images-loaded="true"' in dom and int(re.search(r'data-images="(\d+)"', dom).group(1)) >= 5
    assert 'alt="fixed image"' in dom and 'alt="window_mask mask"' in dom
    assert not console_errors(log), console_errors(log)
    # the header: the --set overrides as path = value, and the command line, shell-quoted
    assert '<li><code>nodes.restyled.strength</code> = <code>1.0</code></li>' in dom
    command = re.search(r'<code class="command">([^<]*)</code>', dom).group(1)
    assert command == shlex.join(["runner", "run", str(demo), "--out", str(out), "--plain", "--set", "nodes.restyled.strength=1.0"])
    # a legend for every node state and link kind
    assert set(re.findall(r'data-legend-state="([a-z ]+)"', dom)) == {"ran", "cached", "failed", "interrupted", "not run"}
    assert set(re.findall(r'data-legend-kind="([a-z]+)"', dom)) >= {"image", "mask", "depth", "latents", "images"}
    # save_image cards: each written file as a thumbnail, a relative link, pixel and byte size
    final = re.search(r'<article class="node" id="node-final".*?</article>', dom, re.S).group(0)
    size = (run_dir / "final.png").stat().st_size
    assert re.search(r'<li data-file="final.png"><a href="final.png" aria-label="open final.png"><img src="final.png" '
                     r'alt="final.png, saved by final"></a><div><a href="final.png">final.png</a>', final)
    assert f"64 × 64 px · {format_size(size)}" in final
    assert manifest(run_dir)["nodes"]["final"]["published_files"][0] == {
        "path": "final.png", "bytes": size, "sha256": sha256_file(run_dir / "final.png"), "width": 64, "height": 64}
    moved = shutil.move(run_dir, tmp_path / "moved-run")  # the links are relative: the folder works anywhere
    dom, _log = live_dom(Path(moved) / "report.html", tmp_path)
    assert 'data-images-loaded="true"' in dom
    page = Path(moved) / "report.html"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, name in ((1280, "report-desktop.png"), (390, "report-phone.png")):
        shot = chromium(page, tmp_path, f"--window-size={width},1400", f"--screenshot={ARTIFACTS / name}")
        assert shot.returncode == 0 and (ARTIFACTS / name).stat().st_size > 0


@needs_chromium
def test_failed_run_report_shows_the_error(demo, tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain", "--set", "params.steps=1000") == 1
    dom, log = live_dom(latest_run(out, "demo") / "report.html", tmp_path)
    assert 'data-status="failed"' in dom and 'role="alert"' in dom and "takes at most 999 steps" in dom
    assert re.search(r'id="node-room" data-node="room" data-state="ran"', dom)
    assert len(re.findall(r'<path class="edge"', dom)) == 6  # links to nodes that never ran are drawn too
    assert not console_errors(log)


PROBE = """<script>
window.addEventListener('load', () => {
  const graph = document.querySelector('.graph');
  const rects = [...graph.querySelectorAll('.graph-node rect')];
  const inside = (rect, box) => { const b = rect.getBoundingClientRect();
    return b.left >= box.left - 0.5 && b.right <= box.right + 0.5 && b.top >= box.top - 0.5 && b.bottom <= box.bottom + 0.5; };
  const rightmost = rects.reduce((a, b) => a.getBoundingClientRect().right >= b.getBoundingClientRect().right ? a : b);
  const result = {scrolls: graph.dataset.scrolls, hintHidden: document.querySelector('[data-scroll-hint]').hidden,
                  allVisibleAtStart: rects.every(rect => inside(rect, graph.getBoundingClientRect())),
                  labels: graph.querySelectorAll('.edge-label').length};
  document.querySelector('button[data-fit]').click();  // to the natural size
  result.actualScrolls = graph.dataset.scrolls;
  result.rightmostVisibleActual = inside(rightmost, graph.getBoundingClientRect());
  graph.scrollLeft = graph.scrollWidth;
  result.rightmostVisibleScrolled = inside(rightmost, graph.getBoundingClientRect());
  result.rightmost = rightmost.parentNode.dataset.node;
  result.pageOverflow = document.documentElement.scrollWidth > window.innerWidth + 1;
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(result);
  document.body.append(out);
});
</script>"""


@needs_chromium
@pytest.mark.parametrize("width", [390, 1280])
def test_the_graph_routes_edges_around_nodes_and_scrolls_instead_of_clipping(tmp_path, width):
    # the graph: patched reads styled directly and through hole, in the column between them; six columns
    # are wider than the page at 1280 px at their natural size
    workflow = write_workflow(tmp_path, "holes.yaml", "version: 1\nnodes:\n  photo: {type: load_image, path: in.png}\n"
                              "  styled: {type: upscale, image: $photo, scale: 1.0}\n"
                              "  hole: {type: make_mask, like: $styled, shapes: [{rect: [1, 1, 4, 4]}]}\n"
                              "  patched: {type: grid, images: [$styled, $hole]}\n"
                              "  bigger: {type: upscale, image: $patched, scale: 2.0}\n"
                              "  saved: {type: save_image, image: $bigger}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    report = latest_run(tmp_path / "out", "holes") / "report.html"
    dom, log = live_dom(report, tmp_path)
    svg = re.search(r"<svg role=\"img\".*?</svg>", dom, re.S).group(0)
    assert_edges_avoid_boxes(svg, 6)  # as the browser has it: no line under a box
    probe = report.with_name("probe.html")  # beside the report, so its relative links still resolve
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    done = chromium(probe, tmp_path, f"--window-size={width},900", "--virtual-time-budget=3000", "--dump-dom")
    result = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', done.stdout).group(1)))
    # six columns: fitted to the page by default (every box visible, no sideways scrolling), each link labelled with
    # its kind; at its natural size (the button) it is wider than the page and scrolls inside its box
    assert result == {"scrolls": "false", "hintHidden": True, "allVisibleAtStart": True, "labels": 6,
                      "actualScrolls": "true", "rightmostVisibleActual": False,
                      "rightmostVisibleScrolled": True, "rightmost": "saved", "pageOverflow": False}
    assert not console_errors(log)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"report-graph-{width}.png"
    done = chromium(report, tmp_path, f"--window-size={width},900", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.stat().st_size > 0


@needs_chromium
def test_sweep_index_is_a_labelled_2x3_grid(tmp_path):
    workflow = write_workflow(tmp_path, "grid.yaml", "version: 1\nnodes:\n  photo: {type: load_image, path: in.png}\n"
                        "  big: {type: upscale, image: $photo, scale: 1.0}\n  save: {type: save_image, image: $big}\n")
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--plain", "--sweep", "nodes.photo.mode=RGB,L",
                   "--sweep", "nodes.big.scale=0.5,1.0,2.0") == 0
    page = next((out / "grid").glob("sweep-*")) / "index.html"
    assert not re.search(r"https?://", page.read_text())
    dom, log = live_dom(page, tmp_path)
    rows = re.findall(r"<tr>(.*?)</tr>", dom, re.S)
    assert re.findall(r'<th scope="col">([^<]*)</th>', rows[0])[1:] == ["0.5", "1.0", "2.0"]
    assert [re.search(r'<th scope="row">([^<]*)</th>', row).group(1) for row in rows[1:]] == ["RGB", "L"]
    assert all(len(re.findall(r"<td data-variant", row)) == 3 for row in rows[1:])
    assert 'data-images-loaded="true"' in dom and not console_errors(log)
    # each cell names the file it shows (a relative link), the variant's status, ran/cached counts and its report
    index = json.loads((page.parent / "index.json").read_text())
    cells = dict(re.findall(r'<td data-variant="(\d+)"[^>]*>(.*?)</td>', dom, re.S))
    assert len(cells) == 6
    for variant in index["variants"]:
        cell, run = cells[str(variant["variant"])], variant["run"]
        assert f'<img src="{run}/save.png" alt="' in cell and (page.parent / run / "save.png").is_file()
        assert f'<a href="{run}/save.png" data-shown-file="save.png">save.png</a> <small>(save)</small>' in cell
        assert 'data-variant-status="ok">ok</span>' in cell and f'<a href="{run}/report.html">report</a>' in cell
        counts = variant["counts"]
        assert f'<span data-counts="">ran {counts["ran"]} · cached {counts["cached"]}</span>' in cell
    assert sum(v["counts"]["cached"] for v in index["variants"]) > 0  # the counts differ between variants
    assert '<dd data-summary="">6 (6 ok)</dd>' in dom
    assert "--sweep nodes.photo.mode=RGB,L --sweep nodes.big.scale=0.5,1.0,2.0" in re.search(
        r'<code class="command">([^<]*)</code>', dom).group(1)
    phone = chromium(page, tmp_path, "--window-size=390,900", "--virtual-time-budget=3000", "--dump-dom")
    assert 'data-overflow="false"' in phone.stdout  # the grid scrolls inside its own box on a phone
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (390, 1280):
        shot = ARTIFACTS / f"sweep-index-{width}.png"
        done = chromium(page, tmp_path, f"--window-size={width},1000", f"--screenshot={shot}")
        assert done.returncode == 0 and shot.stat().st_size > 0


@needs_chromium
@pytest.mark.parametrize("width", [390, 1280])
def test_fifty_nodes_and_long_text_do_not_break_the_layout(tmp_path, width):
    long_word = "supercalifragilistic" * 12
    lines = ["version: 1", f"description: {long_word}", "nodes:", "  photo: {type: load_image, path: in.png}",
             "  m0: {type: make_mask, from: $photo, threshold: 10}"]
    lines += [f"  m{i}: {{type: make_mask, from: $m{i - 1}, threshold: {i}, invert: true}}" for i in range(1, 48)]
    lines += [f"  {'s' * 40}: {{type: save_image, image: $m47, name: {long_word[:96]}.png}}"]
    workflow = write_workflow(tmp_path, "big.yaml", "\n".join(lines) + "\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    page = latest_run(tmp_path / "out", "big") / "report.html"
    done = chromium(page, tmp_path, f"--window-size={width},900", "--virtual-time-budget=3000", "--dump-dom")
    assert len(re.findall(r'<article class="node"', done.stdout)) == 50
    assert 'data-overflow="false"' in done.stdout and 'data-images-loaded="true"' in done.stdout


def test_saved_files_of_an_older_manifest_are_measured_from_the_folder(tmp_path):
    from runner.records.report import write_run_report

    workflow = write_workflow(tmp_path, "saves.yaml", "version: 1\nnodes:\n  photo: {type: load_image, path: in.png}\n"
                              "  keep: {type: save_image, image: $photo, name: kept.png}\n"
                              "  lose: {type: save_image, image: $photo, name: lost.png}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    run_dir = latest_run(tmp_path / "out", "saves")
    recorded = json.loads((run_dir / "manifest.json").read_text())
    for node in recorded["nodes"].values():  # as manifests were before sizes were recorded
        node.pop("published_files", None)
    (run_dir / "manifest.json").write_text(json.dumps(recorded))
    (run_dir / "lost.png").unlink()
    text = write_run_report(run_dir).read_text()
    size = (run_dir / "kept.png").stat().st_size
    assert f'<a href="kept.png">kept.png</a><br><span data-size>64 × 64 px · {format_size(size)}</span>' in text
    assert '<li data-file="lost.png"><div>lost.png · missing from the run folder</div></li>' in text


def test_the_report_shows_resolved_values_and_a_failed_nodes_fix(tmp_path):
    """Each node's parameters as the node got them (params put in, not `${params.prompt}`), and the fix of a failed
    node beside its error."""
    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nparams: {what: a window onto pine trees}\nnodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                              "  m: {type: make_mask, like: $photo}\n"
                              "  r: {type: inpaint, model: tiny:sd15-inpaint, image: $photo, mask: $m, "
                              "prompt: '${params.what}, at dusk', padding_mask_crop: 8, steps: 2}\n")
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--quiet") == 1
    text = html.unescape((latest_run(out, "wf") / "report.html").read_text())
    assert "prompt: a window onto pine trees, at dusk" in text and "${params.what}" not in text.split("<body", 1)[1]
    assert '<p class="fix">fix: draw the area to repaint in white, or remove padding_mask_crop</p>' in text
    assert "image: $photo" in text  # links as written


@needs_chromium
@pytest.mark.parametrize("count,fitted", [(10, True), (12, False)])
def test_a_chain_of_ten_nodes_fits_1280_px_and_longer_ones_scroll(tmp_path, count, fitted):
    nodes = "  n1: {type: load_image, path: in.png}\n" + "".join(
        f"  n{i}: {{type: upscale, image: $n{i - 1}, scale: 1.0}}\n" for i in range(2, count))
    workflow = write_workflow(tmp_path, "chain.yaml", f"version: 1\nnodes:\n{nodes}  n{count}: {{type: save_image, image: $n{count - 1}}}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--quiet") == 0
    report = latest_run(tmp_path / "out", "chain") / "report.html"
    probe = report.with_name("probe.html")
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    done = chromium(probe, tmp_path, "--window-size=1280,900", "--virtual-time-budget=3000", "--dump-dom")
    result = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', done.stdout).group(1)))
    assert (result["scrolls"], result["allVisibleAtStart"], result["labels"]) == (
        ("false", True, count - 1) if fitted else ("true", False, count - 1))
    assert result["pageOverflow"] is False


def test_each_sweep_variants_report_shows_its_own_resolved_values(tmp_path):
    """Issue 27 item 5: a variant's report gives each node's parameters as that variant ran them: its own swept
    values (a whole-value $params reference and a ${params} inside text), never the templates."""
    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nparams: {tag: plain, grow: 0}\nnodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [32, 32]}\n"
                              "  m: {type: make_mask, like: $photo, shapes: [{rect: [4, 4, 20, 20]}], grow: $params.grow}\n"
                              "  s: {type: save_image, image: $m, name: 'mask-${params.tag}.png'}\n")
    out = tmp_path / "out"
    assert run_cli("run", workflow, "--out", out, "--quiet", "--zip", "--sweep", "params.tag=dawn,dusk",
                   "--sweep", "params.grow=3,7") == 0
    sweep = next((out / "wf").glob("sweep-*"))
    for variant, (tag, grow) in enumerate((("dawn", 3), ("dusk", 7))):
        text = html.unescape((sweep / f"{variant:03d}" / "report.html").read_text())
        parameters = dict(re.findall(r'<article class="node" id="node-(\w+)".*?<summary>parameters</summary><pre>(.*?)</pre>',
                                     text, flags=re.S))
        assert f"grow: {grow}\n" in parameters["m"], (variant, parameters)
        assert f"name: mask-{tag}.png\n" in parameters["s"], (variant, parameters)
        assert not any("$params" in block or "${params" in block for block in parameters.values()), parameters
