"""The body of each command (run, watch, reproduce and import have their own modules)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import EXIT_NODE_FAILED, EXIT_OK


def _console(stderr: bool = False, wide: bool = False):
    """A rich console; `wide` tables are not cut to 80 columns when the output goes to a file or a pipe."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if wide and not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=200)
    return console


def cmd_validate(args) -> int:
    from ..engine.loading import consent_of, load_workflow

    from ..engine.sweep import check_file_sweep

    started = time.perf_counter()
    workflow = load_workflow(args.workflow, args.overrides, allow_paths=args.allow_paths, model_paths=args.model_paths,
                             consent=consent_of(args))
    # the file's own sweep: every variant is built and checked, as `runner run` (and --dry-run) does
    swept = check_file_sweep(workflow, lambda values: load_workflow(
        args.workflow, args.overrides + values, allow_paths=args.allow_paths, model_paths=args.model_paths,
        consent=consent_of(args)), str(args.workflow))
    types = sorted({node.type.name for node in workflow.nodes.values()})
    print(f"OK {args.workflow}: workflow '{workflow.name}', {_count(workflow.nodes, 'node')} ({', '.join(types)}), "
          f"{_count(workflow.models, 'model')}, {_count(workflow.params, 'param')}"
          + (f", a sweep of {_count(range(swept), 'variant')}" if swept else "") + " "
          f"[{(time.perf_counter() - started) * 1000:.0f} ms]")
    return EXIT_OK


def _count(items, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def cmd_schema(args) -> int:
    from .output_file import write_output
    from ..schema import schema_text

    text = schema_text()
    if args.out is None:
        sys.stdout.write(text)
    elif write_output(args.out, text, force=args.force) != "standard output":
        print(f"wrote {args.out}")
    return EXIT_OK


def cmd_nodes(args) -> int:
    from .catalogue import print_catalogue, print_node_type
    from ..core.errors import CommandError, Location, Problem
    from ..core.suggest import did_you_mean
    from ..nodes import NODE_TYPES

    console = _console()
    if args.type is None and args.every_pipeline:
        raise CommandError([Problem(Location("runner nodes --all"), (), "--all lists one node type's pipeline defaults, "
                                    "and no type was named", "name one, e.g. runner nodes txt2img --all")])
    if args.type is None:
        print_catalogue(console)
        return EXIT_OK
    if args.type not in NODE_TYPES:
        from ..importers.comfyui.graph import SUPPORTED

        comfy = next((name for name in SUPPORTED if name.lower() == args.type.lower()), None)
        equivalent = (f"'{comfy}' is a ComfyUI node, which 'runner import comfyui GRAPH.json' maps to runner's nodes "
                      "(docs/how-to/comfyui-import.md has the table)") if comfy else ""
        raise CommandError([Problem(Location("runner nodes"), (), f"unknown node type '{args.type}'{did_you_mean(args.type, NODE_TYPES)}",
                                     (f"{equivalent}; " if equivalent else "")
                                     + "run 'runner nodes' to list them")])
    print_node_type(console, NODE_TYPES[args.type], every=args.every_pipeline)
    return EXIT_OK


def cmd_graph(args) -> int:
    from .graph_view import mermaid, text_tree
    from ..engine.loading import consent_of, load_workflow

    workflow = load_workflow(args.workflow, args.overrides, allow_paths=args.allow_paths, model_paths=args.model_paths,
                             check_files=False, consent=consent_of(args))  # drawing the graph needs no file: `validate` checks them
    if args.format == "mermaid":
        sys.stdout.write(mermaid(workflow))
    else:
        _console().print(text_tree(workflow))
    return EXIT_OK


def cmd_run(args) -> int:
    from .run import run_command

    return run_command(args)


def cmd_watch(args) -> int:
    from .watch import watch_command

    return watch_command(args)


def cmd_runs(args) -> int:
    from ..records.runs import print_diff, print_list, print_show, resolve_run
    from ..core.errors import CommandError, Location, Problem

    console = _console(wide=True)
    wanted = {"list": 0, "show": 1, "diff": 2}[args.action]
    if len(args.runs) != wanted:
        raise CommandError([Problem(Location(f"runner runs {args.action}"), (),
                                     f"'{args.action}' takes {wanted} run{'s' if wanted != 1 else ''}, got {len(args.runs)}",
                                     "e.g. runner runs diff RUN_A RUN_B")])
    if args.action == "list":
        print_list(console, args.out)
    elif args.action == "show":
        print_show(console, resolve_run(args.runs[0], args.out, "runner runs show"))
    else:
        print_diff(console, resolve_run(args.runs[0], args.out, "runner runs diff"),
                   resolve_run(args.runs[1], args.out, "runner runs diff"))
    return EXIT_OK


def cmd_report(args) -> int:
    from .run import open_in_browser
    from ..engine.run import write_report
    from ..core.errors import CommandError, Location, Problem

    from ..records.runs import load_manifest, resolve_run

    folder = Path(args.folder)
    if folder.is_dir() and not ((folder / "manifest.json").is_file() or (folder / "index.json").is_file()):
        raise CommandError([Problem(Location(str(folder)), (), "not a run folder (no manifest.json) or sweep folder (no index.json)",
                                     "pass a folder that 'runner run' wrote, e.g. outputs/NAME/RUN_ID, or a run id or 'latest'")])
    folder = resolve_run(args.folder, args.out, "runner report", sweeps=True)
    if (folder / "manifest.json").is_file():
        load_manifest(folder)  # a damaged record is a located error here, not a warning
    page = write_report(folder)
    if page is None:
        return EXIT_NODE_FAILED
    print(f"wrote {page}")
    if args.open:
        open_in_browser(page)
    return EXIT_OK


def cmd_lock(args) -> int:
    from ..core.paths import models_dir
    from ..executor.cache import NodeCache, default_cache_dir
    from ..engine.loading import consent_of, load_workflow
    from ..records.lock import write_lock

    workflow = load_workflow(args.workflow, args.overrides, allow_paths=args.allow_paths, model_paths=args.model_paths,
                             consent=consent_of(args))
    cache = NodeCache(default_cache_dir())
    path = write_lock(workflow, models_dir(cache.root), cache.hashes)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_export(args) -> int:
    import shlex

    from .output_file import write_output
    from ..engine.session import Session

    session = Session(allow_paths=args.allow_paths, model_paths=args.model_paths,
                      allow_pickle=list(getattr(args, "allow_pickle", ()) or ()),
                      trust_remote_code=list(getattr(args, "trust_remote_code", ()) or ()), consent_by="command line")
    command = shlex.join(["runner", "export", str(args.workflow)]
                         + [part for value in args.overrides for part in ("--set", value)])
    text = session.export(args.workflow, args.overrides, command=command)
    if args.out is None:
        sys.stdout.write(text)
    elif write_output(args.out, text, force=args.force) != "standard output":
        print(f"wrote {args.out}")
    return EXIT_OK


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce_command

    return reproduce_command(args)


def cmd_extract(args) -> int:
    from .output_file import write_output
    from ..records.runs import embedded_workflow

    text, _original = embedded_workflow(args.image)
    if args.out is None:
        sys.stdout.write(text)
    elif write_output(args.out, text, force=args.force) != "standard output":
        print(f"wrote {args.out}")
    return EXIT_OK


def cmd_import(args) -> int:
    from .import_comfyui import import_command

    return import_command(args)


def cmd_models(args) -> int:
    import json

    from ..engine.model_paths import ENV_VAR, model_roots
    from ..models.model_folders import list_models
    from ..core.sizes import format_size

    roots = model_roots(args.model_paths)
    found = list_models(roots)

    def family_of(path) -> str | None:
        """The model family it was made for, in users' words, when its files say (a checkpoint, ControlNet, LoRA)."""
        from ..models.inventory import family_of as made_for

        family = made_for(path)
        return family.name if family is not None else None

    if args.json:
        print(json.dumps({"model_paths": [root.given for root in roots],
                          "models": [{"kind": m.folder_kind, "name": m.name, "family": family_of(m.path),
                                      "bytes": m.size, "path": str(m.path)} for m in found]}, indent=2))
        return EXIT_OK
    if not roots:
        print(f"no model folders: give --model-path DIR or set {ENV_VAR}")
        return EXIT_OK
    from rich.table import Table

    table = Table("kind", "name", "family", "size", "where", box=None)
    for model in sorted(found, key=lambda m: (m.folder_kind, m.name.lower())):
        table.add_row(model.folder_kind, model.name, family_of(model.path) or "", format_size(model.size),
                      str(model.path.parent))
    console = _console(wide=True)
    console.print(table)
    console.print(f"{len(found)} model{'' if len(found) == 1 else 's'} in {', '.join(root.given for root in roots)}")
    return EXIT_OK


def cmd_cache(args) -> int:
    from ..executor import maintenance
    from ..executor.cache import MARKER_FILE, CannotRemove, NodeCache, NotACache, default_cache_dir
    from ..core.errors import CommandError, Location, Problem
    from ..core.sizes import format_size, parse_size

    cache = NodeCache(default_cache_dir())
    where = Location(f"runner cache {args.action}")
    if cache.root.exists() and not cache.root.is_dir():
        raise CommandError([Problem(Location(str(cache.root)), (), "the cache folder is a file, not a folder",
                                     "point RUNNER_CACHE_DIR at a folder")])
    if args.action != "prune" and (args.max_size is not None or args.older_than is not None):
        raise CommandError([Problem(where, (), "--max-size and --older-than belong to 'runner cache prune'",
                                     "run 'runner cache prune --max-size SIZE --older-than DAYS'")])
    if args.action == "clear":
        try:
            removed, skipped = maintenance.clear(cache)
        except CannotRemove as exc:
            raise CommandError([Problem(where, (), str(exc), "run it as the cache's owner, or point RUNNER_CACHE_DIR at "
                                                              "a cache you can write")]) from None
        except NotACache as exc:
            raise CommandError([Problem(where, (), str(exc),
                                         f"point RUNNER_CACHE_DIR at runner's cache folder (one holding {MARKER_FILE})")]) from None
        print(f"removed {removed} cached node results from {cache.root}"
              + (f"; kept {skipped} in use by a running process" if skipped else ""))
    elif args.action == "verify":
        checked, damaged = maintenance.verify(cache)
        for key, problem in damaged:
            print(f"damaged: {key}: {problem} (moved to {cache.quarantine_dir})")
        print(f"{cache.root}: checked {checked} node results, {len(damaged)} damaged"
              + (" (moved aside; their nodes run again when next needed)" if damaged else ""))
        return EXIT_NODE_FAILED if damaged else EXIT_OK
    elif args.action == "prune":
        if args.max_size is None and args.older_than is None:
            raise CommandError([Problem(where, (), "say what to prune", "give --max-size SIZE and/or --older-than DAYS")])
        try:
            max_size = parse_size(args.max_size)
        except ValueError as exc:
            raise CommandError([Problem(where, (), f"--max-size: {exc}")]) from None
        if args.older_than is not None and not (args.older_than >= 0):
            raise CommandError([Problem(where, (), "--older-than must be a number of days, 0 or more")])
        try:
            removed, freed, skipped = maintenance.prune(cache, max_size=max_size, older_than_s=None
                                                        if args.older_than is None else args.older_than * 86400)
        except CannotRemove as exc:
            raise CommandError([Problem(where, (), str(exc), "run it as the cache's owner, or point RUNNER_CACHE_DIR at "
                                                              "a cache you can write")]) from None
        entries, size = maintenance.stats(cache)
        print(f"removed {removed} cached node results ({format_size(freed)}) from {cache.root}; {entries} left "
              f"({format_size(size)})" + (f"; kept {skipped} in use by a running process" if skipped else ""))
    else:
        info = maintenance.info(cache)
        entries, size = info.get("node results", (0, 0))
        print(f"{cache.root}: {entries} cached node results, {size / 1e6:.1f} MB")
        for kind, (count, total) in info.items():
            if kind != "node results":
                print(f"  {kind}: {count} ({format_size(total)})")
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "watch": cmd_watch,
    "validate": cmd_validate,
    "schema": cmd_schema,
    "nodes": cmd_nodes,
    "graph": cmd_graph,
    "report": cmd_report,
    "lock": cmd_lock,
    "export": cmd_export,
    "runs": cmd_runs,
    "reproduce": cmd_reproduce,
    "extract": cmd_extract,
    "import": cmd_import,
    "models": cmd_models,
    "cache": cmd_cache,
    "serve": lambda args: _serve("cmd_serve", args),
    "submit": lambda args: _serve("cmd_submit", args),
    "jobs": lambda args: _serve("cmd_jobs", args),
}


def _serve(name: str, args) -> int:
    from . import serve

    return getattr(serve, name)(args)
