"""The report's graph drawing, checked geometrically on the SVG it writes: no edge line enters a node box."""

from __future__ import annotations

import random
import re

import pytest

from runner.records.report import graph_svg

NUMBER = r"(-?[\d.]+(?:e-?\d+)?)"


def boxes_and_paths(svg: str) -> tuple[dict[str, tuple[float, ...]], list[tuple[str, str, str]]]:
    boxes = {node: tuple(map(float, coords)) for node, *coords in re.findall(
        rf'<a href="#node-[^"]*" class="graph-node" data-node="([^"]*)"[^>]*><title>[^<]*</title><rect x="{NUMBER}" '
        rf'y="{NUMBER}" width="{NUMBER}" height="{NUMBER}"', svg)}
    paths = re.findall(r'<path class="edge" data-kind="[^"]*" data-source="([^"]*)" data-target="([^"]*)" d="([^"]*)"', svg)
    return boxes, paths


def sample(path: str, steps: int = 40) -> list[tuple[float, float]]:
    """Points along an SVG path made of M, L and C commands (absolute)."""
    points: list[tuple[float, float]] = []
    for command, args in re.findall(r"([MLC])([^MLC]*)", path):
        values = [float(v) for v in re.findall(NUMBER, args)]
        pairs = list(zip(values[::2], values[1::2]))
        if command == "M":
            points.append(pairs[0])
        elif command == "L":
            (x0, y0), (x1, y1) = points[-1], pairs[0]
            points += [(x0 + (x1 - x0) * t / steps, y0 + (y1 - y0) * t / steps) for t in range(1, steps + 1)]
        else:
            p0, (p1, p2, p3) = points[-1], pairs
            for step in range(1, steps + 1):
                t = step / steps
                weights = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t ** 3)
                points.append(tuple(sum(w * p[axis] for w, p in zip(weights, (p0, p1, p2, p3))) for axis in (0, 1)))
    return points


def assert_edges_avoid_boxes(svg: str, expected_edges: int) -> None:
    boxes, paths = boxes_and_paths(svg)
    assert len(paths) == expected_edges
    names = list(boxes)
    for i, a in enumerate(names):  # boxes do not overlap each other either
        ax, ay, aw, ah = boxes[a]
        for b in names[i + 1:]:
            bx, by, bw, bh = boxes[b]
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)
    for source, target, path in paths:
        points = sample(path)
        sx, sy, sw, sh = boxes[source]
        tx, ty, _tw, th = boxes[target]
        assert points[0][0] == pytest.approx(sx + sw) and sy < points[0][1] < sy + sh  # leaves the source's right side
        assert points[-1][0] == pytest.approx(tx) and ty < points[-1][1] < ty + th  # enters the target's left side
        for node, (x, y, w, h) in boxes.items():
            inside = [p for p in points if x + 0.5 < p[0] < x + w - 0.5 and y + 0.5 < p[1] < y + h - 0.5]
            assert not inside, f"edge {source} -> {target} runs through node {node} at {inside[0]}"


def state(node_type: str = "make_mask", status: str = "ran") -> dict:
    return {"type": node_type, "status": status}


def test_an_edge_that_skips_a_column_goes_around_the_node_in_it():
    # the shape: patched reads styled directly and through hole, which sits in the column between them
    nodes = {"photo": state("load_image"), "styled": state("upscale"), "hole": state(), "patched": state("inpaint")}
    edges = [("photo", "styled", "image"), ("styled", "hole", "image"), ("styled", "patched", "image"),
             ("hole", "patched", "mask")]
    svg = graph_svg(nodes, edges)
    assert_edges_avoid_boxes(svg, 4)
    boxes, paths = boxes_and_paths(svg)
    assert boxes["styled"][0] < boxes["hole"][0] < boxes["patched"][0]  # one column each
    long_edge = next(path for source, target, path in paths if (source, target) == ("styled", "patched"))
    assert " L" in long_edge  # it runs along a lane of its own across hole's column


def test_a_fifty_node_dag_has_no_edge_through_a_box():
    rng = random.Random(16)
    nodes = {f"n{i}": state() for i in range(50)}
    edges = []
    for i in range(1, 50):
        for parent in sorted(rng.sample(range(i), min(i, rng.randint(1, 3)))):
            edges.append((f"n{parent}", f"n{i}", rng.choice(["image", "mask", "depth"])))
    svg = graph_svg(nodes, edges)
    assert sum(1 for s, t, _k in edges if int(t[1:]) - int(s[1:]) > 5) > 20  # plenty of long edges to route
    assert_edges_avoid_boxes(svg, len(edges))
    width, height = map(float, re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())
    boxes, _paths = boxes_and_paths(svg)
    assert max(x + w for x, _y, w, _h in boxes.values()) < width and max(y + h for _x, y, _w, h in boxes.values()) < height


def test_crossings_are_reduced():
    # a column whose order in the file crosses every pair of edges into the next one
    nodes = {name: state() for name in ("a", "b", "c", "x", "y", "z")}
    edges = [("a", "z", "image"), ("b", "y", "image"), ("c", "x", "image")]
    boxes, _paths = boxes_and_paths(graph_svg(nodes, edges))
    assert [n for n in sorted("xyz", key=lambda n: boxes[n][1])] == ["z", "y", "x"] or \
        [n for n in sorted("abc", key=lambda n: boxes[n][1])] == ["c", "b", "a"]
    for source, target, _kind in edges:  # each target sits level with its source: straight lines, no crossing
        assert boxes[source][1] == pytest.approx(boxes[target][1])
