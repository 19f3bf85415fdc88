"""Sweeps: one workflow run for each combination of values, all sharing one cache.

Values come from `--sweep PATH=V1,V2,...` (a grid, or paired with `--zip`), `--seeds A-B`
(the workflow seed) and the file's `sweep:` section (`grid:` and `zip:` blocks of
PATH: [values]). Grid dimensions multiply; a zip block is one dimension whose
values are paired. Each variant is its own run folder under one sweep folder,
with `index.json` listing them; nodes that do not depend on a swept value run
once for the whole sweep (their cache keys do not change).
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.atomic import write_atomic
from ..core.errors import CommandError
from ..language.errors import Location, Problem, WorkflowError, option_location
from ..language.overrides import split_path
from ..language.yaml_source import load_yaml
from ..records.report import write_report

Dimension = list[dict[str, Any]]  # each entry: {path: value, ...} applied together
MAX_VARIANTS = 1000  # a sweep larger than this is refused unless --max-variants says otherwise


def sweep_dimensions(sweeps: list[str] | dict[str, list] | None, zipped: bool, seeds: str | list[int] | range | None,
                     max_variants: int = MAX_VARIANTS) -> list[Dimension]:
    """Dimensions from the command line's forms (`--sweep PATH=V1,V2` strings, `--seeds A-B`) or Python's
    (`{PATH: [values]}`, seeds as a list or range)."""
    columns: list[tuple[str, list[Any]]] = []
    if isinstance(sweeps, dict):  # values as Python data, taken as they are (a list value, a text with commas)
        for path, values in sweeps.items():
            values = _as_list(values, Location("sweep"), path)
            if len(values) > max_variants:
                raise CommandError([Problem(Location(f"sweep {path}"), (), f"{len(values):,} values is more than the "
                                            f"limit of {max_variants} variants", "sweep fewer values, or raise "
                                            "max_variants")])
            columns.append((str(path), list(values)))
        sweeps = []
    if seeds is not None and not isinstance(seeds, str):
        seeds = ",".join(str(int(seed)) for seed in seeds)
    return parse_cli_sweeps(list(sweeps or []), zipped, seeds, max_variants, columns)


def parse_cli_sweeps(sweeps: list[str], zipped: bool, seeds: str | None, max_variants: int = MAX_VARIANTS,
                     columns: list[tuple[str, list[Any]]] | None = None) -> list[Dimension]:
    """Dimensions from `--sweep PATH=V1,V2` strings (each value parsed as YAML), after `columns` already parsed."""
    columns = list(columns or [])
    for text in sweeps:
        where = option_location("--sweep", text)
        if "=" not in text:
            raise CommandError([Problem(where, (), "a sweep needs the form PATH=V1,V2,...", "e.g. --sweep params.strength=0.3,0.6")])
        path, raw = text.split("=", 1)
        items = raw.split(",")
        if len(items) > max_variants:  # refused before any value is parsed (each is its own variant)
            raise CommandError([Problem(where, (), f"{len(items):,} values is more than the limit of {max_variants} variants",
                                         "sweep fewer values, or raise the limit with --max-variants N")])
        depth = len(split_path(path, where))  # each value sits under the path's levels: they count towards the nesting limit
        values = [load_yaml(item.strip(), where.source, outer_depth=depth)[0] for item in items]
        columns.append((path.strip(), values))
    dimensions: list[Dimension] = []
    if zipped and columns:
        lengths = {len(values) for _p, values in columns}
        if len(lengths) != 1:
            raise CommandError([Problem(Location("--zip"), (), f"zipped sweeps need equally long value lists, got lengths {sorted(lengths)}",
                                         "give each --sweep the same number of values (--zip pairs the first values, "
                                         "then the second, ...), or leave out --zip for every combination")])
        dimensions.append([dict(zip([p for p, _v in columns], row)) for row in zip(*[v for _p, v in columns])])
    else:
        dimensions.extend([{path: value} for value in values] for path, values in columns)
    if seeds:
        dimensions.append([{"seed": seed} for seed in _seed_range(seeds, max_variants)])
    return dimensions


def _seed_range(text: str, max_variants: int) -> list[int]:
    where = Location(f"--seeds {text}")
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-", 1))
            count = last - first + 1
        else:
            values = [int(part) for part in text.split(",")]
            first, last, count = None, None, len(values)
    except ValueError:
        raise CommandError([Problem(where, (), "seeds are A-B or A,B,C (integers)", "e.g. --seeds 1-8")]) from None
    if count < 1:
        raise CommandError([Problem(where, (), f"the range {text} is empty: its end is below its start",
                                     f"write the smaller seed first, e.g. --seeds {last}-{first}")])
    if count > max_variants:
        raise CommandError([Problem(where, (), f"{count} seeds is more than the limit of {max_variants} variants",
                                     "sweep fewer seeds, or raise the limit with --max-variants N")])
    if first is not None and (first < 0 or last > 2**63 - 1):
        raise CommandError([Problem(where, (), "seeds are integers from 0 to 2**63-1", "e.g. --seeds 1-8")])
    return list(range(first, last + 1)) if first is not None else values


def file_sweeps(section: Any, source: str) -> list[Dimension]:
    """Dimensions from a workflow's `sweep: {grid: {PATH: [..]}, zip: {PATH: [..]}}` section."""
    if not section:
        return []
    where = Location(source)
    if not isinstance(section, dict) or set(section) - {"grid", "zip"}:
        raise WorkflowError([Problem(where, ("sweep",), "sweep: takes 'grid' and/or 'zip' blocks of PATH: [values]")])
    dimensions: list[Dimension] = []
    for path, values in (section.get("grid") or {}).items():
        dimensions.append([{path: value} for value in _as_list(values, where, path)])
    zipped = section.get("zip") or {}
    if zipped:
        columns = {path: _as_list(values, where, path) for path, values in zipped.items()}
        if len({len(v) for v in columns.values()}) != 1:
            raise WorkflowError([Problem(where, ("sweep", "zip"), "zip lists must have the same length")])
        dimensions.append([dict(zip(columns, row)) for row in zip(*columns.values())])
    return dimensions


def _as_list(values: Any, where: Location, path: str) -> list:
    if not isinstance(values, list) or not values:
        raise WorkflowError([Problem(where, ("sweep", path), "a swept path takes a non-empty list of values")])
    return values


def check_variant_count(dimensions: list[Dimension], max_variants: int = MAX_VARIANTS) -> int:
    """The number of variants, counted before any is built; more than `max_variants` is a located error."""
    count = math.prod(len(dimension) for dimension in dimensions)
    if count > max_variants:
        sizes = " x ".join(str(len(dimension)) for dimension in dimensions)
        raise CommandError([Problem(Location("sweep"), (), f"the sweep has {count} variants ({sizes}), more than the "
                                     f"limit of {max_variants}", "sweep fewer values (zip paired lists instead of a grid), "
                                     "or raise the limit with --max-variants N")])
    return count


def variants(dimensions: list[Dimension]) -> list[dict[str, Any]]:
    """Every combination: the product of the dimensions (count them first with check_variant_count)."""
    combined = []
    for combo in itertools.product(*dimensions):
        merged: dict[str, Any] = {}
        for part in combo:
            merged.update(part)
        combined.append(merged)
    return combined


def as_overrides(values: dict[str, Any]) -> list[str]:
    return [f"{path}={json.dumps(value)}" for path, value in values.items()]


def load_variant(load: Callable[[list[str]], Any], values: dict[str, Any], section: Any = None, smap=None):
    """`load(overrides)` for one variant; a problem in a swept value is located where the value was given: at its
    entry of the file's `sweep:` section (`section`, with the file's source map `smap`), else at the --sweep
    option, not at a --set the user never wrote."""
    overrides = as_overrides(values)
    try:
        return load(overrides)
    except WorkflowError as exc:
        blocks = section if isinstance(section, dict) else {}
        for problem in exc.problems:
            for (path, value), text in zip(values.items(), overrides):
                if problem.location.source != option_location("--set", text).source:
                    continue
                block = next((name for name in ("grid", "zip") if path in (blocks.get(name) or {})), None)
                if block is not None and smap is not None:
                    problem.location = smap.locate(("sweep", block, path))
                    problem.message = f"sweep: {block}: {path} value {json.dumps(value)}: {problem.message}"
                else:
                    problem.location = option_location("--sweep", f"{path}={json.dumps(value)}")
        raise


def check_file_sweep(workflow, load: Callable[[list[str]], Any], source: str,
                     max_variants: int = MAX_VARIANTS) -> int:
    """Build every variant of the workflow's own `sweep:` section as a run would (runner validate), each problem
    at the sweep entry that gives the value; the number of variants (0 without a section)."""
    section = workflow.document.get("sweep")
    dimensions = file_sweeps(section, source)
    if not dimensions:
        return 0
    count = check_variant_count(dimensions, max_variants)
    for values in variants(dimensions):
        load_variant(load, values, section, workflow.source_map)
    return count


def new_sweep_dir(out: Path, name: str) -> Path:
    now = time.time()
    sweep_id = "sweep-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(2)
    from .run import refuse_link

    refuse_link(out / name)
    folder = out / name / sweep_id
    folder.mkdir(parents=True)
    return folder


@dataclass
class Sweep:
    """A finished sweep: its folder (None for a dry run), every variant's values, the runs that ran (by variant
    number) and index.json as written."""

    folder: Path | None
    values: list[dict[str, Any]]
    runs: dict[int, Any] = field(default_factory=dict)
    index: dict = field(default_factory=dict)
    exit_code: int = 0
    error: str | None = None  # what ended it, when no variant's error does (index.json could not be written)

    @property
    def status(self) -> str:
        return {0: "ok", 130: "interrupted"}.get(self.exit_code, "failed")

    @property
    def failures(self) -> dict[int, Any]:
        """The variants that did not end ok, by number."""
        return {number: run for number, run in sorted(self.runs.items()) if run.exit_code}


GPU_BATCH = 8  # the most images one batched call takes by default on a GPU (the memory budget may halve it)


def default_batch(device: str) -> int:
    """How many variants one call computes when `batch` is not given: on a GPU (cuda, mps) up to GPU_BATCH, a call
    whose working memory would not fit the memory budget being halved until it does (runner.models.generate); on
    the CPU 1, unbatched, so that a sweep's images are those of its variants run alone: batched images differ from
    unbatched ones in the last bits, and on a CPU the gain is small (bench/sweep_batch.py: 1.2x on the full-size
    SD 1.5 at 256 px, against about 2x on a GPU by diffusers' figures)."""
    return GPU_BATCH if not device.startswith("cpu") else 1


def assign_batches(prepared: list[tuple[dict, Any, Any]], batch: int | None, cache, *, force: list[str] | None,
                   no_cache: bool) -> list[list]:
    """Group the generation tasks of a sweep's variants that differ only in seed (and prompt), share everything
    upstream and are not cached yet, `batch` at most per call (None: default_batch for the plans' device): each such
    task carries its batch; the first variant to reach one computes the whole batch in one call, each member stored
    under its own key, and the other variants find theirs in the cache. Nothing is batched with no_cache, nor for the
    nodes in `force` (each variant computes those again)."""
    from ..executor.plan import assign_batches as group
    from ..nodes import NODE_TYPES

    plans = [plan for _values, _workflow, plan in prepared]
    size = batch if batch is not None else default_batch(plans[0].device if plans else "cpu")
    if size <= 1 or no_cache:
        return []
    forced = set(force or [])

    def varying(type_name: str) -> tuple[str, ...] | None:
        batching = NODE_TYPES[type_name].batch if type_name in NODE_TYPES else None
        return batching.varying if batching is not None else None

    tasks = [task for plan in plans for node_id, task in plan.tasks.items()
             if node_id not in forced and not cache.has(task.key)]
    return group(tasks, varying, size)


def run_sweep(session, prepared: list[tuple[dict, Any, Any]], name: str, index: dict, *, force: list[str] | None,
              no_cache: bool, mode: str, extra: dict | None, folder: Path | None = None, events=None,
              should_stop: Callable[[], bool] | None = None, batch: int | None = None) -> Sweep:
    """Run prepared variants ((values, workflow, plan), validated and planned) into one sweep folder under the
    Session's `out`: one at a time, or side by side as many as the executor's capacity (its workers); index.json
    (and index.html) after each. A variant that fails stops the ones not started yet. `batch`: how many variants'
    generation nodes one call may compute (see assign_batches; 1: none)."""
    session.check_out()
    session.executor.start()  # before the sweep folder is made: a cluster that cannot be reached leaves nothing behind
    assign_batches(prepared, batch, session.cache, force=force, no_cache=no_cache)
    parallel = min(len(prepared), session.executor.capacity())
    if folder is None:
        folder = new_sweep_dir(session.out, name)
    else:
        folder.mkdir(parents=True)
    result = Sweep(folder, [values for values, _workflow, _plan in prepared], index=index)
    index["variants"] = []
    lock = threading.Lock()

    asked_to_stop = should_stop

    def run_variant(number: int, should_stop: Callable[[], bool] | None = None, label: str = ""):
        values, variant, plan = prepared[number]
        if asked_to_stop is not None:
            inner = should_stop
            should_stop = lambda: asked_to_stop() or bool(inner and inner())  # noqa: E731
        if mode != "quiet":
            print(f"{label}variant {number}: " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)
        return session.run(variant, plan=plan, force=force, no_cache=no_cache, mode=mode, run_dir=folder / f"{number:03d}",
                           should_stop=should_stop, label=label, events=events,
                           extra={"sweep": {"folder": str(folder), "variant": number, "values": values}, **(extra or {})})

    def record(number: int, run) -> bool:
        """Add a finished variant to index.json (in variant order); False when the index cannot be written."""
        with lock:
            result.runs[number] = run
            index["variants"] = sorted([item for item in index["variants"] if item["variant"] != number]
                                       + [{"variant": number, "values": prepared[number][0], "run": run.folder.name,
                                           "status": run.status, "counts": run.manifest["counts"]}],
                                       key=lambda item: item["variant"])
            try:
                write_atomic(folder / "index.json", json.dumps(index, indent=2) + "\n")
            except OSError as exc:
                result.error = f"index.json could not be written into {folder}: {exc.strerror or exc}"
                print(f"error: {result.error}", file=sys.stderr)
                return False
            write_report(folder)
            return True

    if parallel <= 1:
        for number in range(len(prepared)):
            run = run_variant(number)
            if not record(number, run) or run.exit_code:
                break
    else:
        _side_by_side(len(prepared), run_variant, record, parallel)
    codes = [run.exit_code for run in result.failures.values()]
    result.exit_code = 1 if result.error else (130 if 130 in codes else (codes[0] if codes else 0))
    return result


def _side_by_side(count: int, run_variant, record, parallel: int) -> None:
    """Run the variants `parallel` at a time, each in a thread, on an executor whose workers they share. A variant
    that fails (or whose record cannot be written) stops new ones from starting, as the sequential loop stops, and
    the ones running finish; Ctrl-C stops them all at their next node boundary (status interrupted, finished nodes
    cached) once each has written its record."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    interrupted, failed = threading.Event(), threading.Event()

    def should_stop() -> bool:
        if interrupted.is_set():
            raise KeyboardInterrupt  # in the variant's own thread: its run ends as a Ctrl-C ends a run
        return False

    def one(number: int):
        if failed.is_set() or interrupted.is_set():
            return None  # not started: a variant failed, or Ctrl-C
        run = run_variant(number, should_stop, label=f"[{number:03d}] ")
        if run.exit_code:
            failed.set()
        return run

    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="variant")
    futures = {pool.submit(one, number): number for number in range(count)}
    pending = set(futures)
    try:
        while pending:
            try:
                for future in as_completed(pending):
                    run = future.result()
                    if run is not None and not record(futures[future], run):
                        failed.set()
                    pending.discard(future)
            except KeyboardInterrupt:
                interrupted.set()  # and go on waiting: each running variant writes its record, then stops
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
