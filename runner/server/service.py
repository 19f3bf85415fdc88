"""The job server's engine room: one warm Session, the durable queue, and the worker threads that run its jobs.

A job is a workflow (with its --set values, --only/--force, sweep) and the files uploaded with it, kept in its own
inbox folder (`OUT/.server/jobs/ID/`), which is the workflow's own folder: its relative paths read the uploads, and
nothing else on the server's disk unless the operator allowed it (`--allow-path`). It is validated and planned when
submitted (an invalid one is never queued), runs on the Session when its turn comes (one at a time on the local
executor; as many side by side as Ray workers), into one run folder (a sweep folder for a sweep) that it keeps when
the server restarts and resumes it.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.errors import CommandError, Location, Problem, Problems
from ..engine.session import Session, _overrides
from .feed import Feed
from .store import Job, Store, new_job_id

STATE_FOLDER = ".server"
MAX_UPLOADS = 100
UPLOAD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+ -]{0,127}$")
CANCELLED = "cancelled"
KEPT_FEEDS = 200  # finished jobs whose events stay in memory
STOPPING = "the server stopped"


@dataclass
class ServerOptions:
    out: Path = Path("outputs")
    executor: str = "local"
    executor_options: dict = field(default_factory=dict)
    allow_paths: list[Path] = field(default_factory=list)
    model_paths: list[Path] = field(default_factory=list)
    allow_private_urls: bool | list[str] = False
    max_ram: str | None = None
    max_vram: str | None = None
    max_queued: int = 20  # queued and running jobs per user
    max_request_bytes: int = 64 * 1024 * 1024  # a request's body: the workflow and every upload
    max_workflow_bytes: int = 1024 * 1024


class JobRefused(Exception):
    """A request the server turns down: HTTP status, message and fix."""

    def __init__(self, status: int, message: str, fix: str = ""):
        super().__init__(message)
        self.status, self.fix = status, fix


@dataclass
class User:
    name: str
    admin: bool


class Service:
    def __init__(self, options: ServerOptions, session: Session | None = None):
        self.options = options
        self.out = Path(options.out).resolve()
        self.state = self.out / STATE_FOLDER
        self.store = Store(self.state)
        self.session = session or Session(
            out=self.out, max_ram=options.max_ram, max_vram=options.max_vram, allow_paths=options.allow_paths,
            model_paths=options.model_paths, allow_private_urls=options.allow_private_urls, executor=options.executor,
            executor_options=options.executor_options, consent_by="server")
        self.feeds: dict[str, Feed] = {}
        self.listed: dict[str, list[str]] = {}  # finished job -> its files
        self._hidden: list[tuple[str, str]] | None = None
        self.cancels: set[str] = set()
        self.stopping = threading.Event()
        self.wake = threading.Condition()
        self.workers: list[threading.Thread] = []
        self.recovered: list[str] = []

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Take the --out folder (one server per folder: a second one would resume the first one's running jobs),
        queue again what a stopped or killed server left running, start the job threads."""
        from filelock import FileLock, Timeout

        self.lock = FileLock(str(self.state / "serve.lock"))
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise CommandError([Problem(Location("--out"), (), f"another runner serve is using {self.options.out}",
                                        "stop it first, or give this one another --out")]) from None
        self.recovered = [job.id for job in self.store.recover()]
        self.session.check_out()
        count = max(1, self.session.executor.capacity())
        for number in range(count):
            worker = threading.Thread(target=self._work, name=f"job-worker-{number}", daemon=True)
            worker.start()
            self.workers.append(worker)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking jobs; a running job stops at its next step and is queued again for the next start."""
        self.stopping.set()
        self._notify()
        for worker in self.workers:
            worker.join(timeout)
        self.session.close()
        self.store.close()
        if getattr(self, "lock", None) is not None:
            self.lock.release()

    def _notify(self) -> None:
        with self.wake:
            self.wake.notify_all()

    @property
    def paused(self) -> bool:
        return self.store.setting("paused") == "1"

    def pause(self, paused: bool) -> None:
        self.store.set_setting("paused", "1" if paused else "0")
        self._notify()

    # ---------------------------------------------------------- submitting
    def submit(self, user: User, request: dict, workflow_text: str, uploads: dict[str, bytes]) -> Job:
        """Validate, plan and queue a job (JobRefused, or WorkflowError/CommandError with the located problems)."""
        if self.store.queued_count(user.name) >= self.options.max_queued:
            raise JobRefused(429, f"{user.name} has {self.options.max_queued} jobs queued or running (the limit)",
                             "wait for some to finish, or cancel some (DELETE /v1/jobs/ID, runner jobs cancel ID)")
        if len(workflow_text.encode()) > self.options.max_workflow_bytes:
            raise JobRefused(413, f"the workflow is larger than {self.options.max_workflow_bytes} bytes",
                             "send a smaller workflow")
        names = check_uploads(uploads)
        job_dir = self._new_inbox()
        try:
            for name, data in zip(names, uploads.values()):
                target = job_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            (job_dir / "workflow.yaml").write_text(workflow_text, encoding="utf-8")
            loaded = self._validate(job_dir, request)
            if loaded.document.get("sweep"):
                request = {**request, "file_sweep": True}
            job_id = new_job_id()
            job_dir.rename(self.inbox(job_id))  # in place before the job is queued: a worker may take it at once
            job_dir = self.inbox(job_id)
            job = self.store.add(user.name, request, loaded.name, int(request.get("priority") or 0), job_id)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        self._notify()
        return job

    def _new_inbox(self) -> Path:
        import secrets

        folder = self.state / "jobs" / f"incoming-{secrets.token_hex(8)}"
        folder.mkdir(parents=True)
        return folder

    def inbox(self, job_id: str) -> Path:
        return self.state / "jobs" / job_id

    def _validate(self, job_dir: Path, request: dict):
        """The workflow loaded and planned as its run will be (every variant of a sweep); raises the problems."""
        workflow = job_dir / "workflow.yaml"
        loaded = self.session.load(workflow, request.get("set"))
        if _sweeps(request) or loaded.document.get("sweep"):
            self.session.sweep(workflow, request.get("sweep"), zip=bool(request.get("zip")), seeds=request.get("seeds"),
                               set=request.get("set"), only=request.get("only"), dry_run=True)
        else:
            if request.get("batch") is not None:
                raise CommandError([Problem(Location("batch"), (), "it groups the variants of a sweep, and this job is "
                                            "not a sweep", "add seeds or sweep (or a sweep: section), or drop batch")])
            self.session.plan(loaded, request.get("only") or None)
        return loaded

    # ------------------------------------------------------------- queries
    def visible(self, user: User, job_id: str) -> Job:
        job = self.store.get(job_id) if isinstance(job_id, str) and len(job_id) <= 64 else None
        if job is None or not (user.admin or job.owner == user.name):
            raise JobRefused(404, f"no job {job_id[:64]!r}" + ("" if user.admin else " of yours"),
                             "list your jobs: GET /v1/jobs (runner jobs)")
        return job

    def cancel(self, user: User, job_id: str) -> str:
        job = self.visible(user, job_id)
        state = self.store.cancel(job.id)
        if state == "stopping":
            self.cancels.add(job.id)
        elif state == CANCELLED and job.id in self.feeds:
            self.feeds[job.id].close(CANCELLED)
        return state

    def folder(self, job: Job) -> Path | None:
        return self.out / job.folder if job.folder else None

    def describe(self, job: Job, *, full: bool = False) -> dict:
        """A job as the API answers it (paths relative to the job's own folder, nothing of the server's layout)."""
        feed = self.feeds.get(job.id)
        data: dict[str, Any] = {
            "id": job.id, "owner": job.owner, "name": job.name, "state": job.state, "priority": job.priority,
            "position": self.store.position(job), "submitted": job.submitted, "started": job.started,
            "finished": job.finished, "attempts": job.attempts, "error": self.scrub(job.error, job),
            "fix": self.scrub(job.hint, job), "folder": job.folder, "sweep": bool(_sweeps(job.request)) or None,
            "progress": dict(feed.progress) if feed is not None else None,
        }
        if job.state == "running" and job.id in self.cancels:
            data["state"] = "stopping"
        folder = self.folder(job)
        if folder is not None and folder.is_dir():
            data["files"] = self._files(job, folder)
            if full:
                manifest = folder / "manifest.json"
                index = folder / "index.json"
                record = manifest if manifest.is_file() else index if index.is_file() else None
                if record is not None:
                    import json

                    try:
                        data["manifest" if record is manifest else "index"] = json.loads(
                            self.scrub(record.read_text(encoding="utf-8"), job))
                    except (OSError, ValueError):
                        pass
        if full:
            data["request"] = {key: value for key, value in job.request.items() if key != "uploads"}
        return {key: value for key, value in data.items() if value is not None}

    def _files(self, job: Job, folder: Path) -> list[str]:
        """The job's files; a finished job's listing is remembered (the page asks for every job each second)."""
        if job.over and job.id in self.listed:
            return self.listed[job.id]
        files = job_files(folder)
        if job.over:
            if len(self.listed) >= 10 * KEPT_FEEDS:
                self.listed.clear()
            self.listed[job.id] = files
        return files

    def scrub(self, text: str | None, job: Job | None = None) -> str | None:
        """Text with the server's folders hidden: a job's inbox written as the workflow's own folder (relative paths,
        `.`), run folders relative to --out, the cache and the server's other folders as <cache> and <server>."""
        if not text:
            return text
        inbox = re.escape(str(self.state / "jobs")) + r"/(?:incoming-[0-9a-f]+|[0-9a-f-]{36})"
        text = _hide(text, inbox, "")
        text = _hide(text, re.escape(str(self.state)), "<server>")
        text = _hide(text, re.escape(str(self.out)), "")
        for folder, shown in self.hidden:
            text = _hide(text, folder, shown)
        return text

    @property
    def hidden(self) -> list[tuple[str, str]]:
        """(folder as a regex, how answers show it): the cache, model folders, allowed folders, the server's own."""
        if self._hidden is None:
            from ..core.paths import models_dir

            folders = [(models_dir(self.session.cache.root), "<models>"), (self.session.cache.root, "<cache>")]
            folders += [(folder, "<models>") for folder in self.options.model_paths]
            folders += [(folder, "<allowed>") for folder in self.options.allow_paths]
            folders.append((Path.cwd(), "<server>"))
            resolved = []
            for folder, shown in folders:
                for form in {str(Path(folder).absolute()), str(Path(folder).resolve())}:
                    resolved.append((form, shown))
            # the longest first: a folder inside another is hidden as itself
            self._hidden = [(re.escape(form), shown) for form, shown in sorted(resolved, key=lambda f: -len(f[0]))]
        return self._hidden

    # --------------------------------------------------------------- running
    def _work(self) -> None:
        while not self.stopping.is_set():
            job = None if self.paused else self.store.take()
            if job is None:
                with self.wake:
                    self.wake.wait(timeout=1.0)
                continue
            try:
                self._run(job)
            except BaseException as exc:  # noqa: BLE001 - a job must never take its worker down
                print(f"runner serve: job {job.id} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                traceback.print_exc()
                self.store.finish(job.id, "failed", f"the server failed running it: {type(exc).__name__}: {exc}")
                feed = self.feeds.get(job.id)
                if feed is not None and not feed.closed:
                    feed.close("failed")

    def _run(self, job: Job) -> None:
        for old in [key for key, kept in self.feeds.items() if kept.closed][:-KEPT_FEEDS]:
            del self.feeds[old]  # the events of the latest finished jobs stay in memory; older ones answer their end
        feed = self.feeds[job.id] = Feed()
        feed.add("job", state="running", attempt=job.attempts)
        folder = self._run_folder(job)

        def should_stop():
            if job.id in self.cancels or self.store.cancelled(job.id):
                return CANCELLED
            return STOPPING if self.stopping.is_set() else None

        request, workflow = job.request, self.inbox(job.id) / "workflow.yaml"
        extra = {"job": {"id": job.id, "owner": job.owner, "attempt": job.attempts}}
        status, error, hint = "failed", None, None
        try:
            if _sweeps(request) or request.get("file_sweep"):
                sweep = self.session.sweep(workflow, request.get("sweep"), zip=bool(request.get("zip")),
                                           seeds=request.get("seeds"), set=request.get("set"), only=request.get("only"),
                                           force=request.get("force"), folder=folder, extra=extra,
                                           events=feed.sink(), should_stop=should_stop, batch=request.get("batch"))
                runs = list(sweep.runs.values())
                failed = [run for run in runs if run.status != "ok"]
                status = "ok" if not failed and not sweep.error else (failed[0].status if failed else "failed")
                error = sweep.error or (failed[0].error if failed else None)
                hint = failed[0].hint if failed else None
            else:
                run = self.session.run(workflow, request.get("set"), only=request.get("only"),
                                       force=request.get("force"), run_dir=folder, extra=extra, events=feed.sink(),
                                       should_stop=should_stop)
                status, error, hint = run.status, run.error, run.hint
        except Problems as exc:  # the workflow or a model changed since it was queued
            status, error = "failed", "; ".join(str(problem) for problem in exc.problems)
        cancelled = job.id in self.cancels or self.store.cancelled(job.id)
        self.cancels.discard(job.id)
        if status == "interrupted" and not cancelled and self.stopping.is_set():
            self.store.requeue(job.id)  # resumed by the next start, into the same folder, from the cache
            feed.close("queued", error="the server stopped; the job resumes when it starts again")
            return
        if cancelled and status != "ok":
            status, error = CANCELLED, "cancelled; finished nodes stay cached"
        self.store.finish(job.id, status, error, hint)
        feed.close(status, error=self.scrub(error, job), fix=self.scrub(hint, job))

    def _run_folder(self, job: Job) -> Path:
        """The job's run (or sweep) folder, chosen once: a job resumed after a restart goes into the same folder again
        (what its interrupted attempt left there is replaced; the nodes it finished come from the cache)."""
        from ..engine.run import _new_run_dir
        from ..engine.sweep import new_sweep_dir

        if job.folder:
            folder = self.out / job.folder
            if folder.is_symlink() or not folder.resolve().is_relative_to(self.out):
                raise CommandError([Problem(Location(str(job.folder)), (), "the job's folder is not inside --out", "")])
            shutil.rmtree(folder, ignore_errors=True)
            return folder
        sweep = _sweeps(job.request) or job.request.get("file_sweep")
        folder = new_sweep_dir(self.out, job.name) if sweep else _new_run_dir(self.out, job.name)
        folder.rmdir()  # the run makes it (and refuses one that exists)
        self.store.set_folder(job.id, folder.relative_to(self.out).as_posix())
        return folder


def _hide(text: str, folder: str, shown: str) -> str:
    """Every path under the folder (a regex) written under `shown` instead ("" : relative), the folder itself as
    `shown` (or `.`); a longer name that merely starts with the folder's is left alone."""
    text = re.sub(folder + "/", (shown + "/") if shown else "", text)
    return re.sub(folder + r"(?![\w.\-/])", shown or ".", text)


def _sweeps(request: dict) -> bool:
    return bool(request.get("sweep") or request.get("seeds"))


def check_uploads(uploads: dict[str, bytes]) -> list[str]:
    """The uploads' names as relative paths inside the inbox; JobRefused (422) for a name that could leave it."""
    if len(uploads) > MAX_UPLOADS:
        raise JobRefused(422, f"{len(uploads)} files uploaded (at most {MAX_UPLOADS})", "upload fewer files")
    names = []
    for name in uploads:
        parts = PurePosixPath(name).parts
        if (not parts or len(parts) > 8 or name.startswith("/") or "\\" in name
                or not all(UPLOAD_NAME.match(part) and part not in (".", "..") for part in parts)
                or parts[0] == "workflow.yaml" and len(parts) == 1):
            raise JobRefused(422, f"upload name {name[:100]!r} is not a plain relative path",
                             "name uploads like inputs/room.png: letters, digits, _ . - + @ and spaces, no '..', "
                             "at most 8 folders deep (workflow.yaml is the workflow itself)")
        names.append("/".join(parts))
    return names


def job_files(folder: Path, limit: int = 1000) -> list[str]:
    """The files of a job's folder, relative to it (a sweep's variants' files under NNN/)."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
            files.append(path.relative_to(folder).as_posix())
            if len(files) >= limit:
                break
    return files


def overrides_of(values: Any) -> list[str]:
    return _overrides(values)
