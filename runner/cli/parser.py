"""The command line's grammar: every command and option, with its help (the CLI reference in docs/ is generated
from this parser)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.executors import EXECUTORS


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number, e.g. --batch 4") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1 (1 runs each variant in its own call)")
    return value


class _Unbuilt:
    """Stands for a command's parser that this command line does not need (build_parser's `only`): it is not made
    and nothing is declared on it (making every command's parser was about 4% of a cached run's work,
    bench/start_time.py)."""

    def add_argument(self, *args, **kwargs) -> None:
        return None

    def add_mutually_exclusive_group(self, *args, **kwargs) -> "_Unbuilt":
        return self

    def add_subparsers(self, *args, **kwargs) -> "_Unbuilt":
        return self

    def add_parser(self, *args, **kwargs) -> "_Unbuilt":
        return self


def command_of(argv: list[str]) -> str | None:
    """The command an argument list names first (`runner run ...` -> "run"), for build_parser's `only`; None when it
    starts with an option (`runner --help`, `runner --debug run ...`: the whole grammar is built then)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole grammar; with `only` (a command's name), the parser for a command line naming that command first:
    the other commands' parsers are not made (what that command line can print, its help and its errors, never
    shows them). An `only` that names no command gives the whole grammar (its error message lists them all)."""
    named: list[str] = []
    parser = _build(only, named)
    return parser if only is None or only in named else _build(None, [])


def _build(only: str | None, named: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner",
        description="Run declarative YAML workflows on Hugging Face diffusers, with a persistent cache.",
        epilog="Exit status: 0 success, 1 a node failed, 2 the workflow or command line is invalid, 130 interrupted (Ctrl-C).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    class Commands:
        @staticmethod
        def add_parser(name: str, **kwargs):
            named.append(name)
            return subparsers.add_parser(name, **kwargs) if only is None or name == only else _Unbuilt()

    commands = Commands()

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
        sub.add_argument("workflow", type=Path, help="workflow YAML file (run and watch also take a PNG that runner saved)")
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
    run.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR", help="folder for run folders (default: ./outputs)")
    run.add_argument("--only", nargs="+", default=[], metavar="NODE", help="run only these nodes and what they need")
    run.add_argument("--force", nargs="+", default=[], metavar="NODE", help="re-run these nodes even if cached")
    run.add_argument("--no-cache", action="store_true", help="re-run every node (results still stored)")
    run.add_argument("--dry-run", action="store_true", help="show what would run and what comes from cache; run nothing")
    run.add_argument("--sweep", action="append", default=[], metavar="PATH=V1,V2,...",
                     help="run once per value (repeatable: a grid of all combinations); values parsed as YAML")
    run.add_argument("--zip", action="store_true", help="pair the --sweep lists instead of combining them")
    run.add_argument("--seeds", metavar="A-B", help="sweep the workflow seed, e.g. 1-8 or 1,5,9")
    run.add_argument("--batch", type=_at_least_one, metavar="N",
                     help="a sweep's variants that differ only in seed (and prompt) run N to a pipeline call (1: each "
                          "its own call; default: 8 on a GPU, within the memory budget, 1 on the CPU)")
    run.add_argument("--max-variants", type=int, default=1000, metavar="N",
                     help="refuse sweeps of more variants than this (default 1000), counted before any is built")
    run.add_argument("--open", action="store_true", help="open the run's report.html (a sweep's index.html) when done")
    run.add_argument("--deterministic", action="store_true",
                     help="use PyTorch's deterministic algorithms (and cuDNN/cuBLAS settings); recorded in the manifest")
    run.add_argument("--executor", choices=tuple(EXECUTORS), default="local",
                     help="where nodes run: this process (local), or a pool of warm Ray workers (see docs/how-to/cluster.md)")
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
    watch.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR", help="folder for run folders (default: ./outputs)")
    watch.add_argument("--open", action="store_true", help="open watch.html, which follows the newest pass's report")
    watch.add_argument("--max-ram", metavar="SIZE", help="memory budget for loaded models in RAM, e.g. 16GB")
    watch.add_argument("--max-vram", metavar="SIZE", help="memory budget for loaded models on the GPU, e.g. 20GB")
    with_private_urls(watch)
    watch_mode = watch.add_mutually_exclusive_group()
    watch_mode.add_argument("--quiet", "-q", action="store_true", help="print only the summary line of each pass and errors")
    watch_mode.add_argument("--plain", action="store_true", help="plain line-per-event output (default when not a terminal)")

    validate = commands.add_parser("validate", help="check a workflow and report every problem")
    with_overrides(validate)

    export = commands.add_parser(
        "export", help="write a workflow out as the plain diffusers script it stands for (no import of runner)",
        description="Write the workflow out as a standalone Python script using only diffusers, transformers, torch "
                    "and Pillow (numpy and OpenCV where a node needs them): each model loaded as diffusers' docs load "
                    "it, each node's call with the arguments runner passes and the seeds runner uses, so the script "
                    "saves the images `runner run` saves. Nothing runs. A node the export cannot write is refused "
                    "(exit 2), naming it.")
    with_overrides(export)
    export.add_argument("--python", action="store_true", help="a Python script (the default, and the only format)")
    export.add_argument("-o", "--out", metavar="FILE", help="write the script to this file (default, or -: print it)")
    export.add_argument("--force", action="store_true", help="replace FILE if it holds something else")

    schema = commands.add_parser("schema", help="print the workflow JSON Schema (for editors)")
    schema.add_argument("--out", metavar="FILE", help="write to this file instead of stdout (- for stdout; a device or "
                                                      "FIFO is written into)")
    schema.add_argument("--force", action="store_true", help="replace FILE if it holds something else")

    nodes = commands.add_parser("nodes", help="list node types, or show one type's fields and outputs")
    nodes.add_argument("type", nargs="?", help="a node type, e.g. txt2img")
    nodes.add_argument("--all", action="store_true", dest="every_pipeline",
                       help="with TYPE: a field left to the pipeline lists the default of every pipeline class its "
                            "task's AutoPipelines derive (PixArt, Sana, ControlNet and PAG forms, ...), none left out; "
                            "default: those of the model families runner runs the node on, five named per value")

    graph = commands.add_parser("graph", help="print the workflow graph")
    with_overrides(graph)
    graph.add_argument("--format", choices=("text", "mermaid"), default="text", help="text tree (default) or Mermaid flowchart")

    report = commands.add_parser("report", help="write a run's report.html (or a sweep's index.html) again")
    report.add_argument("folder", metavar="RUN", help="run or sweep folder, run id (RUN_ID, SWEEP/NNN) or sweep id, "
                        "a unique prefix of one, NAME/RUN_ID, or 'latest'")
    report.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR", help="folder holding run folders (default: ./outputs)")
    report.add_argument("--open", action="store_true", help="open it in a browser")

    lock = commands.add_parser("lock", help="pin every model of a workflow (commit and file hashes) in WF.lock")
    with_overrides(lock)

    runs = commands.add_parser("runs", help="list past runs, show one, or diff two")
    runs.add_argument("action", choices=("list", "show", "diff"), nargs="?", default="list",
                      help="list the runs (default), show one, or diff two")
    runs.add_argument("runs", nargs="*", metavar="RUN", help="run folder, run id (RUN_ID, or SWEEP/NNN for a sweep's "
                      "variant) or a unique prefix of one, NAME/RUN_ID, or 'latest'")
    runs.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR", help="folder holding run folders (default: ./outputs)")

    reproduce = commands.add_parser("reproduce", help="run a recorded run again without the cache and compare its outputs")
    reproduce.add_argument("run", help="run folder, run id (or a unique prefix), NAME/RUN_ID, or 'latest'")
    reproduce.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR", help="folder holding run folders (default: ./outputs)")
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
                    "are diffusers' (see docs/how-to/comfyui-import.md).")
    comfyui.add_argument("file", type=Path, help="ComfyUI API-format .json, or a PNG that ComfyUI saved")
    comfyui.add_argument("-o", "--out", metavar="FILE", help="write the workflow to this file (default, or -: print "
                                                             "it); input image paths are written relative to it")
    comfyui.add_argument("--force", action="store_true", help="replace FILE if it holds something else")
    comfyui.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    models = commands.add_parser("models", help="list the models found in the model folders, by kind and family",
                                 description="List what bare model names can name: the files and folders in the model "
                                             "folders (--model-path, then RUNNER_MODEL_PATHS), by ComfyUI folder kind, "
                                             "with the model family each was made for where its files say.")
    models.add_argument("action", choices=("list",), nargs="?", default="list", help="list them (the only action)")
    with_model_paths(models)
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    serve = commands.add_parser(
        "serve", help="run a job server for a shared GPU machine: HTTP API, durable queue, tokens, web page",
        description="Serve an HTTP API (OpenAPI docs at /docs) and a web page (/) that queue workflows and run them "
                    "one at a time on one warm Session (models stay loaded across jobs), side by side on Ray workers "
                    "with --executor ray. The queue lives in OUT/.server/ (SQLite) and survives a restart or a kill: "
                    "a job that was running resumes from the cache. Without tokens (runner serve token add NAME) it "
                    "listens on loopback only. See docs/how-to/server.md.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                                                          "needs a token first)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    serve.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR",
                       help="folder for run folders and the server's database (default: ./outputs)")
    serve.add_argument("--executor", choices=tuple(EXECUTORS), default="local",
                       help="run jobs in this process (local: one at a time) or on Ray workers (side by side)")
    serve.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: start a local one)")
    serve.add_argument("--workers", type=int, metavar="N", help="Ray workers (default: one per GPU, or 1)")
    serve.add_argument("--cpus-per-worker", type=float, metavar="N", help="CPUs each Ray worker reserves (default 1)")
    serve.add_argument("--allow-path", dest="allow_paths", action="append", default=[], type=Path, metavar="DIR",
                       help="let jobs' workflows read input files from DIR too (by default only the files uploaded "
                            "with the job; repeatable)")
    with_model_paths(serve)
    with_private_urls(serve)
    serve.add_argument("--max-ram", metavar="SIZE", help="memory budget for loaded models in RAM, e.g. 16GB")
    serve.add_argument("--max-vram", metavar="SIZE", help="memory budget for loaded models on the GPU, e.g. 20GB")
    serve.add_argument("--max-queued", type=int, default=20, metavar="N",
                       help="jobs a user may have queued or running at once (default 20; more: HTTP 429)")
    serve.add_argument("--max-request-size", default="64MB", metavar="SIZE",
                       help="largest request body: the workflow and its uploads (default 64MB; more: HTTP 413)")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="let web pages from ORIGIN call the API (repeatable; default: none, CORS off)")
    serve_commands = serve.add_subparsers(dest="serve_command", metavar="token", required=False)
    token = serve_commands.add_parser("token", help="add, list or revoke the server's access tokens",
                                      description="Tokens authenticate users (Authorization: Bearer TOKEN). `add` "
                                                  "prints a new token once, alone on its last line; the server keeps "
                                                  "only its hash, in OUT/.server/.")
    token.add_argument("token_action", choices=("add", "list", "revoke"), help="what to do")
    token.add_argument("name", nargs="?", help="the user's name (add, revoke)")
    token.add_argument("--admin", action="store_true", help="add: an admin sees and cancels every job, pauses the queue")
    token.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR",
                       help="the server's --out folder (default: ./outputs)")

    def with_server(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--server", metavar="URL", help="the server (default: RUNNER_SERVER, else http://127.0.0.1:8765)")
        sub.add_argument("--token", metavar="TOKEN", help="your token (default: RUNNER_TOKEN)")

    submit = commands.add_parser("submit", help="queue a workflow on a runner server (runner serve), optionally "
                                                "wait and download its run folder")
    submit.add_argument("workflow", type=Path, help="workflow YAML file (the files it names beside it are uploaded)")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a value by dotted path, parsed as YAML (repeatable)")
    submit.add_argument("--only", nargs="+", default=[], metavar="NODE", help="run only these nodes and what they need")
    submit.add_argument("--force", nargs="+", default=[], metavar="NODE", help="re-run these nodes even if cached")
    submit.add_argument("--sweep", action="append", default=[], metavar="PATH=V1,V2,...", help="a sweep, as for run")
    submit.add_argument("--zip", action="store_true", help="pair the --sweep lists")
    submit.add_argument("--seeds", metavar="A-B", help="sweep the workflow seed, e.g. 1-8")
    submit.add_argument("--batch", type=_at_least_one, metavar="N",
                        help="a sweep's variants that differ only in seed (and prompt) computed N to a call (as run)")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first (-100 to 100; default 0)")
    submit.add_argument("--wait", action="store_true", help="print its progress as runner run does, then download "
                                                            "its files into --out; exit status as runner run")
    submit.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR",
                        help="with --wait: where the run folder is downloaded (default: ./outputs)")
    submit.add_argument("--quiet", "-q", action="store_true", help="with --wait: print only errors and the run folder")
    with_server(submit)

    jobs = commands.add_parser("jobs", help="list, show, wait for or cancel jobs on a runner server")
    jobs.add_argument("action", choices=("list", "show", "wait", "cancel"), nargs="?", default="list",
                      help="list your jobs (default), show one (JSON), wait for one (and download it), cancel one")
    jobs.add_argument("job", nargs="?", help="the job's id (show, wait, cancel)")
    jobs.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR", help="wait: where to download it")
    jobs.add_argument("--quiet", "-q", action="store_true", help="wait: print only errors and the run folder")
    with_server(jobs)

    cache = commands.add_parser(
        "cache", help="show, check, prune or clear the node cache",
        description="info: what the cache folder holds, by kind; verify: check every entry's files against the sha256 "
                    "recorded when it was written (damaged entries go to quarantine/, their nodes re-run next time; "
                    "exit 1 if any); prune: evict entries least recently used first; clear: delete every node result. "
                    "Entries a running process is using are skipped by prune and clear.")
    cache.add_argument("action", choices=("info", "verify", "prune", "clear"), nargs="?", default="info",
                       help="what to do (default: info)")
    cache.add_argument("--max-size", metavar="SIZE", help="prune: evict least recently used entries until the node "
                                                          "results total at most SIZE (e.g. 10GB, 500MB)")
    cache.add_argument("--older-than", metavar="DAYS", type=float, help="prune: evict entries not used for DAYS days")
    return parser
