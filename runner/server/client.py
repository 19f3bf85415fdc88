"""`runner.Client`: submit workflows to a `runner serve` server and collect their runs, from Python or the CLI
(`runner submit`, `runner jobs`). Standard library HTTP only: a client machine needs no server libraries.

>>> client = runner.Client("http://gpu-box:8765", token="rnr_...")
>>> job = client.submit("workflows/demo.yaml", set={"params.prompt": "a red barn"})
>>> run = client.wait(job)           # the same Run a Session returns, its files downloaded under out=
>>> run.image("final")
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ..core.errors import CommandError, Location, Problem
from ..language.errors import WorkflowError

DEFAULT_SERVER = "http://127.0.0.1:8765"
MAX_AUTO_UPLOADS = 100


class ServerRefused(CommandError):
    """The server answered with an error (its status, message and fix); a CommandError, so the CLI exits 2."""

    def __init__(self, status: int, message: str, fix: str = "", where: str = "server"):
        super().__init__([Problem(Location(where), (), f"{message} (HTTP {status})", fix)])
        self.status = status


class Client:
    """A `runner serve` server at `url` (default: RUNNER_SERVER, else http://127.0.0.1:8765), with `token` (default:
    RUNNER_TOKEN; none for a server without tokens, which listens on loopback only)."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60.0):
        self.url = (url or os.environ.get("RUNNER_SERVER") or DEFAULT_SERVER).rstrip("/")
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise CommandError([Problem(Location("--server"), (), f"{self.url!r} is not an http(s) URL",
                                        "e.g. --server http://gpu-box:8765 (or RUNNER_SERVER)")])
        self.token = token if token is not None else os.environ.get("RUNNER_TOKEN") or None
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r}{', token=...' if self.token else ''})"

    # ---------------------------------------------------------------- HTTP
    def _open(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
              timeout: float | None = None):
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as error:
            raise _refusal(error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CommandError([Problem(Location("--server"), (), f"cannot reach {self.url}: {reason}",
                                        "start it (runner serve), or give its address: --server URL (RUNNER_SERVER)")]) from None

    def _json(self, method: str, path: str, data: Any = None) -> Any:
        body = json.dumps(data).encode() if data is not None else None
        with self._open(method, path, body, "application/json" if body is not None else None) as answer:
            return json.loads(answer.read() or b"null")

    # ---------------------------------------------------------------- jobs
    def submit(self, workflow: str | Path | dict, set: dict[str, Any] | list[str] | None = None, *,
               files: dict[str, str | Path | bytes] | None = None, only: list[str] | None = None,
               force: list[str] | None = None, sweep: dict[str, list] | list[str] | None = None, zip: bool = False,
               seeds: str | list[int] | None = None, priority: int = 0, batch: int | None = None) -> str:
        """Queue a workflow (a file, YAML text or a dict); the job's id. A file's inputs (relative paths it names that
        exist beside it) are uploaded with it, and `files` ({relative name: path or bytes}) too. An invalid workflow
        raises WorkflowError with the server's located problems; other refusals ServerRefused."""
        request: dict[str, Any] = {"priority": priority}
        uploads: dict[str, bytes] = {}
        if isinstance(workflow, dict):
            request["workflow"] = workflow
        elif isinstance(workflow, Path) or (isinstance(workflow, str) and "\n" not in workflow
                                            and workflow.strip().lower().endswith((".yaml", ".yml"))):
            path = Path(workflow)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError([Problem(Location(str(path)), (), f"cannot read the workflow: {exc}",
                                            "give a workflow YAML file")]) from None
            request.update(workflow=text, filename=path.name)
            uploads.update(inputs_beside(path, text))
        else:
            request["workflow"] = workflow
        for name, value in (files or {}).items():
            uploads[str(name)] = value if isinstance(value, bytes) else Path(value).read_bytes()
        for key, value in (("set", set), ("only", only), ("force", force), ("sweep", sweep), ("seeds", seeds)):
            if value:
                request[key] = value
        if zip:
            request["zip"] = True
        if batch is not None:
            request["batch"] = batch
        if uploads:
            body, content_type = multipart(request, uploads)
        else:
            body, content_type = json.dumps(request).encode(), "application/json"
        try:
            with self._open("POST", "/v1/jobs", body, content_type) as answer:
                return json.loads(answer.read())["id"]
        except ServerRefused as refused:
            problems = getattr(refused, "located", None)
            if problems:
                raise WorkflowError(problems) from None
            raise

    def job(self, job_id: str) -> dict:
        """The job as the server describes it: state, position, progress, files; its manifest when done."""
        return self._json("GET", f"/v1/jobs/{_quote(job_id)}")

    def jobs(self) -> list[dict]:
        return self._json("GET", "/v1/jobs")["jobs"]

    def cancel(self, job_id: str) -> str:
        """Cancel a job: "cancelled" (it was queued), or "stopping" (it stops at its next step)."""
        return self._json("DELETE", f"/v1/jobs/{_quote(job_id)}")["state"]

    def pause(self) -> None:
        self._json("POST", "/v1/queue/pause")

    def resume(self) -> None:
        self._json("POST", "/v1/queue/resume")

    def health(self) -> dict:
        return self._json("GET", "/v1/health")

    def models(self) -> dict:
        return self._json("GET", "/v1/models")

    def events(self, job_id: str) -> Iterator[dict]:
        """The job's progress events as they happen (what it did so far first); the last one is `end`."""
        with self._open("GET", f"/v1/jobs/{_quote(job_id)}/events", timeout=max(self.timeout, 3600)) as stream:
            name, data = "", []
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith(":"):
                    continue
                if not line:
                    if data:
                        event = json.loads("\n".join(data))
                        event.setdefault("event", name)
                        yield event
                        if event["event"] == "end":
                            return
                    name, data = "", []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())

    def file(self, job_id: str, name: str) -> bytes:
        with self._open("GET", f"/v1/jobs/{_quote(job_id)}/files/{'/'.join(_quote(p) for p in PurePosixPath(name).parts)}") as answer:
            return answer.read()

    def image(self, job_id: str, name: str):
        """One of the job's image files as a PIL image."""
        import io

        from PIL import Image

        with Image.open(io.BytesIO(self.file(job_id, name))) as image:
            image.load()
            return image

    def download(self, job_id: str, out: str | Path = "outputs") -> Path:
        """Every file of a finished job into OUT/NAME/RUN (the run folder's own name on the server); that folder."""
        job = self.job(job_id)
        folder_name = PurePosixPath(job.get("folder") or job["id"]).name
        target = Path(out) / _safe(job["name"]) / _safe(folder_name)
        for name in job.get("files", []):
            parts = PurePosixPath(name).parts
            if any(part in ("", ".", "..") for part in parts) or name.startswith("/"):
                continue  # a name that would leave the folder: never written
            path = target.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.file(job_id, name))
        return target

    def wait(self, job_id: str, out: str | Path = "outputs", *, events=None):
        """Wait until the job is over, download its files into OUT/NAME/RUN and return its Run (status, folder,
        manifest, error, fix; `run.image(NODE)` for the images save_image nodes saved). `events`: a callable given
        each progress event as it comes."""
        from ..engine.session import Run

        for event in self.events(job_id):
            if events is not None:
                events(event)
        job = self.job(job_id)
        folder = self.download(job_id, out)
        status = {"cancelled": "interrupted"}.get(job["state"], job["state"])
        exit_code = {"ok": 0, "failed": 1}.get(job["state"], 130)
        return Run(status, folder, job.get("manifest") or {"nodes": {}}, job.get("error"), exit_code,
                   hint=job.get("fix") or "")


def inputs_beside(path: Path, text: str) -> dict[str, bytes]:
    """The files a workflow names by relative paths inside its own folder (its inputs), {relative name: bytes}: every
    string value of the document that names such a file (no node type is read: any field may name a file)."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError):
        return {}  # the server says what is wrong with it
    home = path.resolve().parent
    found: dict[str, bytes] = {}

    def visit(value: Any, depth: int = 0) -> None:
        if depth > 50 or len(found) >= MAX_AUTO_UPLOADS:
            return
        if isinstance(value, dict):
            for item in value.values():
                visit(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                visit(item, depth + 1)
        elif isinstance(value, str) and 0 < len(value) < 300 and "\n" not in value and "$" not in value \
                and "://" not in value and not value.startswith(("/", "~")):
            candidate = (home / value)
            try:
                if candidate.is_file() and candidate.resolve().is_relative_to(home) and candidate.resolve() != path.resolve():
                    found[PurePosixPath(*Path(os.path.normpath(value)).parts).as_posix()] = candidate.read_bytes()
            except (OSError, ValueError):
                pass

    visit(document)
    return found


def multipart(request: dict, uploads: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "runner-" + secrets.token_hex(16)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n'
             f"Content-Type: application/json\r\n\r\n".encode() + json.dumps(request).encode() + b"\r\n"]
    for name, data in uploads.items():
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{quoted}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _refusal(error: urllib.error.HTTPError) -> ServerRefused:
    try:
        answer = json.loads(error.read() or b"{}")
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    message = answer.get("error") or error.reason or "refused"
    if isinstance(message, dict):  # ComfyUI's shape
        message = message.get("message", "refused")
    refused = ServerRefused(error.code, str(message), str(answer.get("fix") or ""),
                            "--token" if error.code in (401, 403) else "server")
    problems = answer.get("problems") if error.code == 422 else None
    if problems and isinstance(problems, list) and str(message) == "the workflow is invalid":
        refused.located = [Problem(_location(str(p.get("where", ""))), (),
                                   (f"{p['path']}: " if p.get("path") else "") + str(p.get("message", "")),
                                   str(p.get("fix") or "")) for p in problems if isinstance(p, dict)]
    return refused


def _location(where: str) -> Location:
    """'file.yaml:3:5' back into a Location (problems print as `runner validate` prints them)."""
    parts = where.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return Location(parts[0], int(parts[1]), int(parts[2]))
    return Location(where)


def _quote(text: str) -> str:
    return urllib.parse.quote(str(text), safe="")


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))[:120].strip(".")
    return cleaned or "job"
