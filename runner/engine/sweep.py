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
import time
from pathlib import Path
from typing import Any

from ..language.errors import Location, Problem, WorkflowError, option_location
from ..language.overrides import split_path
from ..language.yaml_source import load_yaml

Dimension = list[dict[str, Any]]  # each entry: {path: value, ...} applied together
MAX_VARIANTS = 1000  # a sweep larger than this is refused unless --max-variants says otherwise


def parse_cli_sweeps(sweeps: list[str], zipped: bool, seeds: str | None, max_variants: int = MAX_VARIANTS) -> list[Dimension]:
    columns: list[tuple[str, list[Any]]] = []
    for text in sweeps:
        where = option_location("--sweep", text)
        if "=" not in text:
            raise WorkflowError([Problem(where, (), "a sweep needs the form PATH=V1,V2,...", "e.g. --sweep params.strength=0.3,0.6")])
        path, raw = text.split("=", 1)
        items = raw.split(",")
        if len(items) > max_variants:  # refused before any value is parsed (each is its own variant)
            raise WorkflowError([Problem(where, (), f"{len(items):,} values is more than the limit of {max_variants} variants",
                                         "sweep fewer values, or raise the limit with --max-variants N")])
        depth = len(split_path(path, where))  # each value sits under the path's levels: they count towards the nesting limit
        values = [load_yaml(item.strip(), where.source, outer_depth=depth)[0] for item in items]
        columns.append((path.strip(), values))
    dimensions: list[Dimension] = []
    if zipped and columns:
        lengths = {len(values) for _p, values in columns}
        if len(lengths) != 1:
            raise WorkflowError([Problem(Location("--zip"), (), f"zipped sweeps need equally long value lists, got lengths {sorted(lengths)}")])
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
        raise WorkflowError([Problem(where, (), "seeds are A-B or A,B,C (integers)", "e.g. --seeds 1-8")]) from None
    if count < 1:
        raise WorkflowError([Problem(where, (), f"the range {text} is empty: its end is below its start",
                                     f"write the smaller seed first, e.g. --seeds {last}-{first}")])
    if count > max_variants:
        raise WorkflowError([Problem(where, (), f"{count} seeds is more than the limit of {max_variants} variants",
                                     "sweep fewer seeds, or raise the limit with --max-variants N")])
    if first is not None and (first < 0 or last > 2**63 - 1):
        raise WorkflowError([Problem(where, (), "seeds are integers from 0 to 2**63-1", "e.g. --seeds 1-8")])
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
        raise WorkflowError([Problem(Location("sweep"), (), f"the sweep has {count} variants ({sizes}), more than the "
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


def new_sweep_dir(out: Path, name: str) -> Path:
    now = time.time()
    sweep_id = "sweep-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(2)
    folder = out / name / sweep_id
    folder.mkdir(parents=True)
    return folder
