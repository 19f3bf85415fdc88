"""`runner run`: a Session runs the workflow (or each variant of a sweep) into its own run folder."""

from __future__ import annotations

import sys
from pathlib import Path

from . import work_starts
from ..engine.loading import consent_of, load_for_run
from ..engine.progress import summary_table
from ..engine.session import Session, check_node_names
from ..executor.cache import NodeCache
from ..executor.plan import Plan
from ..core.errors import CommandError, Location, Problem
from ..language.workflow import Workflow


def open_session(args) -> Session:
    """The Session a command runs in, from its --out, --max-ram and --max-vram options."""
    try:
        return Session(out=args.out, max_ram=getattr(args, "max_ram", None), max_vram=getattr(args, "max_vram", None),
                       allow_paths=getattr(args, "allow_paths", None), model_paths=getattr(args, "model_paths", None),
                       allow_private_urls=getattr(args, "allow_private_urls", False),
                       executor=getattr(args, "executor", "local"), executor_options=executor_options(args),
                       allow_pickle=getattr(args, "allow_pickle", None),
                       trust_remote_code=getattr(args, "trust_remote_code", None), consent_by="command line")
    except CommandError as exc:
        if exc.problems and exc.problems[0].location.source != "Session":
            raise
        option = "--max-ram" if getattr(args, "max_ram", None) else "--max-vram"
        raise CommandError([Problem(Location(option), (), p.message, "e.g. --max-ram 16GB") for p in exc.problems]) from None


# command-line option -> the executor option it sets (the ones given are passed to the chosen executor)
EXECUTOR_FLAGS = {"ray_address": "address", "workers": "workers", "cpus_per_worker": "cpus_per_worker"}


def executor_options(args) -> dict:
    """The executor options given on the command line (--ray-address, --workers, --cpus-per-worker)."""
    return {option: getattr(args, flag) for flag, option in EXECUTOR_FLAGS.items() if getattr(args, flag, None) is not None}


def command_record(args) -> dict:
    """{"command": [...]}: the command line a run came from (as `runner ARGS`), for its manifest; {} without one."""
    line = getattr(args, "command_line", None)
    return {"command": [str(part) for part in line]} if line else {}


def run_command(args) -> int:

    workflow = load_for_run(args.workflow, args.overrides, args.allow_paths, args.model_paths, consent_of(args))
    check_node_names(workflow, args.only, "only")
    check_node_names(workflow, args.force, "force")
    session = open_session(args)
    try:
        return _run_in(session, args, workflow)
    finally:
        session.executor.close()  # the Ray workers, and the local cluster started for this command


def _run_in(session: Session, args, workflow: Workflow) -> int:
    from ..engine.sweep import check_variant_count, file_sweeps, parse_cli_sweeps

    cache = session.cache
    dimensions = (file_sweeps(workflow.document.get("sweep"), str(args.workflow))
                  + parse_cli_sweeps(args.sweep, args.zip, args.seeds, args.max_variants))
    if dimensions:  # counted before the Session builds any variant
        check_variant_count(dimensions, args.max_variants)
        work_starts()
        return sweep_command(args, session)
    if getattr(args, "batch", None) is not None:
        raise CommandError([Problem(Location("--batch"), (), "it groups the variants of a sweep, and this run is not a "
                                    "sweep", "add --seeds A-B or --sweep PATH=V1,V2 (or a sweep: section), or drop --batch")])
    plan = session.plan(workflow, args.only, args.deterministic)
    if args.dry_run:
        session.check_budget(workflow, plan, force=set(args.force or []), no_cache=args.no_cache)  # as the run would
        session.check_out(create=False)
        return _dry_run(workflow, plan, cache, args, _console())
    mode = "quiet" if args.quiet else ("plain" if args.plain or not sys.stdout.isatty() else "live")
    work_starts()
    run = session.run(workflow, plan=plan, force=args.force, no_cache=args.no_cache, mode=mode, extra=command_record(args))
    if mode != "quiet":
        rows = [(n, workflow.nodes[n].type.name, run.results[n].status if n in run.results else "not run",
                 run.results[n].seconds if n in run.results else 0.0) for n in plan.order]
        _console(no_color=mode == "plain").print(summary_table(rows))
    if run.error:
        if getattr(args, "debug", False):  # the failed node's traceback (the manifest names a file holding it)
            node = next((record for record in run.manifest.get("nodes", {}).values() if record.get("traceback")), None)
            if node is not None and (run.folder / node["traceback"]).is_file():
                sys.stderr.write((run.folder / node["traceback"]).read_text(encoding="utf-8", errors="replace"))
        print(f"error: {run.error}", file=sys.stderr)
        if run.hint:
            print(f"    fix: {run.hint}", file=sys.stderr)
        if run.status == "failed":
            print("finished nodes stay cached; fix the problem and run again to resume from there", file=sys.stderr)
    print(f"run folder: {run.folder}")
    if args.open:
        open_in_browser(run.folder / "report.html")
    return run.exit_code


def _console(no_color: bool = False):
    """The console the summary and dry-run tables print on; rich is imported only here, so a --quiet run never
    imports it (bench/start_time.py)."""
    from rich.console import Console

    return Console(no_color=True, highlight=False) if no_color else Console(highlight=False)


def open_in_browser(page: Path) -> None:
    import webbrowser

    if not page.is_file() or not webbrowser.open(page.resolve().as_uri()):
        print(f"open {page} in a browser", file=sys.stderr)


def sweep_command(args, session: Session) -> int:
    """Every variant in one Session (models load once), each into its own folder under one sweep folder."""
    from rich.console import Console
    from rich.table import Table

    mode = "quiet" if args.quiet else "plain"
    result = session.sweep(args.workflow, args.sweep, zip=args.zip, seeds=args.seeds, set=args.overrides,
                           only=args.only, force=args.force, no_cache=args.no_cache, deterministic=args.deterministic,
                           max_variants=args.max_variants, mode=mode, dry_run=args.dry_run, extra=command_record(args),
                           batch=args.batch)
    if args.dry_run:
        print(f"sweep of {len(result.values)} variants: "
              + "; ".join(", ".join(f"{k}={v}" for k, v in values.items()) for values in result.values))
        return 0
    for number, run in result.failures.items():
        print(f"error: variant {number}: {run.error}", file=sys.stderr)
        if run.hint:
            print(f"    fix: {run.hint}", file=sys.stderr)
    if mode != "quiet":
        table = Table(title=f"sweep {result.folder.name}")
        for column in ("variant", "values", "status", "ran", "cached"):
            table.add_column(column, overflow="fold")
        for item in result.index["variants"]:
            table.add_row(str(item["variant"]), ", ".join(f"{k}={v}" for k, v in item["values"].items()), item["status"],
                          str(item["counts"]["ran"]), str(item["counts"]["cached"]))
        Console(no_color=not sys.stdout.isatty(), highlight=False, width=None if sys.stdout.isatty() else 160).print(table)
    print(f"sweep folder: {result.folder}")
    if args.open:
        open_in_browser(result.folder / "index.html")
    return result.exit_code


def _dry_run(workflow: Workflow, plan: Plan, cache: NodeCache, args, console) -> int:
    from rich.table import Table

    table = Table(title=f"dry run: {workflow.name}")
    for column in ("node", "type", "would", "key"):
        table.add_column(column)
    for node_id in plan.order:
        task = plan.tasks[node_id]
        cached = cache.has(task.key) and not args.no_cache and node_id not in args.force
        table.add_row(node_id, task.type_name, "[cyan]use cache[/]" if cached else "[yellow]run[/]", task.key[:16])
    console.print(table)
    return 0
