"""`runner run`: a Session runs the workflow (or each variant of a sweep) into its own run folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..core.atomic import write_atomic
from ..core.paths import models_dir
from ..executor.cache import NodeCache
from ..executor.plan import Plan
from ..language.errors import Location, Problem, WorkflowError
from ..language.workflow import Workflow
from ..engine.loading import consent_of, load_for_run
from ..engine.progress import summary_table
from ..engine.run import write_report
from ..engine.session import Session, check_node_names


def open_session(args) -> Session:
    """The Session a command runs in, from its --out, --max-ram and --max-vram options."""
    try:
        return Session(out=args.out, max_ram=getattr(args, "max_ram", None), max_vram=getattr(args, "max_vram", None),
                       allow_paths=getattr(args, "allow_paths", None), model_paths=getattr(args, "model_paths", None),
                       allow_private_urls=getattr(args, "allow_private_urls", False),
                       executor=getattr(args, "executor", "local"), executor_options=executor_options(args))
    except WorkflowError as exc:
        if exc.problems and exc.problems[0].location.source != "Session":
            raise
        option = "--max-ram" if getattr(args, "max_ram", None) else "--max-vram"
        raise WorkflowError([Problem(Location(option), (), p.message, "e.g. --max-ram 16GB") for p in exc.problems]) from None


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
    from ..records.lock import pinned_revisions

    pins = pinned_revisions(workflow)  # a WF.lock beside the workflow pins hub models to commits
    if pins:
        args.overrides = args.overrides + pins
        workflow = load_for_run(args.workflow, args.overrides, args.allow_paths, args.model_paths, consent_of(args))
    session = open_session(args)
    try:
        return _run_in(session, args, workflow)
    finally:
        session.executor.close()  # the Ray workers, and the local cluster started for this command


def _run_in(session: Session, args, workflow: Workflow) -> int:
    from rich.console import Console

    from ..records.lock import check_lock

    cache = session.cache
    check_lock(workflow, models_dir(cache.root), cache.hashes)
    from ..engine.sweep import check_variant_count, file_sweeps, parse_cli_sweeps

    dimensions = (file_sweeps(workflow.document.get("sweep"), str(args.workflow))
                  + parse_cli_sweeps(args.sweep, args.zip, args.seeds, args.max_variants))
    if dimensions:
        check_variant_count(dimensions, args.max_variants)
    # the Session lives as long as the command: its models go with the process (releasing them first only costs time)
    if dimensions:
        return sweep_command(args, session, workflow, dimensions)
    plan = session.plan(workflow, args.only, args.deterministic)
    console = Console(highlight=False)
    if args.dry_run:
        session.check_out(create=False)
        return _dry_run(workflow, plan, cache, args, console)
    mode = "quiet" if args.quiet else ("plain" if args.plain or not sys.stdout.isatty() else "live")
    run = session.run(workflow, plan=plan, force=args.force, no_cache=args.no_cache, mode=mode, extra=command_record(args))
    if mode != "quiet":
        rows = [(n, workflow.nodes[n].type.name, run.results[n].status if n in run.results else "not run",
                 run.results[n].seconds if n in run.results else 0.0) for n in plan.order]
        (Console(no_color=True, highlight=False) if mode == "plain" else console).print(summary_table(rows))
    if run.error:
        print(f"error: {run.error}", file=sys.stderr)
        if run.hint:
            print(f"    fix: {run.hint}", file=sys.stderr)
        if run.status == "failed":
            print("finished nodes stay cached; fix the problem and run again to resume from there", file=sys.stderr)
    print(f"run folder: {run.folder}")
    if args.open:
        open_in_browser(run.folder / "report.html")
    return run.exit_code


def open_in_browser(page: Path) -> None:
    import webbrowser

    if not page.is_file() or not webbrowser.open(page.resolve().as_uri()):
        print(f"open {page} in a browser", file=sys.stderr)


def sweep_command(args, session: Session, workflow: Workflow, dimensions: list) -> int:
    """Run every variant in one Session (models load once) into its own folder under one sweep folder; index.json."""
    from rich.console import Console
    from rich.table import Table

    from ..engine.sweep import as_overrides, new_sweep_dir, variants

    combos = variants(dimensions)
    prepared = []
    for values in combos:  # validate every variant before running any
        variant = load_for_run(args.workflow, args.overrides + as_overrides(values), args.allow_paths, args.model_paths,
                               consent_of(args))
        prepared.append((values, variant, session.plan(variant, args.only, args.deterministic)))
    if args.dry_run:
        print(f"sweep of {len(combos)} variants: " + "; ".join(", ".join(f"{k}={v}" for k, v in c.items()) for c in combos))
        return 0
    session.check_out()
    # before the sweep folder is made: a cluster that cannot be reached leaves nothing behind
    parallel = min(len(prepared), session.executor.capacity())
    sweep_dir = new_sweep_dir(args.out, workflow.name)
    mode = "quiet" if args.quiet else "plain"
    index = {"workflow": str(args.workflow), "overrides": args.overrides, **command_record(args), "variants": []}

    def run_variant(number: int, values: dict, variant: Workflow, plan: Plan, should_stop=None, label: str = ""):
        if mode != "quiet":
            print(f"{label}variant {number}: " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)
        return session.run(variant, plan=plan, force=args.force, no_cache=args.no_cache, mode=mode,
                           run_dir=sweep_dir / f"{number:03d}", should_stop=should_stop, label=label,
                           extra={"sweep": {"folder": str(sweep_dir), "variant": number, "values": values},
                                  **command_record(args)})

    def record(number: int, values: dict, run) -> bool:
        """Add a finished variant to index.json (in variant order); False when the index cannot be written."""
        index["variants"] = [item for item in index["variants"] if item["variant"] != number]
        index["variants"].append({"variant": number, "values": values, "run": run.folder.name,
                                  "status": run.status, "counts": run.manifest["counts"]})
        index["variants"].sort(key=lambda item: item["variant"])
        try:
            write_atomic(sweep_dir / "index.json", json.dumps(index, indent=2) + "\n")
        except OSError as exc:
            print(f"error: index.json could not be written into {sweep_dir}: {exc.strerror or exc}", file=sys.stderr)
            return False
        write_report(sweep_dir)
        return True

    failures: dict[int, Any] = {}  # variant -> its run, for each variant that did not end ok
    if parallel <= 1:
        for number, (values, variant, plan) in enumerate(prepared):
            run = run_variant(number, values, variant, plan)
            if not record(number, values, run):
                return 1
            if run.exit_code:
                failures[number] = run
                break
    elif not _run_side_by_side(prepared, run_variant, record, failures, parallel):
        return 1
    codes = [run.exit_code for _number, run in sorted(failures.items())]
    exit_code = 130 if 130 in codes else (codes[0] if codes else 0)
    for number, run in sorted(failures.items()):
        print(f"error: variant {number}: {run.error}", file=sys.stderr)
        if run.hint:
            print(f"    fix: {run.hint}", file=sys.stderr)
    if mode != "quiet":
        table = Table(title=f"sweep {sweep_dir.name}")
        for column in ("variant", "values", "status", "ran", "cached"):
            table.add_column(column, overflow="fold")
        for item in index["variants"]:
            table.add_row(str(item["variant"]), ", ".join(f"{k}={v}" for k, v in item["values"].items()), item["status"],
                          str(item["counts"]["ran"]), str(item["counts"]["cached"]))
        Console(no_color=not sys.stdout.isatty(), highlight=False, width=None if sys.stdout.isatty() else 160).print(table)
    print(f"sweep folder: {sweep_dir}")
    if args.open:
        open_in_browser(sweep_dir / "index.html")
    return exit_code


def _run_side_by_side(prepared: list, run_variant, record, failures: dict, parallel: int) -> bool:
    """Run the variants `parallel` at a time, each in a thread, on an executor whose workers they share (False when
    index.json could not be written). A variant that fails stops new ones from starting (as the sequential loop
    stops) and the ones running finish; Ctrl-C stops them all at their next node boundary (status interrupted,
    finished nodes cached), and the sweep ends with 130 once each has written its record."""
    import threading
    from concurrent.futures import ThreadPoolExecutor, as_completed

    interrupted, failed = threading.Event(), threading.Event()

    def should_stop() -> bool:
        if interrupted.is_set():
            raise KeyboardInterrupt  # in the variant's own thread: its run ends as a Ctrl-C ends a run
        return False

    def one(number: int, values, variant, plan):
        if failed.is_set() or interrupted.is_set():
            return None  # not started: a variant failed, or Ctrl-C
        run = run_variant(number, values, variant, plan, should_stop, label=f"[{number:03d}] ")
        if run.exit_code:
            failed.set()
        return run

    written = True
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="variant")
    futures = {pool.submit(one, number, *item): number for number, item in enumerate(prepared)}
    pending = set(futures)
    try:
        while pending:
            try:
                for future in as_completed(pending):
                    run, number = future.result(), futures[future]
                    if run is not None:
                        if not record(number, prepared[number][0], run):
                            written = False
                            failed.set()
                        if run.exit_code:
                            failures[number] = run
                    pending.discard(future)
            except KeyboardInterrupt:
                interrupted.set()  # and go on waiting: each running variant writes its record, then stops
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return written


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
