"""Command line: runner run | watch | validate | schema | nodes | graph | report | lock | runs | reproduce | extract | import |
models | cache.

Exit status: 0 success, 1 a node failed, 2 the workflow or the command line is invalid.
Commands that need no model never import torch, diffusers or transformers.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_NODE_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner",
        description="Run declarative YAML workflows on Hugging Face diffusers, with a persistent cache.",
        epilog="Exit status: 0 success, 1 a node failed, 2 the workflow or command line is invalid, 130 interrupted (Ctrl-C).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_model_paths(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model-path", dest="model_paths", action="append", default=[], type=Path, metavar="DIR",
                         help="look for bare model names (model: dreamshaper_8.safetensors) in DIR: ComfyUI's layout "
                              "(checkpoints/, controlnet/, loras/, vae/, ...) then flat; or a ComfyUI "
                              "extra_model_paths.yaml (repeatable; before RUNNER_MODEL_PATHS)")

    def with_consent(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--allow-pickle", dest="allow_pickle", action="append", default=[], metavar="MODEL",
                         help="let the model entry MODEL (a name under models:) load pickle weights, which can run code "
                              "when loaded, if the entry asks for it (allow_pickle: true); repeatable; recorded in the "
                              "manifest")
        sub.add_argument("--trust-remote-code", dest="trust_remote_code", action="append", default=[], metavar="MODEL",
                         help="let the model entry MODEL run Python code shipped with the model, if the entry asks for "
                              "it (trust_remote_code: true); repeatable; recorded in the manifest")

    def with_overrides(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("workflow", type=Path, help="workflow YAML file")
        sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                         help="override a value by dotted path, parsed as YAML (repeatable), e.g. --set params.prompt='a red barn'")
        sub.add_argument("--allow-path", dest="allow_paths", action="append", default=[], type=Path, metavar="DIR",
                         help="let input files (load_image path:) come from DIR too, not only from the workflow "
                              "file's folder (repeatable; symlinks are followed before the check)")
        with_model_paths(sub)
        with_consent(sub)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    def with_private_urls(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--allow-private-urls", action="store_true",
                         help="let load_image url: reach loopback, private, link-local and cloud metadata addresses "
                              "(refused by default, also after a redirect); recorded in the manifest")

    run = commands.add_parser("run", help="execute a workflow, or the one embedded in a PNG runner saved (cached nodes are not re-run)")
    with_overrides(run)
    run.add_argument("--out", type=Path, default=Path("outputs"), help="folder for run folders (default: ./outputs)")
    run.add_argument("--only", nargs="+", default=[], metavar="NODE", help="run only these nodes and what they need")
    run.add_argument("--force", nargs="+", default=[], metavar="NODE", help="re-run these nodes even if cached")
    run.add_argument("--no-cache", action="store_true", help="re-run every node (results still stored)")
    run.add_argument("--dry-run", action="store_true", help="show what would run and what comes from cache; run nothing")
    run.add_argument("--sweep", action="append", default=[], metavar="PATH=V1,V2,...",
                     help="run once per value (repeatable: a grid of all combinations); values parsed as YAML")
    run.add_argument("--zip", action="store_true", help="pair the --sweep lists instead of combining them")
    run.add_argument("--seeds", metavar="A-B", help="sweep the workflow seed, e.g. 1-8 or 1,5,9")
    run.add_argument("--max-variants", type=int, default=1000, metavar="N",
                     help="refuse sweeps of more variants than this (default 1000), counted before any is built")
    run.add_argument("--open", action="store_true", help="open the run's report.html (a sweep's index.html) when done")
    run.add_argument("--deterministic", action="store_true",
                     help="use PyTorch's deterministic algorithms (and cuDNN/cuBLAS settings); recorded in the manifest")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="where nodes run: this process (local), or a pool of warm Ray workers (see Running on a cluster)")
    run.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster ('auto', 'ray://HOST:10001'); "
                                                           "default: start a local one for the command")
    run.add_argument("--workers", type=int, metavar="N", help="Ray workers (default: one per GPU, or 1 without GPUs)")
    run.add_argument("--cpus-per-worker", type=float, metavar="N", help="CPUs each Ray worker reserves (default 1)")
    run.add_argument("--max-ram", metavar="SIZE", help="memory budget for loaded models in RAM, e.g. 16GB "
                     "(default: the available memory less 2 GB); least recently used models are released first")
    run.add_argument("--max-vram", metavar="SIZE", help="memory budget for loaded models on the GPU, e.g. 20GB "
                     "(default: the free GPU memory less 1 GB)")
    with_private_urls(run)
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--quiet", "-q", action="store_true", help="print only errors and the run folder")
    mode.add_argument("--plain", action="store_true", help="plain line-per-event output (default when not a terminal)")

    watch = commands.add_parser("watch", help="run a workflow, then again on every save of it or of a file it reads "
                                "(only what changed; models stay loaded)")
    with_overrides(watch)
    watch.add_argument("--out", type=Path, default=Path("outputs"), help="folder for run folders (default: ./outputs)")
    watch.add_argument("--open", action="store_true", help="open watch.html, which follows the newest pass's report")
    watch.add_argument("--max-ram", metavar="SIZE", help="memory budget for loaded models in RAM, e.g. 16GB")
    watch.add_argument("--max-vram", metavar="SIZE", help="memory budget for loaded models on the GPU, e.g. 20GB")
    with_private_urls(watch)
    watch_mode = watch.add_mutually_exclusive_group()
    watch_mode.add_argument("--quiet", "-q", action="store_true", help="print only the summary line of each pass and errors")
    watch_mode.add_argument("--plain", action="store_true", help="plain line-per-event output (default when not a terminal)")

    validate = commands.add_parser("validate", help="check a workflow and report every problem")
    with_overrides(validate)

    schema = commands.add_parser("schema", help="print the workflow JSON Schema (for editors)")
    schema.add_argument("--out", metavar="FILE", help="write to this file instead of stdout (- for stdout; a device or "
                                                      "FIFO is written into)")
    schema.add_argument("--force", action="store_true", help="replace FILE if it holds something else")

    nodes = commands.add_parser("nodes", help="list node types, or show one type's fields and outputs")
    nodes.add_argument("type", nargs="?", help="a node type, e.g. txt2img")

    graph = commands.add_parser("graph", help="print the workflow graph")
    with_overrides(graph)
    graph.add_argument("--format", choices=("text", "mermaid"), default="text", help="text tree (default) or Mermaid flowchart")

    report = commands.add_parser("report", help="write a run's report.html (or a sweep's index.html) again")
    report.add_argument("folder", metavar="RUN", help="run or sweep folder, run id (RUN_ID, SWEEP/NNN) or sweep id, "
                        "a unique prefix of one, NAME/RUN_ID, or 'latest'")
    report.add_argument("--out", type=Path, default=Path("outputs"), help="folder holding run folders (default: ./outputs)")
    report.add_argument("--open", action="store_true", help="open it in a browser")

    lock = commands.add_parser("lock", help="pin every model of a workflow (commit and file hashes) in WF.lock")
    with_overrides(lock)

    runs = commands.add_parser("runs", help="list past runs, show one, or diff two")
    runs.add_argument("action", choices=("list", "show", "diff"), nargs="?", default="list")
    runs.add_argument("runs", nargs="*", metavar="RUN", help="run folder, run id (RUN_ID, or SWEEP/NNN for a sweep's "
                      "variant) or a unique prefix of one, NAME/RUN_ID, or 'latest'")
    runs.add_argument("--out", type=Path, default=Path("outputs"), help="folder holding run folders (default: ./outputs)")

    reproduce = commands.add_parser("reproduce", help="run a recorded run again without the cache and compare its outputs")
    reproduce.add_argument("run", help="run folder, run id (or a unique prefix), NAME/RUN_ID, or 'latest'")
    reproduce.add_argument("--out", type=Path, default=Path("outputs"), help="folder holding run folders (default: ./outputs)")
    reproduce.add_argument("--quiet", "-q", action="store_true", help="print only the verdict")
    reproduce.add_argument("--allow-path", dest="allow_paths", action="append", default=[], type=Path, metavar="DIR",
                           help="as for run: input files may come from DIR too (the recorded run's allow_paths are "
                                "not taken from its manifest: a run folder may come from someone else)")
    with_model_paths(reproduce)
    with_consent(reproduce)
    with_private_urls(reproduce)

    extract = commands.add_parser("extract", help="print the workflow embedded in a PNG that runner saved")
    extract.add_argument("image", type=Path, help="a PNG written by save_image")
    extract.add_argument("--out", metavar="FILE", help="write the workflow to this file instead of stdout (- for stdout; "
                                                       "missing folders are made)")
    extract.add_argument("--force", action="store_true", help="replace FILE if it holds something else")

    importer = commands.add_parser("import", help="convert a graph from another tool into a workflow file",
                                   description="Convert a graph from another tool into a runner workflow.")
    formats = importer.add_subparsers(dest="import_format", metavar="FORMAT", required=True)
    comfyui = formats.add_parser(
        "comfyui", help="a ComfyUI API-format graph (Save (API) JSON, or a PNG ComfyUI saved)",
        description="Convert a ComfyUI API-format prompt (the JSON that Save (API) writes, or the 'prompt' text chunk "
                    "of a PNG that ComfyUI saved) made of ComfyUI's core nodes into a runner workflow. Other nodes "
                    "are refused (exit 2) and nothing is written. Results differ from ComfyUI's: samplers and noise "
                    "are diffusers' (see the README, 'Importing ComfyUI graphs').")
    comfyui.add_argument("file", type=Path, help="ComfyUI API-format .json, or a PNG that ComfyUI saved")
    comfyui.add_argument("-o", "--out", metavar="FILE", help="write the workflow to this file (default, or -: print "
                                                             "it); input image paths are written relative to it")
    comfyui.add_argument("--force", action="store_true", help="replace FILE if it holds something else")
    comfyui.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    models = commands.add_parser("models", help="list the models found in the model folders, by kind",
                                 description="List what bare model names can name: the files and folders in the model "
                                             "folders (--model-path, then RUNNER_MODEL_PATHS), by ComfyUI folder kind.")
    models.add_argument("action", choices=("list",), nargs="?", default="list")
    with_model_paths(models)
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cache = commands.add_parser(
        "cache", help="show, check, prune or clear the node cache",
        description="info: what the cache folder holds, by kind; verify: check every entry's files against the sha256 "
                    "recorded when it was written (damaged entries go to quarantine/, their nodes re-run next time; "
                    "exit 1 if any); prune: evict entries least recently used first; clear: delete every node result. "
                    "Entries a running process is using are skipped by prune and clear.")
    cache.add_argument("action", choices=("info", "verify", "prune", "clear"), nargs="?", default="info")
    cache.add_argument("--max-size", metavar="SIZE", help="prune: evict least recently used entries until the node "
                                                          "results total at most SIZE (e.g. 10GB, 500MB)")
    cache.add_argument("--older-than", metavar="DAYS", type=float, help="prune: evict entries not used for DAYS days")
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the real command line (not a test calling main): SIGTERM and SIGHUP stop a run like Ctrl-C
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _as_interrupt)
    code = _main(argv)
    if argv is None:
        # everything is written: a signal from now on must neither change the exit status nor print a traceback
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
    if code == EXIT_INTERRUPTED and argv is None:
        # A Ctrl-C that landed inside an import can make CPython re-raise SIGINT at shutdown (exit -2);
        # everything is written and flushed, so leave with the documented status instead.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return code


def _as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = ["runner", *(sys.argv[1:] if argv is None else argv)]  # recorded in run manifests
    from ..core.errors import Problems

    try:
        return COMMANDS[args.command](args)
    except Problems as exc:  # an invalid workflow (WorkflowError) or command line (CommandError): exit status 2
        if args.debug:
            raise
        _print_problems(exc)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _print_problems(exc) -> None:
    print(str(exc), file=sys.stderr)


def _console(stderr: bool = False, wide: bool = False):
    """A rich console; `wide` tables are not cut to 80 columns when the output goes to a file or a pipe."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if wide and not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=200)
    return console


def cmd_validate(args) -> int:
    from ..engine.loading import consent_of, load_workflow

    started = time.perf_counter()
    workflow = load_workflow(args.workflow, args.overrides, allow_paths=args.allow_paths, model_paths=args.model_paths,
                             consent=consent_of(args))
    types = sorted({node.type.name for node in workflow.nodes.values()})
    print(f"OK {args.workflow}: workflow '{workflow.name}', {_count(workflow.nodes, 'node')} ({', '.join(types)}), "
          f"{_count(workflow.models, 'model')}, {_count(workflow.params, 'param')} "
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
    if args.type is None:
        print_catalogue(console)
        return EXIT_OK
    if args.type not in NODE_TYPES:
        raise CommandError([Problem(Location("runner nodes"), (), f"unknown node type '{args.type}'{did_you_mean(args.type, NODE_TYPES)}",
                                     "run 'runner nodes' to list them")])
    print_node_type(console, NODE_TYPES[args.type])
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
    if args.json:
        print(json.dumps({"model_paths": [root.given for root in roots],
                          "models": [{"kind": m.folder_kind, "name": m.name, "bytes": m.size, "path": str(m.path)}
                                     for m in found]}, indent=2))
        return EXIT_OK
    if not roots:
        print(f"no model folders: give --model-path DIR or set {ENV_VAR}")
        return EXIT_OK
    from rich.table import Table

    table = Table("kind", "name", "size", "where", box=None)
    for model in sorted(found, key=lambda m: (m.folder_kind, m.name.lower())):
        table.add_row(model.folder_kind, model.name, format_size(model.size), str(model.path.parent))
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
    "runs": cmd_runs,
    "reproduce": cmd_reproduce,
    "extract": cmd_extract,
    "import": cmd_import,
    "models": cmd_models,
    "cache": cmd_cache,
}
