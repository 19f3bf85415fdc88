"""A layered drawing of a DAG, left to right (Sugiyama-style), in plain Python.

Nodes go into columns by longest path from the sources. An edge that skips columns gets one "lane" (a dummy node,
a thin slot) in every column it crosses, stacked with the real nodes, so its line runs through a gap of its own
and never under a node box. A few barycentre sweeps order each column to reduce crossings, and the vertical
positions follow the neighbours (least squares under the stacking order, by pooling adjacent violators).
Between two columns an edge is a cubic curve whose control points lie in the gap; across a column it is the
straight line of its lane: no part of a line enters a box other than the two it joins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NODE_W, NODE_H, GAP_X, GAP_Y, LANE_H, LANE_GAP, MARGIN = 170, 46, 70, 18, 6, 8, 12


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h


@dataclass
class Route:
    source: str
    target: str
    kind: str
    path: str  # SVG path data: M, then C (inside a gap between columns) and L (along a lane across a column)
    label: tuple[float, float] = (0.0, 0.0)  # where its kind is written: the middle of its last curve, in a gap


@dataclass
class Layout:
    width: float
    height: float
    boxes: dict[str, Box] = field(default_factory=dict)
    columns: int = 0
    routes: list[Route] = field(default_factory=list)


def layers(deps: dict[str, list[str]]) -> dict[str, int]:
    """Each node's column: the length of the longest path to it from a node without inputs."""
    depth: dict[str, int] = {}

    def visit(node: str) -> int:
        if node not in depth:
            depth[node] = 0  # guards against cycles in a damaged manifest
            depth[node] = 1 + max((visit(d) for d in deps.get(node, []) if d in deps), default=-1)
        return depth[node]

    for node in deps:
        visit(node)
    return depth


def _crossings(upper: list, lower: list, down: dict) -> int:
    rank = {item: i for i, item in enumerate(lower)}
    pairs = [(i, rank[t]) for i, item in enumerate(upper) for t in down.get(item, ()) if t in rank]
    return sum(1 for a in range(len(pairs)) for b in range(a + 1, len(pairs))
               if (pairs[a][0] - pairs[b][0]) * (pairs[a][1] - pairs[b][1]) < 0)


def _order(columns: list[list], up: dict, down: dict, sweeps: int = 4) -> list[list]:
    """Barycentre heuristic: alternately sort each column by the mean rank of its neighbours before / after it;
    keep the ordering with the fewest crossings."""

    def total(cols):
        return sum(_crossings(cols[i], cols[i + 1], down) for i in range(len(cols) - 1))

    best, best_count = [list(c) for c in columns], total(columns)
    current = [list(c) for c in columns]
    for sweep in range(sweeps):
        indices = range(1, len(current)) if sweep % 2 == 0 else range(len(current) - 2, -1, -1)
        for i in indices:
            neighbours, other = (up, current[i - 1]) if sweep % 2 == 0 else (down, current[i + 1])
            rank = {item: r for r, item in enumerate(other)}

            def key(item, position):
                ranks = [rank[n] for n in neighbours.get(item, ()) if n in rank]
                return sum(ranks) / len(ranks) if ranks else position

            current[i] = [item for _k, _p, item in sorted((key(item, p), p, item) for p, item in enumerate(current[i]))]
        count = total(current)
        if count < best_count:
            best, best_count = [list(c) for c in current], count
    return best


def _fit_in_order(desired: list[float], offsets: list[float]) -> list[float]:
    """Positions y_i closest (least squares) to `desired` with y_i - y_(i-1) >= the stacking distance: y_i = z_i +
    offsets[i] with z non-decreasing, found by pooling adjacent violators."""
    blocks: list[list[float]] = []  # [mean, weight]
    for value in (d - o for d, o in zip(desired, offsets)):
        blocks.append([value, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + mean * weight) / (blocks[-1][1] + weight), blocks[-1][1] + weight]
    z = [mean for mean, weight in blocks for _ in range(int(weight))]
    return [a + b for a, b in zip(z, offsets)]


def layered_layout(nodes: list[str], edges: list[tuple[str, str, str]]) -> Layout:
    """Boxes for `nodes` and a routed path for each (source, target, kind) edge."""
    deps: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target, _kind in edges:
        deps[target].append(source)
    depth = layers(deps)
    count = max(depth.values(), default=-1) + 1
    columns: list[list] = [[] for _ in range(count)]
    for node in nodes:
        columns[depth[node]].append(node)
    up: dict = {}
    down: dict = {}
    chains: list[list] = []  # per edge: the items it passes, source first
    for number, (source, target, _kind) in enumerate(edges):
        chain = [source]
        for column in range(depth[source] + 1, depth[target]):
            lane = ("lane", number, column)
            columns[column].append(lane)
            chain.append(lane)
        chain.append(target)
        chains.append(chain)
        for a, b in zip(chain, chain[1:]):
            down.setdefault(a, []).append(b)
            up.setdefault(b, []).append(a)
    columns = _order(columns, up, down)

    def height(item) -> float:
        return LANE_H if isinstance(item, tuple) else NODE_H

    def distance(a, b) -> float:
        real = not isinstance(a, tuple) and not isinstance(b, tuple)
        return (height(a) + height(b)) / 2 + (GAP_Y if real else LANE_GAP)

    offsets = []
    for column in columns:
        offset = [0.0]
        for a, b in zip(column, column[1:]):
            offset.append(offset[-1] + distance(a, b))
        offsets.append(offset)
    centre = {item: y for column, offset in zip(columns, offsets) for item, y in zip(column, offset)}
    for sweep in range(6):  # pull each column towards its neighbours' centres, alternately from the left and right
        order = range(1, count) if sweep % 2 == 0 else range(count - 2, -1, -1)
        neighbours = up if sweep % 2 == 0 else down
        for i in order:
            desired = []
            for item in columns[i]:
                ys = [centre[n] for n in neighbours.get(item, ()) if n in centre]
                desired.append(sum(ys) / len(ys) if ys else centre[item])
            for item, y in zip(columns[i], _fit_in_order(desired, offsets[i])):
                centre[item] = y
    top = min((centre[item] - height(item) / 2 for column in columns for item in column), default=0.0)
    shift = MARGIN - top
    boxes = {}
    lane_y = {}
    for i, column in enumerate(columns):
        x = MARGIN + i * (NODE_W + GAP_X)
        for item in column:
            y = centre[item] + shift
            if isinstance(item, tuple):
                lane_y[item] = y
            else:
                boxes[item] = Box(x, y - NODE_H / 2, NODE_W, NODE_H)
    width = 2 * MARGIN + count * NODE_W + max(count - 1, 0) * GAP_X if count else 100
    height_total = max((b.bottom for b in boxes.values()), default=60) + MARGIN
    layout = Layout(width, height_total, boxes, columns=count)
    ports_out, ports_in = _ports(chains, boxes, lane_y)
    for number, ((source, target, kind), chain) in enumerate(zip(edges, chains)):
        points = [(boxes[source].right, ports_out[number])]
        segments = []
        for lane in chain[1:-1]:
            column_x = MARGIN + lane[2] * (NODE_W + GAP_X)
            segments.append(_curve(points[-1], (column_x, lane_y[lane])))
            segments.append(f"L{column_x + NODE_W:g},{lane_y[lane]:g}")
            points.append((column_x + NODE_W, lane_y[lane]))
        end = (boxes[target].x, ports_in[number])
        if end[0] > points[-1][0]:
            segments.append(_curve(points[-1], end))
        else:  # only in a damaged (cyclic) manifest: a plain line
            segments.append(f"L{end[0]:g},{end[1]:g}")
        # the curve's point at t = 1/2 (its control points share the middle x): inside the gap before the target
        label = ((points[-1][0] + end[0]) / 2, (points[-1][1] + end[1]) / 2)
        layout.routes.append(Route(source, target, kind, f"M{points[0][0]:g},{points[0][1]:g} " + " ".join(segments),
                                   label))
    return layout


def _curve(start: tuple[float, float], end: tuple[float, float]) -> str:
    middle = (start[0] + end[0]) / 2
    return f"C{middle:g},{start[1]:g} {middle:g},{end[1]:g} {end[0]:g},{end[1]:g}"


def _ports(chains: list[list], boxes: dict[str, Box], lane_y: dict) -> tuple[dict[int, float], dict[int, float]]:
    """Where each edge leaves its source and enters its target: spread along the box's side, in the order of the
    other ends, so lines into one node do not merge."""

    def y_of(item) -> float:
        return lane_y[item] if isinstance(item, tuple) else boxes[item].y + NODE_H / 2

    outgoing: dict[str, list[tuple[float, int]]] = {}
    incoming: dict[str, list[tuple[float, int]]] = {}
    for number, chain in enumerate(chains):
        outgoing.setdefault(chain[0], []).append((y_of(chain[1]), number))
        incoming.setdefault(chain[-1], []).append((y_of(chain[-2]), number))

    def spread(groups: dict[str, list[tuple[float, int]]]) -> dict[int, float]:
        ports = {}
        for node, members in groups.items():
            members.sort()
            for slot, (_y, number) in enumerate(members):
                ports[number] = boxes[node].y + NODE_H * (slot + 1) / (len(members) + 1)
        return ports

    return spread(outgoing), spread(incoming)
