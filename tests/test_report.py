"""report.html and a sweep's index.html, rendered in headless Chromium and checked from the live DOM."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import write_workflow, REPO, latest_run, run_cli

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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, name in ((1200, "report-desktop.png"), (390, "report-phone.png")):
        shot = chromium(page, tmp_path, f"--window-size={width},1400", f"--screenshot={ARTIFACTS / name}")
        assert shot.returncode == 0 and (ARTIFACTS / name).stat().st_size > 0


@needs_chromium
def test_failed_run_report_shows_the_error(demo, tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", demo, "--out", out, "--plain", "--set", "models.sd15=tiny:sd15-inpaint") == 1
    dom, log = live_dom(latest_run(out, "demo") / "report.html", tmp_path)
    assert 'data-status="failed"' in dom and 'role="alert"' in dom and "inpainting checkpoint" in dom
    assert re.search(r'id="node-room" data-node="room" data-state="ran"', dom)
    assert len(re.findall(r'<path class="edge"', dom)) == 6  # links to nodes that never ran are drawn too
    assert not console_errors(log)


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
