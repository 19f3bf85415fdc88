"""report.html for a run folder and index.html for a sweep folder: one self-contained page each.

Everything the page shows is inside it (CSS, the graph as inline SVG, images as
data: URIs), so it works from file:// without network; the only links are to
files beside it (manifest, workflow, variant reports).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import yaml

from ..core.atomic import write_atomic
from ..core.kinds import IMAGE_KINDS

SHOWN_KINDS = (*IMAGE_KINDS, "images")  # outputs a card shows as thumbnails
STATE_COLOURS = {"ran": "#2e7d32", "cached": "#1565c0", "failed": "#c62828", "interrupted": "#c62828", "not run": "#757575"}
KIND_COLOURS = {"image": "#6a1b9a", "mask": "#ef6c00", "depth": "#00838f", "latents": "#5d4037", "images": "#ad1457"}

STYLE = """
:root { font-family: system-ui, sans-serif; color: #1b1b1b; background: #fafafa; }
body { margin: 0 auto; padding: 1rem; max-width: 1200px; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; overflow-wrap: anywhere; }
header dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: 0; }
header dd { margin: 0; overflow-wrap: anywhere; }
.graph { overflow-x: auto; background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 1rem 0; }
.graph svg { display: block; }
.graph a:focus rect { stroke: #000; stroke-width: 3; }
.nodes { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 300px), 1fr)); gap: 1rem; }
.node { background: #fff; border: 1px solid #ddd; border-left: 6px solid var(--state); border-radius: 6px; padding: .6rem; min-width: 0; }
.node h2 { font-size: 1rem; margin: 0 0 .3rem; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 .4rem; border-radius: 3px; color: #fff; background: var(--state); font-size: .8rem; }
.error { color: #b71c1c; white-space: pre-wrap; overflow-wrap: anywhere; }
.thumbs { display: flex; flex-wrap: wrap; gap: .4rem; margin: .4rem 0; }
.thumbs button { padding: 0; border: 1px solid #ccc; background: repeating-conic-gradient(#eee 0 25%, #fff 0 50%) 0 0 / 12px 12px; cursor: zoom-in; }
.thumbs img { display: block; max-width: 128px; max-height: 128px; image-rendering: auto; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .8rem; background: #f5f5f5; padding: .4rem; margin: .3rem 0 0; }
dialog { max-width: 95vw; max-height: 95vh; padding: .5rem; }
dialog img { max-width: 90vw; max-height: 85vh; display: block; }
table.grid { border-collapse: collapse; }
table.grid th, table.grid td { border: 1px solid #ddd; padding: .3rem; text-align: center; vertical-align: top; overflow-wrap: anywhere; }
table.grid img { max-width: 200px; max-height: 200px; display: block; margin: auto; }
@media (max-width: 600px) { body { padding: .5rem; } .thumbs img { max-width: 96px; } }
"""

SCRIPT = """
const dialog = document.getElementById('viewer');
document.querySelectorAll('button[data-full]').forEach(button => button.addEventListener('click', () => {
  dialog.querySelector('img').src = button.dataset.full;
  dialog.querySelector('img').alt = button.querySelector('img').alt;
  dialog.showModal();
}));
dialog.addEventListener('click', () => dialog.close());
function checkImages() {
  const images = [...document.querySelectorAll('main img')];
  const loaded = images.every(img => img.complete && img.naturalWidth > 0);
  document.body.dataset.images = images.length;
  document.body.dataset.imagesLoaded = loaded ? 'true' : 'false';
  // the page itself must never scroll sideways (the graph scrolls inside its own box)
  document.body.dataset.overflow = document.documentElement.scrollWidth > window.innerWidth + 1 ? 'true' : 'false';
}
window.addEventListener('load', checkImages);
checkImages();
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{_esc(title)}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            "<dialog id=\"viewer\" aria-label=\"full-size image\"><img alt=\"\"></dialog>\n"
            f"<script>{SCRIPT}</script>\n</body>\n</html>\n")


def _layers(deps: dict[str, list[str]]) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(node: str) -> int:
        if node not in depth:
            depth[node] = 0  # guards against cycles in a damaged manifest
            depth[node] = 1 + max((visit(d) for d in deps.get(node, []) if d in deps), default=-1)
        return depth[node]

    for node in deps:
        visit(node)
    return depth


def graph_svg(nodes: dict[str, dict], edges: list[tuple[str, str, str]]) -> str:
    """The DAG, left to right by depth; nodes coloured by state, edges by data kind; each node links to its card."""
    deps: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target, _kind in edges:
        deps[target].append(source)
    depth = _layers(deps)
    columns: dict[int, list[str]] = {}
    for node in nodes:
        columns.setdefault(depth[node], []).append(node)
    width, height, gap_x, gap_y = 170, 46, 60, 18
    position = {}
    for column, members in columns.items():
        for row, node in enumerate(members):
            position[node] = (10 + column * (width + gap_x), 10 + row * (height + gap_y))
    total_w = 20 + (max(columns) + 1) * (width + gap_x) if columns else 100
    total_h = 20 + max(len(m) for m in columns.values()) * (height + gap_y) if columns else 60
    parts = [f'<svg role="img" aria-label="workflow graph" width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}">']
    for source, target, kind in edges:
        (x1, y1), (x2, y2) = position[source], position[target]
        colour = KIND_COLOURS.get(kind, "#999")
        parts.append(f'<path class="edge" data-kind="{_esc(kind)}" d="M{x1 + width},{y1 + height / 2} C{x1 + width + gap_x / 2},'
                     f'{y1 + height / 2} {x2 - gap_x / 2},{y2 + height / 2} {x2},{y2 + height / 2}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"><title>{_esc(source)} → {_esc(target)} ({_esc(kind)})</title></path>')
    for node, info in nodes.items():
        x, y = position[node]
        colour = STATE_COLOURS.get(info["status"], "#757575")
        parts.append(f'<a href="#node-{_esc(node)}" class="graph-node" data-node="{_esc(node)}" data-state="{_esc(info["status"])}">'
                     f'<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="6" fill="#fff" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{x + 8}" y="{y + 19}" font-size="13" font-weight="bold">{_esc(node[:22])}</text>'
                     f'<text x="{x + 8}" y="{y + 36}" font-size="11" fill="{colour}">{_esc(info["type"])} · {_esc(info["status"])}</text></a>')
    parts.append("</svg>")
    return "".join(parts)


def _edges(manifest: dict) -> list[tuple[str, str, str]]:
    """(source, target, kind) for each linked input ("$node.output" in the manifest), kinds from the declarations."""
    from ..nodes import NODE_TYPES

    edges = []
    for target, node in manifest["nodes"].items():
        for link in node.get("inputs", {}):
            source, _, output = link[1:].partition(".")
            if source in manifest["nodes"]:
                declared = NODE_TYPES.get(manifest["nodes"][source]["type"])
                edge = (source, target, declared.outputs.get(output, "image") if declared else "image")
                if edge not in edges:
                    edges.append(edge)
    return edges


def _cache_entry(manifest: dict, key: str) -> Path | None:
    cache = manifest.get("cache_dir")
    if not cache:
        return None
    entry = Path(cache) / "nodes" / key[:2] / key
    return entry if (entry / "entry.json").is_file() else None


def _node_card(node_id: str, node: dict, document: dict, manifest: dict) -> str:
    colour = STATE_COLOURS.get(node["status"], "#757575")
    seconds = "" if node.get("seconds") in (None, 0) or node["status"] != "ran" else f" · {node['seconds']:.2f} s"
    cache = {"hit": "cache hit", "miss": "cache miss"}.get(node.get("cache"), "")
    lines = [f'<article class="node" id="node-{_esc(node_id)}" data-node="{_esc(node_id)}" data-state="{_esc(node["status"])}" '
             f'style="--state: {colour}" tabindex="-1">',
             f'<h2>{_esc(node_id)} <small>({_esc(node["type"])})</small></h2>',
             f'<span class="badge">{_esc(node["status"])}</span> {_esc(cache)}{_esc(seconds)}']
    if node.get("error"):
        lines.append(f'<p class="error" role="alert">{_esc(node["error"])}</p>')
    entry = _cache_entry(manifest, node["key"])
    thumbs = []
    if entry is not None:
        record = json.loads((entry / "entry.json").read_text())
        for output, data in record["outputs"].items():
            if data["kind"] not in SHOWN_KINDS or (output == "images" and "image" in record["outputs"] and len(data["files"]) == 1):
                continue
            for index, name in enumerate(data["files"]):
                uri = _data_uri(entry / name)
                alt = f"{node_id} {output}" + (f" {index}" if len(data["files"]) > 1 else "")
                thumbs.append(f'<button type="button" data-full="{uri}" aria-label="show {_esc(alt)} full size">'
                              f'<img src="{uri}" alt="{_esc(alt)}"></button>')
    if thumbs:
        lines.append('<div class="thumbs">' + "".join(thumbs) + "</div>")
    fields = document.get("nodes", {}).get(node_id, {})
    if fields:
        lines.append("<details><summary>parameters</summary><pre>"
                     + _esc(yaml.safe_dump(fields, sort_keys=False, allow_unicode=True)) + "</pre></details>")
    extra = {k: node[k] for k in ("seed", "pipeline_class", "scheduler", "models") if node.get(k)}
    if extra:
        lines.append("<details><summary>details</summary><pre>" + _esc(yaml.safe_dump(extra, sort_keys=False)) + "</pre></details>")
    lines.append("</article>")
    return "\n".join(lines)


def write_run_report(run_dir: Path) -> Path:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    document = yaml.safe_load((run_dir / "workflow.yaml").read_text()) or {}
    name = manifest["workflow"]["name"]
    models = ", ".join(f"{ref} = {info.get('source')}" for ref, info in manifest.get("models", {}).items()) or "none"
    versions = ", ".join(f"{k} {v}" for k, v in manifest.get("libraries", {}).items())
    header = (f"<header><h1>{_esc(name)} · run {_esc(manifest['run_id'])}</h1><dl>"
              f"<dt>status</dt><dd data-status=\"{_esc(manifest['status'])}\">{_esc(manifest['status'])}"
              + (f" · {_esc(manifest['error'])}" if manifest.get("error") else "") + "</dd>"
              f"<dt>started</dt><dd>{_esc(manifest['started'])} ({manifest.get('seconds', 0):.2f} s)</dd>"
              f"<dt>seed</dt><dd>{_esc(manifest['seed'])}</dd>"
              f"<dt>device</dt><dd>{_esc(manifest['device'])} {_esc(manifest.get('device_name') or '')} · {_esc(manifest['dtype'])}</dd>"
              f"<dt>models</dt><dd>{_esc(models)}</dd>"
              f"<dt>versions</dt><dd>{_esc(versions)}</dd>"
              f"<dt>files</dt><dd><a href=\"manifest.json\">manifest.json</a> · <a href=\"workflow.yaml\">workflow.yaml</a></dd>"
              "</dl></header>")
    graph = f'<section class="graph" aria-label="graph">{graph_svg(manifest["nodes"], _edges(manifest))}</section>'
    cards = "\n".join(_node_card(node_id, node, document, manifest) for node_id, node in manifest["nodes"].items())
    body = f"{header}\n<main>\n{graph}\n<section class=\"nodes\" aria-label=\"nodes\">\n{cards}\n</section>\n</main>"
    path = run_dir / "report.html"
    write_atomic(path, _page(f"{name} run {manifest['run_id']}", body))
    return path


def write_sweep_index(sweep_dir: Path) -> Path:
    """A grid of each variant's first saved image: two swept values as rows and columns, more as a list."""
    index = json.loads((sweep_dir / "index.json").read_text())
    variants = index["variants"]
    keys = list(variants[0]["values"]) if variants else []

    def cell(variant: dict) -> str:
        run = sweep_dir / variant["run"]
        manifest = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").is_file() else {"nodes": {}}
        published = [f for node in manifest["nodes"].values() for f in node.get("published", [])]
        label = ", ".join(f"{k}={v}" for k, v in variant["values"].items())
        picture = (f'<img src="{_data_uri(run / published[0])}" alt="{_esc(label)}">' if published and (run / published[0]).is_file()
                   else f"<span>{_esc(variant['status'])}</span>")
        return (f'<td data-variant="{variant["variant"]}" data-values="{_esc(json.dumps(variant["values"]))}">'
                f'<a href="{_esc(variant["run"])}/report.html">{picture}</a></td>')

    if len(keys) == 2:
        rows = list(dict.fromkeys(json.dumps(v["values"][keys[0]]) for v in variants))
        cols = list(dict.fromkeys(json.dumps(v["values"][keys[1]]) for v in variants))
        lookup = {(json.dumps(v["values"][keys[0]]), json.dumps(v["values"][keys[1]])): v for v in variants}
        head = f"<tr><th scope=\"col\">{_esc(keys[0])} \\ {_esc(keys[1])}</th>" + "".join(
            f"<th scope=\"col\">{_esc(json.loads(c))}</th>" for c in cols) + "</tr>"
        body_rows = []
        for r in rows:
            cells = "".join(cell(lookup[(r, c)]) if (r, c) in lookup else "<td></td>" for c in cols)
            body_rows.append(f"<tr><th scope=\"row\">{_esc(json.loads(r))}</th>{cells}</tr>")
        table = f'<table class="grid">{head}{"".join(body_rows)}</table>'
    else:
        table = '<table class="grid"><tr><th scope="col">values</th><th scope="col">result</th></tr>' + "".join(
            f"<tr><th scope=\"row\">{_esc(', '.join(f'{k}={val}' for k, val in v['values'].items()))}</th>{cell(v)}</tr>"
            for v in variants) + "</table>"
    title = f"sweep {sweep_dir.name}"
    body = f"<header><h1>{_esc(title)}</h1><p>{_esc(index['workflow'])}: {len(variants)} variants</p></header><main>{table}</main>"
    path = sweep_dir / "index.html"
    write_atomic(path, _page(title, body))
    return path
