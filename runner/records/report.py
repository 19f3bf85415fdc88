"""report.html for a run folder and index.html for a sweep folder: one self-contained page each.

Everything the page shows is inside it (CSS, the graph as inline SVG, images as
data: URIs), so it works from file:// without network; the only links are to
files beside it (manifest, workflow, variant reports).
"""

from __future__ import annotations

import base64
import json
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote


from ..core.atomic import write_atomic
from ..core.kinds import IMAGE_KINDS
from ..core.sizes import format_size
from ..language.yaml_source import dump_yaml
from .graph_layout import layered_layout, layers
from .provenance import saved_file_record

SHOWN_KINDS = (*IMAGE_KINDS, "images")  # outputs a card shows as thumbnails
STATE_COLOURS = {"ran": "#2e7d32", "cached": "#1565c0", "failed": "#c62828", "interrupted": "#b85c00", "not run": "#757575"}
# graphs of up to this many columns are fitted to the page by default (a chain of ten nodes fits 1280 px); wider
# ones keep their natural size and scroll inside their box
FIT_COLUMNS = 10
STATE_MEANINGS = {"ran": "computed by this run", "cached": "taken from the cache (an earlier run computed it)",
                  "failed": "raised an error", "interrupted": "stopped before it finished",
                  "not run": "not reached (an earlier node failed or the run stopped)"}
KIND_COLOURS = {"image": "#6a1b9a", "mask": "#ef6c00", "depth": "#00838f", "latents": "#5d4037", "images": "#ad1457"}

STYLE = """
:root { font-family: system-ui, sans-serif; color: #1b1b1b; background: #fafafa; }
body { margin: 0 auto; padding: 1rem; max-width: 1200px; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; overflow-wrap: anywhere; }
header dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: 0; }
header dd { margin: 0; overflow-wrap: anywhere; }
.graph { overflow: auto; max-height: 80vh; background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: .4rem 0 1rem; }
.graph svg { display: block; max-width: none; }
.graph.fit svg { max-width: 100%; height: auto; }
.graph .edge-label { font: 9px sans-serif; paint-order: stroke; stroke: #fff; stroke-width: 3px; pointer-events: none; }
.graph-tools { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem; margin-top: 1rem; font-size: .9rem; }
.graph-tools [data-scroll-hint] { color: #555; }
.legend { display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; font-size: .85rem; margin: .3rem 0; padding: 0; list-style: none; }
.legend li { display: flex; align-items: center; gap: .3rem; }
.legend .state { display: inline-block; width: 1.6rem; height: .9rem; border: 2px solid var(--swatch); border-radius: 3px; background: #fff; }
.legend .kind { display: inline-block; width: 1.6rem; border-top: 2px solid var(--swatch); }
header ul { margin: 0; padding-left: 1.1rem; }
code { font-family: ui-monospace, monospace; font-size: .85rem; overflow-wrap: anywhere; }
.saved { list-style: none; padding: 0; margin: .4rem 0; display: flex; flex-direction: column; gap: .4rem; }
.saved li { display: flex; gap: .5rem; align-items: flex-start; min-width: 0; }
.saved img { display: block; max-width: 96px; max-height: 96px; border: 1px solid #ccc; background: repeating-conic-gradient(#eee 0 25%, #fff 0 50%) 0 0 / 12px 12px; }
.saved div { min-width: 0; overflow-wrap: anywhere; font-size: .85rem; }
table.grid figcaption { font-size: .8rem; max-width: 220px; margin: .2rem auto 0; }
.graph a:focus rect { stroke: #000; stroke-width: 3; }
.nodes { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 300px), 1fr)); gap: 1rem; }
.node { background: #fff; border: 1px solid #ddd; border-left: 6px solid var(--state); border-radius: 6px; padding: .6rem; min-width: 0; }
.node h2 { font-size: 1rem; margin: 0 0 .3rem; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 .4rem; border-radius: 3px; color: #fff; background: var(--state); font-size: .8rem; }
.error { color: #b71c1c; white-space: pre-wrap; overflow-wrap: anywhere; }
.fix { color: #1b5e20; white-space: pre-wrap; overflow-wrap: anywhere; }
.thumbs { display: flex; flex-wrap: wrap; gap: .4rem; margin: .4rem 0; }
.thumbs button { padding: 0; border: 1px solid #ccc; background: repeating-conic-gradient(#eee 0 25%, #fff 0 50%) 0 0 / 12px 12px; cursor: zoom-in; }
.thumbs img { display: block; max-width: 128px; max-height: 128px; image-rendering: auto; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .8rem; background: #f5f5f5; padding: .4rem; margin: .3rem 0 0; }
dialog { max-width: 95vw; max-height: 95vh; padding: .5rem; }
dialog img { max-width: 90vw; max-height: 85vh; display: block; }
.table { overflow-x: auto; }
table.grid { border-collapse: collapse; }
table.grid th, table.grid td { border: 1px solid #ddd; padding: .3rem; text-align: center; vertical-align: top; overflow-wrap: anywhere; }
table.grid img { max-width: 200px; max-height: 200px; display: block; margin: auto; }
table.grid figure { margin: 0; }
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
const graph = document.querySelector('.graph');
const fit = document.querySelector('button[data-fit]');
function checkGraph() {
  if (!graph) return;
  const scrolls = graph.scrollWidth > graph.clientWidth + 1;
  graph.dataset.scrolls = scrolls ? 'true' : 'false';
  document.querySelector('[data-scroll-hint]').hidden = !scrolls;
}
if (fit) fit.addEventListener('click', () => {
  const fitted = graph.classList.toggle('fit');
  fit.setAttribute('aria-pressed', fitted ? 'true' : 'false');
  fit.textContent = fitted ? 'actual size' : 'fit to width';
  checkGraph();
});
window.addEventListener('resize', checkGraph);
window.addEventListener('load', checkGraph);
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
    """html.escape(value, quote=True), written out: the html package builds its table of 2,231 named entities on
    import, which a report never needs (a cached run's start, issue 28)."""
    return (str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("'", "&#x27;"))


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{_esc(title)}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            "<dialog id=\"viewer\" aria-label=\"full-size image\"><img alt=\"\"></dialog>\n"
            f"<script>{SCRIPT}</script>\n</body>\n</html>\n")


def graph_svg(nodes: dict[str, dict], edges: list[tuple[str, str, str]]) -> str:
    """The DAG as a layered drawing, left to right (edges routed around the boxes, see graph_layout); nodes coloured
    by state, edges by data kind and labelled with it; each node links to its card. The SVG has its natural size;
    the page fits graphs of up to FIT_COLUMNS columns to its width (scaled down only), wider ones scroll."""
    layout = layered_layout(list(nodes), edges)
    width, height = f"{layout.width:g}", f"{layout.height:g}"
    parts = [f'<svg role="img" aria-label="workflow graph: {len(nodes)} nodes, {len(edges)} links" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">']
    for route in layout.routes:
        colour = KIND_COLOURS.get(route.kind, "#999")
        parts.append(f'<path class="edge" data-kind="{_esc(route.kind)}" data-source="{_esc(route.source)}" '
                     f'data-target="{_esc(route.target)}" d="{route.path}" fill="none" stroke="{colour}" stroke-width="2">'
                     f'<title>{_esc(route.source)} → {_esc(route.target)} ({_esc(route.kind)})</title></path>')
    for route in layout.routes:  # the kinds above every line, so no line crosses a label
        parts.append(f'<text class="edge-label" data-kind="{_esc(route.kind)}" x="{route.label[0]:g}" '
                     f'y="{route.label[1] - 3:g}" text-anchor="middle" fill="{KIND_COLOURS.get(route.kind, "#999")}">'
                     f'{_esc(route.kind)}</text>')
    for node, info in nodes.items():
        box = layout.boxes[node]
        colour = STATE_COLOURS.get(info["status"], "#757575")
        label = node if len(node) <= 22 else node[:21] + "…"
        parts.append(f'<a href="#node-{_esc(node)}" class="graph-node" data-node="{_esc(node)}" data-state="{_esc(info["status"])}">'
                     f'<title>{_esc(node)} ({_esc(info["type"])}, {_esc(info["status"])})</title>'
                     f'<rect x="{box.x:g}" y="{box.y:g}" width="{box.w:g}" height="{box.h:g}" rx="6" fill="#fff" '
                     f'stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{box.x + 8:g}" y="{box.y + 19:g}" font-size="13" font-weight="bold">{_esc(label)}</text>'
                     f'<text x="{box.x + 8:g}" y="{box.y + 36:g}" font-size="11" fill="{colour}">{_esc(info["type"])} · '
                     f'{_esc(info["status"])}</text></a>')
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


def _saved_records(node: dict, run_dir: Path) -> list[dict]:
    """The node's saved files as the manifest records them (one from before sizes were recorded: read from disk)."""
    return node.get("published_files") or [saved_file_record(run_dir, name) for name in node.get("published", [])]


def _saved_files(node_id: str, node: dict, run_dir: Path) -> str:
    """The files a node wrote into the run folder: thumbnail, link (relative, so the folder can move), pixel and byte
    size."""
    records = _saved_records(node, run_dir)
    if not records:
        return ""
    items = []
    for record in records:
        href = _esc(quote(record["path"]))
        if record.get("missing"):
            items.append(f'<li data-file="{_esc(record["path"])}"><div>{_esc(record["path"])} · missing from the run folder</div></li>')
            continue
        pixels = f'{record["width"]} × {record["height"]} px · ' if "width" in record else ""
        picture = (f'<a href="{href}" aria-label="open {_esc(record["path"])}"><img src="{href}" '
                   f'alt="{_esc(record["path"])}, saved by {_esc(node_id)}"></a>' if "width" in record else "")
        items.append(f'<li data-file="{_esc(record["path"])}">{picture}<div><a href="{href}">{_esc(record["path"])}</a><br>'
                     f'<span data-size>{pixels}{_esc(format_size(record["bytes"]))}</span></div></li>')
    return f'<ul class="saved" aria-label="files saved by {_esc(node_id)}">' + "".join(items) + "</ul>"


def _node_card(node_id: str, node: dict, document: dict, manifest: dict, run_dir: Path) -> str:
    colour = STATE_COLOURS.get(node["status"], "#757575")
    seconds = "" if node.get("seconds") in (None, 0) or node["status"] != "ran" else f" · {node['seconds']:.2f} s"
    cache = {"hit": "cache hit", "miss": "cache miss"}.get(node.get("cache"), "")
    lines = [f'<article class="node" id="node-{_esc(node_id)}" data-node="{_esc(node_id)}" data-state="{_esc(node["status"])}" '
             f'style="--state: {colour}" tabindex="-1">',
             f'<h2>{_esc(node_id)} <small>({_esc(node["type"])})</small></h2>',
             f'<span class="badge">{_esc(node["status"])}</span> {_esc(cache)}{_esc(seconds)}']
    if node.get("error"):
        lines.append(f'<p class="error" role="alert">{_esc(node["error"])}</p>')
        if node.get("fix"):
            lines.append(f'<p class="fix">fix: {_esc(node["fix"])}</p>')
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
    saved = _saved_files(node_id, node, run_dir)
    if saved:
        lines.append(saved)
    fields = document.get("nodes", {}).get(node_id, {})
    if fields:
        lines.append("<details><summary>parameters</summary><pre>"
                     + _esc(dump_yaml(fields, sort_keys=False, allow_unicode=True)) + "</pre></details>")
    extra = {k: node[k] for k in ("seed", "pipeline_class", "scheduler", "models") if node.get(k)}
    if extra:
        lines.append("<details><summary>details</summary><pre>" + _esc(dump_yaml(extra, sort_keys=False)) + "</pre></details>")
    lines.append("</article>")
    return "\n".join(lines)


def _resolved(document: dict) -> dict:
    """The workflow with its params put in (`${params.prompt}, oil painting` as the text the node got; a sweep
    variant's own values), links written back as `$node`: what each node's parameters were."""
    from ..language.refs import resolve_references, unresolve
    from ..language.yaml_source import SourceMap

    try:
        resolved, _problems = resolve_references(document, SourceMap("workflow.yaml"))
    except Exception:  # noqa: BLE001 - a damaged record shows as written rather than not at all
        return document
    return unresolve(resolved) if isinstance(resolved, dict) else document


def _overrides(overrides: list[str]) -> str:
    """The --set overrides as "path = value" items (a sweep's swept values are among them)."""
    if not overrides:
        return "none"
    items = []
    for override in overrides:
        path, _, value = override.partition("=")
        items.append(f"<li><code>{_esc(path)}</code> = <code>{_esc(value)}</code></li>")
    return '<ul class="overrides">' + "".join(items) + "</ul>"


def _command(record: dict) -> str:
    line = record.get("command")
    if not line:
        return "none recorded (a run from the Python API)"
    return f'<code class="command">{_esc(shlex.join(line))}</code>'


def _legend(nodes: dict[str, dict], edges: list[tuple[str, str, str]]) -> str:
    """What the colours mean: every node state and every link kind (those in this graph first)."""
    present_states = {node["status"] for node in nodes.values()}
    present_kinds = {kind for _s, _t, kind in edges}
    states = sorted(STATE_COLOURS, key=lambda s: s not in present_states)
    kinds = sorted(KIND_COLOURS, key=lambda k: k not in present_kinds)
    items = [f'<li data-legend-state="{_esc(s)}"><span class="state" style="--swatch: {STATE_COLOURS[s]}"></span>'
             f'<span title="{_esc(STATE_MEANINGS[s])}">{_esc(s)}</span></li>' for s in states]
    items += [f'<li data-legend-kind="{_esc(k)}"><span class="kind" style="--swatch: {KIND_COLOURS[k]}"></span>'
              f'<span>{_esc(k)} link</span></li>' for k in kinds]
    return f'<ul class="legend" aria-label="legend: node border colour is its state, line colour the kind of data">{"".join(items)}</ul>'


def write_run_report(run_dir: Path) -> Path:
    from .runs import load_manifest, recorded_workflow

    manifest = load_manifest(run_dir)
    document = recorded_workflow(run_dir)  # read as any workflow: limits, and a located error when damaged
    document = _resolved(document) if isinstance(document, dict) else {}
    name = manifest["workflow"]["name"]
    models = ", ".join(f"{ref} = {info.get('source')}" for ref, info in manifest.get("models", {}).items()) or "none"
    versions = ", ".join(f"{k} {v}" for k, v in manifest.get("libraries", {}).items())
    header = (f"<header><h1>{_esc(name)} · run {_esc(manifest['run_id'])}</h1><dl>"
              f"<dt>status</dt><dd data-status=\"{_esc(manifest['status'])}\">{_esc(manifest['status'])}"
              + (f" · {_esc(manifest['error'])}" if manifest.get("error") else "") + "</dd>"
              f"<dt>overrides</dt><dd>{_overrides(manifest['workflow'].get('overrides', []))}</dd>"
              f"<dt>command</dt><dd>{_command(manifest)}</dd>"
              f"<dt>started</dt><dd>{_esc(manifest['started'])} ({manifest.get('seconds', 0):.2f} s)</dd>"
              f"<dt>seed</dt><dd>{_esc(manifest['seed'])}</dd>"
              f"<dt>device</dt><dd>{_esc(manifest['device'])} {_esc(manifest.get('device_name') or '')} · {_esc(manifest['dtype'])}</dd>"
              f"<dt>models</dt><dd>{_esc(models)}</dd>"
              f"<dt>versions</dt><dd>{_esc(versions)}</dd>"
              f"<dt>files</dt><dd><a href=\"manifest.json\">manifest.json</a> · <a href=\"workflow.yaml\">workflow.yaml</a></dd>"
              "</dl></header>")
    edges = _edges(manifest)
    fitted = len(set(layers({node: [s for s, t, _k in edges if t == node] for node in manifest["nodes"]}).values())) \
        <= FIT_COLUMNS
    graph = (f'<div class="graph-tools"><button type="button" data-fit aria-pressed="{"true" if fitted else "false"}">'
             f'{"actual size" if fitted else "fit to width"}</button>'
             f'<span data-scroll-hint hidden>the graph is wider than its box: scroll it sideways, or fit it to the width</span></div>'
             f'{_legend(manifest["nodes"], edges)}'
             f'<section class="graph{" fit" if fitted else ""}" aria-label="graph" tabindex="0">'
             f'{graph_svg(manifest["nodes"], edges)}</section>')
    cards = "\n".join(_node_card(node_id, node, document, manifest, run_dir) for node_id, node in manifest["nodes"].items())
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
        saved = [(node_id, record) for node_id, node in manifest["nodes"].items()
                 for record in _saved_records(node, run)]
        pictures = [(node_id, record) for node_id, record in saved if "width" in record]
        label = ", ".join(f"{k}={v}" for k, v in variant["values"].items())
        report = f'{quote(variant["run"])}/report.html'
        counts = variant.get("counts") or manifest.get("counts") or {}
        status = variant["status"]
        if pictures:
            node_id, record = pictures[0]
            href = _esc(f'{quote(variant["run"])}/{quote(record["path"])}')
            of = f", 1 of {len(saved)} saved" if len(saved) > 1 else ""
            picture = f'<a href="{_esc(report)}"><img src="{href}" alt="{_esc(label)}: {_esc(record["path"])}"></a>'
            shown = (f'<a href="{href}" data-shown-file="{_esc(record["path"])}">{_esc(record["path"])}</a> '
                     f'<small>({_esc(node_id)}{of})</small><br>')
        else:
            picture, shown = "", '<span data-shown-file="">no saved image</span><br>'
        colour = STATE_COLOURS.get({"ok": "ran"}.get(status, status), "#757575")
        caption = (f'{shown}<span class="badge" style="--state: {colour}" data-variant-status="{_esc(status)}">{_esc(status)}</span> '
                   f'<span data-counts>ran {counts.get("ran", 0)} · cached {counts.get("cached", 0)}'
                   + (f' · failed {counts["failed"]}' if counts.get("failed") else "")
                   + (f' · not run {counts["not run"]}' if counts.get("not run") else "")
                   + f'</span> · <a href="{_esc(report)}">report</a>')
        return (f'<td data-variant="{variant["variant"]}" data-values="{_esc(json.dumps(variant["values"]))}">'
                f'<figure>{picture}<figcaption>{caption}</figcaption></figure></td>')

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
    statuses = ", ".join(f"{sum(1 for v in variants if v['status'] == s)} {s}" for s in dict.fromkeys(v["status"] for v in variants))
    body = (f"<header><h1>{_esc(title)}</h1><dl><dt>workflow</dt><dd>{_esc(index['workflow'])}</dd>"
            f"<dt>variants</dt><dd data-summary>{len(variants)}" + (f" ({_esc(statuses)})" if variants else "") + "</dd>"
            f"<dt>overrides</dt><dd>{_overrides(index.get('overrides', []))}</dd>"
            f"<dt>command</dt><dd>{_command(index)}</dd></dl></header><main><div class=\"table\">{table}</div></main>")
    path = sweep_dir / "index.html"
    write_atomic(path, _page(title, body))
    return path


def write_report(folder: Path) -> Path | None:
    """report.html (a run) or index.html (a sweep); a failure here is reported but never fails the run."""
    from ..records.report import write_run_report, write_sweep_index

    try:
        return write_sweep_index(folder) if (folder / "index.json").is_file() else write_run_report(folder)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: report not written for {folder}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
