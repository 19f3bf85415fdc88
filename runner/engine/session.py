"""`runner.Session`: one warm engine (the cache, the model pool and an executor) for any number of runs.

`runner run`, sweeps and scripts or notebooks all run workflows through a Session, so the models a run
loads stay loaded for the next one (within the memory budget). Creating a Session imports no torch; the
first node that needs a model does.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.model_entry import Consent
from ..core.paths import default_cache_dir
from ..executor.cache import NodeCache
from ..executor.engine import NodeResult
from ..executor.plan import Plan
from ..core.errors import CommandError
from ..language.errors import Location, Problem, WorkflowError, did_you_mean
from ..language.workflow import Workflow
from ..language.yaml_source import MAX_DEPTH
from ..core.sizes import parse_size
from .loading import load_for_run, load_workflow
from .run import Outcome, check_out_folder, execute, plan_or_problems
from .sweep import MAX_VARIANTS, Sweep, check_variant_count
from .executors import build_executor
from .wiring import model_resources


class RunFailed(Exception):
    """A run that did not finish (`Run.raise_for_status()`): its message is the run's error and fix; `.run` is the
    Run, and the failed node's own exception is the cause (`__cause__`, also `run.exception`)."""

    def __init__(self, run: "Run"):
        super().__init__(f"run {run.folder.name} {run.status}: {run.error}" + (f" (fix: {run.hint})" if run.hint else ""))
        self.run = run


@dataclass(repr=False)
class Run:
    """One finished run: its status, folder and manifest, and its node outputs as images."""

    status: str  # "ok" | "failed" | "interrupted"
    folder: Path
    manifest: dict
    error: str | None = None
    exit_code: int = 0
    results: dict[str, NodeResult] = field(default_factory=dict)
    cache: NodeCache | None = None
    hint: str = ""  # how to fix `error`, when the failing node's error says
    exception: BaseException | None = None  # what a failed node raised (None when it ran on a remote worker)

    def __repr__(self) -> str:
        said = f", error={self.error!r}" + (f", fix={self.hint!r}" if self.hint else "") if self.error else ""
        return f"Run(status={self.status!r}, folder={str(self.folder)!r}{said})"

    def raise_for_status(self) -> "Run":
        """Raise RunFailed unless the run finished ("ok"); return the run otherwise (for chaining)."""
        if self.status != "ok":
            raise RunFailed(self) from self.exception
        return self

    def image(self, node_id: str, output: str | None = None):
        """The PIL image of a node's output (its default output when `output` is None); a list for `images` outputs.

        For a save_image node: the image it saved (a list when it saved several)."""
        from ..executor.values import read_value

        node = self.manifest["nodes"].get(node_id)
        if node is None:
            raise KeyError(f"no node '{node_id}' in this run{did_you_mean(node_id, self.manifest['nodes'])}")
        if output is None and node.get("published") and not node.get("outputs"):
            # a save_image node: the file(s) it wrote into the run folder
            images = [read_value("image", [self.folder / name]) for name in node["published"]]
            return images[0] if len(images) == 1 else images
        if not node.get("outputs"):
            raise KeyError(f"node '{node_id}' has no stored outputs (status: {node['status']})")
        if output is not None and output not in node["outputs"]:
            raise KeyError(f"node '{node_id}' has no output '{output}'; it has: {', '.join(node['outputs'])}")
        return self.cache.read_output(node["key"], output, read_value)


class Session:
    """A warm engine: run workflows one after another, sharing the cache and the loaded models.

    >>> with runner.Session(out="outputs") as session:
    ...     run = session.run("workflows/demo.yaml", set={"params.prompt": "a red barn"})
    ...     run.image("final")

    `out`: the folder run folders go into. `cache_dir`: the node cache (default `RUNNER_CACHE_DIR` or
    `outputs/.cache`). `device`: where `device: auto` workflows run (`auto`, `cpu`, `cuda`, `cuda:N`,
    `mps`); a workflow that names a device keeps it. `max_ram` / `max_vram`: the memory budget of the model
    pool, as bytes or text ("16GB", "512MB"); default: the memory available when the Session starts
    (when the GPU is first used, for VRAM) less a reserve (2 GB of RAM, 1 GB of VRAM).
    `allow_paths`: folders besides a workflow's own that its input files may come from (the CLI's --allow-path), for
    the workflows this Session loads. `allow_private_urls`: `load_image url:` may reach loopback, private, link-local
    and metadata addresses: True for all of them, or a list of networks (["192.168.1.0/24"]) for those only (the CLI's
    --allow-private-urls is True). Both are recorded in each run's manifest. `model_paths`: folders (or ComfyUI
    extra_model_paths.yaml files) where bare model names are looked for, before RUNNER_MODEL_PATHS (the CLI's
    --model-path); the folders searched are recorded in the manifest (`model_paths`).
    `allow_pickle` / `trust_remote_code`: the names (under `models:`) of the model entries allowed to load pickle
    weights / run code shipped with the model, when their entry asks for it (the CLI's --allow-pickle NAME,
    --trust-remote-code NAME); a workflow asking for either without this is refused. Recorded in the manifest
    (`consents`). A workflow embedded in a PNG is never allowed either.
    A Session may be shared by threads: on the local executor their runs take turns (each validates and plans in its
    own thread, then waits for the one running; images and cache entries are those of serial runs), on the Ray
    executor they run side by side on the workers.
    `executor`: "local" (this process) or "ray" (a pool of warm Ray workers), with `executor_options`, the options of
    that executor (runner.engine.executors): for "ray", `address` to join a cluster (else a local one is started and
    stopped with the Session), `workers`, `cpus_per_worker`, `gpus_per_worker`, `max_retries`, and `shared` False to
    ship cache entries through Ray's object store even where the workers could see the cache folder.
    """

    def __init__(self, out: str | Path = "outputs", cache_dir: str | Path | None = None, device: str = "auto",
                 max_ram: int | str | None = None, max_vram: int | str | None = None, *,
                 allow_paths: list[str | Path] | None = None, allow_private_urls: bool | list[str] = False,
                 model_paths: list[str | Path] | None = None, executor: str = "local",
                 executor_options: dict[str, Any] | None = None,
                 allow_pickle: list[str] | None = None, trust_remote_code: list[str] | None = None,
                 consent_by: str = "Session"):
        from ..core.limits import check_limits

        check_limits()  # a malformed RUNNER_MAX_* is refused here, not by the first node that reads it
        self.out = Path(out)
        self._run_lock = threading.RLock()  # see _turn
        # `consent_by`: who gave allow_pickle / trust_remote_code, as manifests record it ("command line" for the CLI)
        self.consent = Consent.of(_names(allow_pickle, "allow_pickle"), _names(trust_remote_code, "trust_remote_code"),
                                  consent_by)
        self.allow_paths = [Path(folder) for folder in allow_paths or ()]
        self.model_paths = [Path(folder) for folder in model_paths or ()]
        self.allow_private_urls = _url_networks(allow_private_urls)
        self.cache = NodeCache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
        if self.cache.root.exists() and not self.cache.root.is_dir():
            raise CommandError([Problem(Location(str(self.cache.root)), (), "the cache folder is a file, not a folder",
                                         "point RUNNER_CACHE_DIR (or cache_dir=) at a folder, or remove the file")])
        self.device = device
        try:
            budget = {"max_ram": parse_size(max_ram), "max_vram": parse_size(max_vram)}
        except ValueError as exc:
            raise CommandError([Problem(Location("Session"), (), str(exc), "e.g. max_ram='16GB'")]) from None
        self.resources = model_resources(self.cache, **budget)
        self.pool = self.resources.pool
        self.executor = build_executor(executor, self.cache, self.resources, budget, executor_options)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release every loaded model (their memory returns once nothing else of yours holds them), and the Ray
        workers (and the local Ray cluster this Session started) with the Ray executor."""
        self.executor.close()
        memories = {resident.memory for resident in self.pool.residents.values()}
        for key in list(self.pool.residents):
            self.pool.release(key, collect=False)
        for memory in memories:
            self.pool.collect(memory)

    # ------------------------------------------------------------ loading
    def load(self, workflow: str | Path | dict, set: dict[str, Any] | list[str] | None = None, *,
             allow_paths: list[str | Path] | None = None, model_paths: list[str | Path] | None = None) -> Workflow:
        """Validate a workflow given as a path, YAML text or a dict, with overrides; raises WorkflowError.

        A path's input files come from its folder; those of YAML text or a dict from the current folder; and from the
        Session's `allow_paths` plus the ones given here; bare model names from the Session's `model_paths`, the ones
        given here, then RUNNER_MODEL_PATHS. A path's WF.lock (`runner lock`) pins its hub models to their locked
        commits, as `runner run` does: the pins join the overrides the manifest records."""
        overrides = _overrides(set)
        allowed = self.allow_paths + [Path(folder) for folder in allow_paths or ()]
        searched = self.model_paths + [Path(folder) for folder in model_paths or ()]
        if isinstance(workflow, dict):
            try:
                text = yaml.safe_dump(workflow, sort_keys=False, allow_unicode=True)
            except RecursionError:  # nested far deeper than the reader's limit: refused as the reader would
                raise WorkflowError([Problem(Location("<workflow dict>"), (), "the workflow is nested too deeply (the "
                                             f"limit is {MAX_DEPTH} levels)", "flatten the values nested inside each other")]) from None
            except yaml.YAMLError as exc:  # a value YAML cannot represent (an object, a set, ...)
                raise WorkflowError([Problem(Location("<workflow dict>"), (), f"the workflow holds a value that is not "
                                             f"plain data: {exc}", "use only dicts, lists, strings, numbers, "
                                             "booleans and None")]) from None
            try:
                return load_workflow(Path.cwd() / "workflow.yaml", overrides, text=text, source="<workflow dict>",
                                     allow_paths=allowed, model_paths=searched, consent=self.consent)
            except WorkflowError as exc:  # a dict has no lines: the dotted path says where (not the YAML runner wrote)
                for problem in exc.problems:
                    if problem.location.source == "<workflow dict>":
                        problem.location = Location("<workflow dict>")
                raise
        if _is_text(workflow):
            return load_workflow(Path.cwd() / "workflow.yaml", overrides, text=workflow, source="<workflow text>",
                                 allow_paths=allowed, model_paths=searched, consent=self.consent)
        return load_for_run(Path(workflow), overrides, allowed, searched, self.consent)

    def plan(self, workflow: Workflow, only: list[str] | None = None, deterministic: bool = False) -> Plan:
        """The plan of a run (cache keys, seeds, model identities); WorkflowError when a file a WF.lock pins changed,
        or a model or input cannot be found."""
        from ..core.paths import models_dir
        from ..records.lock import check_lock

        check_node_names(workflow, only or [], "only")
        check_lock(workflow, models_dir(self.cache.root), self.cache.hashes)
        return plan_or_problems(workflow, self.cache.hashes, only or None, deterministic, self.device,
                                self.allow_private_urls)

    def export(self, workflow: str | Path | dict | Workflow, set: dict[str, Any] | list[str] | None = None, *,
               command: str = "") -> str:
        """The plain diffusers script the workflow stands for (`runner export`), as Python source: no import of
        runner, the seeds this Session's runs would use, each node's call with the arguments runner passes. Nothing
        runs; tiny models are built where they are not yet. WorkflowError: an invalid workflow, or a node the export
        cannot write (located at the node, with why)."""
        from ..models.registry import ModelRegistry
        from .export import ExportUnsupported, export_script, export_sweep

        from .sweep import file_sweeps, load_variant, variants

        loaded = workflow if isinstance(workflow, Workflow) else self.load(workflow, set)
        section = loaded.document.get("sweep")
        plan = self.plan(loaded)
        registry = ModelRegistry(self.pool, plan.device, plan.dtype)
        try:
            # a Workflow already loaded cannot be loaded again with each variant's values: its sweep is not written
            dimensions = file_sweeps(section, str(loaded.path)) if not isinstance(workflow, Workflow) else []
            if not dimensions:
                return export_script(loaded, plan, registry, command=command)
            check_variant_count(dimensions)
            prepared = []
            for values in variants(dimensions):
                variant = load_variant(lambda overrides: self.load(workflow, _overrides(set) + overrides), values,
                                       section, loaded.source_map)
                prepared.append((values, variant, self.plan(variant)))
            return export_sweep(prepared, registry, command=command)
        except ExportUnsupported as exc:
            path = ("nodes", exc.node_id) if exc.node_id else ()
            location = loaded.source_map.locate(path) if loaded.source_map else Location(str(loaded.path))
            raise WorkflowError([Problem(location, path, exc.what, exc.fix)]) from None

    def check_out(self, *, create: bool = True) -> None:
        """CommandError (before anything runs) unless run folders can be written under `out`; with `create` False
        nothing is written (a dry run)."""
        check_out_folder(self.out, create=create)

    # -------------------------------------------------------------- runs
    def run(self, workflow: str | Path | dict | Workflow, set: dict[str, Any] | list[str] | None = None, *,
            only: list[str] | None = None, force: list[str] | None = None, no_cache: bool = False,
            deterministic: bool = False, mode: str = "quiet", run_dir: Path | None = None,
            extra: dict | None = None, plan: Plan | None = None, should_stop=None,
            allow_paths: list[str | Path] | None = None, model_paths: list[str | Path] | None = None,
            label: str = "", events=None) -> Run:
        """Run a workflow (path, YAML text, dict, or one `load` returned) into a new run folder under `out`.

        `only`, `force`, `no_cache` and `deterministic` mirror the CLI's options; `mode` is the progress display
        ("quiet", "plain" or "live"). An invalid workflow raises WorkflowError before anything runs. With `should_stop`
        (a callable), the run stops at the next denoising step or node boundary once it returns true (status
        "interrupted"; finished nodes stay cached). `allow_paths` widens the Session's for this workflow (see `load`;
        a Workflow already loaded keeps the folders it was loaded with); so does `model_paths`. `label` goes before
        each "plain" progress line (e.g. a sweep variant's number, when several runs print at once). `events`: a factory
        called with {node id: node type} that returns the object told of the run's progress instead of `mode`'s display
        (runner.engine.progress.PlainEvents' methods: start, node_started, node_step, node_done, ...).
        """
        loaded = workflow if isinstance(workflow, Workflow) else self.load(workflow, set, allow_paths=allow_paths,
                                                                          model_paths=model_paths)
        check_node_names(loaded, force or [], "force")
        plan = plan or self.plan(loaded, only, deterministic)
        self.executor.start()  # a cluster that cannot be reached is an error before any run folder is made
        with self._turn():
            self.check_budget(loaded, plan, force=set_of(force), no_cache=no_cache)
            self.check_out()
            self.resources.begin_run()
            outcome: Outcome = execute(self.executor, self.resources, loaded, plan, self.out, mode=mode,
                                       force=set_of(force), no_cache=no_cache, extra=extra, run_dir=run_dir,
                                       should_stop=should_stop, label=label, events=events)
        return Run(outcome.status, outcome.run_dir, outcome.manifest, outcome.error, outcome.exit_code, outcome.results,
                   self.cache, outcome.hint, outcome.exception)

    def sweep(self, workflow: str | Path | dict, sweep: dict[str, list] | list[str] | None = None, *, zip: bool = False,
              seeds: str | list[int] | range | None = None, set: dict[str, Any] | list[str] | None = None,
              only: list[str] | None = None, force: list[str] | None = None, no_cache: bool = False,
              deterministic: bool = False, max_variants: int = MAX_VARIANTS, mode: str = "quiet", dry_run: bool = False,
              allow_paths: list[str | Path] | None = None, model_paths: list[str | Path] | None = None,
              extra: dict | None = None, folder: Path | None = None, events=None, should_stop=None,
              batch: int | None = None) -> Sweep:
        """Run a workflow once per combination of values, as `runner run --sweep/--zip/--seeds` does: each variant
        into its own run folder under one sweep folder (`outputs/NAME/sweep-ID/NNN`), index.json and index.html
        beside them; nodes no swept value reaches run once for the whole sweep.

        `sweep`: {PATH: [values]} (or CLI-style "PATH=V1,V2" strings), a grid of all combinations, or paired with
        `zip`; `seeds`: the workflow seed, as "A-B", "A,B,C", a list or a range; the workflow's own `sweep:` section
        adds its dimensions. Every variant is validated and planned before any runs (an invalid one: WorkflowError);
        more than `max_variants` is refused before any is built. With `dry_run` nothing runs: the Sweep lists the
        variants' values. A variant that fails stops those not started yet (the Sweep's exit_code and failures say
        which); on the Ray executor variants run side by side, one per worker. `folder`: the sweep folder to make
        (default: a new one under `out`); `events` and `should_stop` as for `run`, for every variant. `batch`: how many
        variants that differ only in seed (and prompt) one pipeline call computes (`--batch N`; 1: each its own call;
        default: 8 on a GPU, within the memory budget, 1 on the CPU; see docs/how-to/sweeps.md).
        """
        from .sweep import file_sweeps, load_variant, run_sweep, sweep_dimensions, variants

        overrides = _overrides(set)
        base = self.load(workflow, overrides, allow_paths=allow_paths, model_paths=model_paths)
        source = str(workflow) if isinstance(workflow, (str, Path)) and not _is_text(workflow) else "<workflow text>"
        dimensions = file_sweeps(base.document.get("sweep"), source) + sweep_dimensions(sweep, zip, seeds, max_variants)
        if not dimensions:
            raise CommandError([Problem(Location("sweep"), (), "nothing to sweep: no values given and no sweep: section",
                                         "give sweep={'params.strength': [0.3, 0.6]} or seeds='1-4' (CLI: --sweep, "
                                         "--seeds)")])
        check_variant_count(dimensions, max_variants)
        prepared = []
        for values in variants(dimensions):  # every variant is validated and planned before any runs
            variant = load_variant(lambda swept: self.load(workflow, overrides + swept, allow_paths=allow_paths,
                                                           model_paths=model_paths),
                                   values, base.document.get("sweep"), base.source_map)
            prepared.append((values, variant, self.plan(variant, only, deterministic)))
        if dry_run:
            return Sweep(None, [values for values, _variant, _plan in prepared])
        index = {"workflow": source, "overrides": overrides, **(extra or {})}
        return run_sweep(self, prepared, base.name, index, force=force, no_cache=no_cache, mode=mode, extra=extra,
                         folder=folder, events=events, should_stop=should_stop, batch=batch)

    def preload(self, workflow: Workflow, plan: Plan) -> list[str]:
        """Load the checkpoints the plan's generation nodes use into this Session, as a pass that ran them would have,
        so that the next run that needs them (`runner watch`'s first edit after a fully cached first pass) finds
        them loaded. Holds the Session's turn: a run started meanwhile waits for it. The labels of what it loaded."""
        from ..language.fields import ModelField, iter_marked

        if not self.executor.loads_here:
            return []  # the workers load the models
        loaded: list[str] = []
        with self._turn():
            self.resources.begin_run()
            for node_id in plan.order:
                task, node = plan.tasks[node_id], workflow.nodes[node_id]
                if getattr(node.fields, "spec", None) is None:
                    continue  # not a generation node: nothing heavy to have ready
                for ref, marker, _path in iter_marked(node.fields, ModelField):
                    if marker != ModelField() or ref not in task.models:  # the default kind: a checkpoint
                        continue
                    source = self.resources.source(task.models[ref])
                    if source.label in loaded:
                        continue
                    try:
                        self.resources.models(task).base(source, task.model_ids[ref])
                    except Exception:  # noqa: BLE001 - the run that needs it reports it, with its node
                        continue
                    loaded.append(source.label)
        return loaded

    def _turn(self):
        """Held while a run executes here. The local executor's pipelines, schedulers and LoRA state are shared
        mutable objects (two threads calling one pipeline corrupt each other's images, silently), and so are the model
        pool's records: runs of threads sharing this Session take turns. Validation and planning happen before the
        wait. The Ray executor's workers are shared by design: its runs go side by side."""
        return self._run_lock if self.executor.capacity() == 1 else nullcontext()

    def check_budget(self, workflow: Workflow, plan: Plan, *, force: set[str] = frozenset(), no_cache: bool = False) -> None:
        """Refuse (WorkflowError, before anything loads) a model that alone exceeds the memory budget, and a generation
        call whose working memory for its size and batch (models.estimate) cannot fit it beside the node's models."""
        from ..core.paths import models_dir
        from ..models.sources import ModelSource, local_folder

        if not self.executor.loads_here:
            return  # the workers load the models, each within its own budget
        needs = {}  # one per model, at the first node that would load it
        for node_id in plan.order:
            task = plan.tasks[node_id]
            if not no_cache and node_id not in force and self.cache.has(task.key):
                continue  # a cache hit loads nothing
            for ref, data in task.models.items():
                source = ModelSource.from_data(data)
                if source.kind == "tiny" and local_folder(source, models_dir(self.cache.root)) is None:
                    # a few MB, built by the node that first loads it, which says so ("building tiny:NAME"): not here,
                    # silently, before the run starts
                    continue
                needs.setdefault((task.model_ids[ref], task.dtype, task.device),
                                 (node_id, data["entry"]["source"], source, task.dtype, task.device))
        problems = []
        for node_id, message in self.resources.budget_problems(list(needs.values())) if needs else []:
            path = ("nodes", node_id, "model")
            location = workflow.source_map.locate(path) if workflow.source_map else Location(str(workflow.path))
            problems.append(Problem(location, path, message,
                                    "raise the budget (--max-ram / --max-vram, Session(max_ram=..., max_vram=...)), "
                                    "or use float16 (dtype:) or a smaller model"))
        for node_id, at, message, fix in self.resources.work_problems(self._planned_work(workflow, plan, force, no_cache)):
            path = ("nodes", node_id, *at)
            location = workflow.source_map.locate(path) if workflow.source_map else Location(str(workflow.path))
            problems.append(Problem(location, path, message, fix))
        if problems:
            raise WorkflowError(problems)

    def _planned_work(self, workflow: Workflow, plan: Plan, force: set[str], no_cache: bool) -> list[tuple]:
        """The generation calls of the nodes that will run, as the model pool's work_problems takes them."""
        from ..models.sources import ModelSource
        from ..nodes.call_checks import planned_call

        works = []
        for node_id in plan.order:
            task = plan.tasks[node_id]
            call = planned_call(workflow.nodes[node_id].fields)
            if call is None or call.model not in task.models:
                continue
            if not no_cache and node_id not in force and self.cache.has(task.key):
                continue  # a cache hit calls nothing
            sources = [ModelSource.from_data(data) for data in task.models.values()]
            works.append((node_id, call, ModelSource.from_data(task.models[call.model]), sources, task.dtype, task.device))
        return works


def set_of(names: list[str] | None) -> set[str]:
    return set(names or [])


def check_node_names(workflow: Workflow, names: list[str], option: str) -> None:
    problems = [Problem(Location(f"--{option}"), (), f"unknown node '{name}'{did_you_mean(name, workflow.nodes)}",
                        "name nodes defined under nodes:") for name in names if name not in workflow.nodes]
    if problems:
        raise CommandError(problems)


def _is_text(workflow: Any) -> bool:
    """A str holding YAML rather than naming a file (a line break, or no .yaml/.yml/.png ending)."""
    return isinstance(workflow, str) and ("\n" in workflow or not workflow.strip().lower().endswith((".yaml", ".yml", ".png")))


def _names(names: Any, option: str) -> list[str]:
    """A Session's list of model names (a single name is taken as a list of one); CommandError for anything else."""
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple, set, frozenset)) or not all(isinstance(name, str) for name in names):
        raise CommandError([Problem(Location("Session"), (), f"{option}: {names!r} is not a list of model names",
                                     f"give the names under models: of the entries to allow, e.g. {option}=['sd15']")])
    return list(names)


def _url_networks(allow: Any) -> bool | list[str]:
    """`allow_private_urls` as True/False or a list of networks in CIDR notation (a bad one: CommandError)."""
    import ipaddress

    if isinstance(allow, bool):
        return allow
    if isinstance(allow, str):
        allow = [allow]
    networks = []
    for text in allow:
        try:
            networks.append(str(ipaddress.ip_network(str(text), strict=False)))
        except ValueError as exc:
            raise CommandError([Problem(Location("Session"), (), f"allow_private_urls: {exc}",
                                         "give True, or networks such as ['192.168.1.0/24', 'fd00::/8']")]) from None
    return networks


def _overrides(values: dict[str, Any] | list[str] | None) -> list[str]:
    """`set=` as a dict {path: value} (values as Python data) or as CLI-style "PATH=VALUE" strings."""
    import json

    if values is None:
        return []
    if isinstance(values, dict):
        return [f"{path}={json.dumps(value)}" for path, value in values.items()]
    return list(values)
