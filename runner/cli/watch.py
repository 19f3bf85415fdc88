"""`runner watch`: one Session stays alive and re-runs the workflow on every save, only what changed.

Watched: the workflow file, its lock file, every input file its nodes read and every local model file or
folder it uses (recomputed after each successful load). Changes come from the `watchfiles` package (the
operating system's notify backend), whose short quiet period coalesces the several writes of one editor
save. A save during a pass stops it at the next denoising step or node end; the newest version runs next,
and never two passes at once. Each pass writes an ordinary run folder; `watch.html` beside the run folders
shows the newest pass's report and follows new passes by itself (it polls a small script file the watcher
rewrites; no server, no network).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from ..core.atomic import write_atomic
from ..core.errors import Problems
from ..language.fields import InputFile, iter_marked
from ..language.workflow import Workflow
from ..engine.loading import consent_of, load_for_run
from ..engine.run import SUPERSEDED

COALESCE_MS = 150  # a change is reported once no further change came for this long (editors write several times)


class Watcher:
    """Sets `changed` whenever one of the watched files (or anything inside a watched folder) changes."""

    def __init__(self):
        self.changed = threading.Event()
        self._files: set[Path] = set()
        self._folders: set[Path] = set()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def watch(self, files: set[Path], folders: set[Path]) -> None:
        files = {path.resolve() for path in files}
        folders = {path.resolve() for path in folders if path.is_dir()}
        if files == self._files and folders == self._folders and self._thread is not None:
            return
        self.close()
        self._files, self._folders = files, folders
        directories = {path.parent for path in files} | {Path(root) for folder in folders for root, _d, _f in os.walk(folder)}
        directories = sorted(str(d) for d in directories if d.is_dir())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(directories, self._stop), daemon=True, name="runner-watch")
        self._thread.start()

    def _relevant(self, changed: Path) -> bool:
        return changed in self._files or any(folder == changed or folder in changed.parents for folder in self._folders)

    def _loop(self, directories: list[str], stop: threading.Event) -> None:
        import watchfiles

        for changes in watchfiles.watch(*directories, stop_event=stop, recursive=False, debounce=1600, step=COALESCE_MS,
                                        raise_interrupt=False):
            if any(self._relevant(Path(path).resolve()) for _kind, path in changes):
                self.changed.set()

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._thread = self._stop = None


def watched_paths(workflow: Workflow, plan) -> tuple[set[Path], set[Path]]:
    """(files, folders) a pass depends on: the workflow, its lock, input files, local model files and folders."""
    from ..models.sources import ModelSource
    from ..records.lock import lock_path

    files = {Path(workflow.path), lock_path(Path(workflow.path))}
    for node in workflow.nodes.values():
        for relative, _marker, _path in iter_marked(node.fields, InputFile):
            files.add(workflow.base_dir / relative)
    folders: set[Path] = set()
    for task in plan.tasks.values():
        for data in task.models.values():
            model_files, model_folders = ModelSource.from_data(data).local_paths()
            files |= model_files
            folders |= model_folders
    return files, folders


def watch_command(args) -> int:
    from .run import command_record, open_in_browser, open_session

    session = open_session(args)
    session.check_out()  # before watching: a pass could not write its run folder
    watcher = Watcher()
    mode = "quiet" if args.quiet else ("plain" if args.plain or not sys.stdout.isatty() else "live")
    page: Path | None = None
    number = 0
    watcher.watch({Path(args.workflow)}, set())
    say(f"watching {args.workflow} (Ctrl-C to stop)")
    try:
        while True:
            watcher.changed.clear()
            try:
                workflow = load_for_run(args.workflow, args.overrides, args.allow_paths, args.model_paths,
                                        consent_of(args))
                plan = session.plan(workflow)  # WF.lock: its pins are among the overrides, its files checked
            except Problems as problems:
                print(str(problems), file=sys.stderr, flush=True)
                say("waiting for the next save")
                watcher.changed.wait()
                continue
            watcher.watch(*watched_paths(workflow, plan))
            number += 1
            started = time.perf_counter()
            run = session.run(workflow, plan=plan, mode=mode, should_stop=watcher.changed.is_set, extra=command_record(args))
            if run.exit_code == 130 and not (run.error or "").startswith(SUPERSEDED):
                say(f"pass {number}: interrupted; finished nodes stay cached")
                return 130  # Ctrl-C during the pass
            try:
                page = write_live_page(args.out / workflow.name, number, run)
            except OSError as exc:  # a full disk, say: the pass's own record says what it could write
                print(f"warning: watch.html not updated in {args.out / workflow.name}: {exc.strerror or exc}", file=sys.stderr)
            say(summary_line(number, run, time.perf_counter() - started))
            if run.error and not run.error.startswith(SUPERSEDED):
                print(f"error: {run.error}", file=sys.stderr, flush=True)
                if run.hint:
                    print(f"    fix: {run.hint}", file=sys.stderr, flush=True)
            if number == 1 and args.open and page is not None:
                open_in_browser(page)
            if number == 1 and run.status == "ok" and not any(
                    node.get("status") == "ran" for node in run.manifest.get("nodes", {}).values()):
                # a first pass all from the cache loaded nothing: load now what the first edit will need
                preload_in_background(session, workflow, plan)
            if run.status == "interrupted":
                continue  # superseded: the newest version runs now
            watcher.changed.wait()
    except KeyboardInterrupt:
        say("stopped; finished nodes stay cached")
        return 130
    finally:
        watcher.close()


def preload_in_background(session, workflow, plan) -> threading.Thread:
    """Load the workflow's checkpoints while the user edits (the next pass waits for it if it comes first)."""

    def load() -> None:
        try:
            loaded = session.preload(workflow, plan)
        except Exception as exc:  # noqa: BLE001 - a pass that needs the model says what is wrong, at its node
            say(f"could not load the models ahead of the next edit ({type(exc).__name__}: {exc})")
            return
        if loaded:
            say(f"loaded {', '.join(loaded)} for the next edit")

    thread = threading.Thread(target=load, name="runner-preload", daemon=True)
    thread.start()
    return thread


def say(text: str) -> None:
    print(text, flush=True)


def summary_line(number: int, run, seconds: float) -> str:
    nodes = run.manifest["nodes"]
    ran = [n for n, node in nodes.items() if node["status"] == "ran"]
    cached = [n for n, node in nodes.items() if node["status"] == "cached"]
    failed = [n for n, node in nodes.items() if node["status"] in ("failed", "interrupted")]
    parts = [f"ran {', '.join(ran) or 'nothing'}", f"cached {', '.join(cached) or 'nothing'}"]
    if failed:
        parts.append(("stopped at " if run.status == "interrupted" else "failed ") + ", ".join(failed))
    return f"pass {number} {run.status}: " + "; ".join(parts) + f"; {seconds:.2f} s -> {run.folder}"


def write_live_page(folder: Path, number: int, run) -> Path:
    """watch.html (written once) shows the newest pass's report.html; watch-state.js, rewritten after every pass,
    tells it which one that is."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "watch.html"
    if not page.is_file():
        write_atomic(page, LIVE_PAGE)
    report = run.folder.relative_to(folder).as_posix() + "/report.html"
    state = {"pass": number, "report": report, "status": run.status, "run": run.folder.name}
    write_atomic(folder / "watch-state.js", f"runnerWatch({json.dumps(state)});\n")
    return page


LIVE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>runner watch</title>
<style>
body { margin: 0; font: 14px system-ui, sans-serif; }
header { padding: 6px 12px; background: #1f2933; color: #f5f7fa; }
iframe { display: block; border: 0; width: 100%; height: calc(100vh - 32px); }
</style></head>
<body>
<header id="status" role="status">runner watch: waiting for the first pass</header>
<iframe id="report" title="the newest pass's report"></iframe>
<script>
"use strict";
let shown = null;
// watch-state.js calls this after each pass; the page shows that pass's report.html
window.runnerWatch = function (state) {
  if (shown === state.pass) { return; }
  shown = state.pass;
  document.getElementById("report").src = state.report;
  document.getElementById("status").textContent = "runner watch: pass " + state.pass + " " + state.status + " (" + state.run + ")";
};
function poll() {
  const script = document.createElement("script");
  script.src = "watch-state.js?t=" + Date.now();
  script.onload = script.onerror = function () { script.remove(); };
  document.head.appendChild(script);
}
poll();
setInterval(poll, 1000);
</script>
</body></html>
"""
