"""The HTTP API of `runner serve` (FastAPI: typed, with OpenAPI docs at /docs), its web page at `/`, and ComfyUI's
`/prompt` submission.

Every answer is JSON; every refusal is `{"error": MESSAGE, "fix": FIX}` (422s add `problems`, located as `runner
validate` locates them) with its status (401, 403, 404, 413, 422, 429), never a traceback. The server trusts no
client: each request is authenticated (bearer tokens, when the server has any), bounded in bytes, and sees only its
user's jobs (admins see all).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..core.errors import Problems
from .files import job_file
from .service import JobRefused, Service, User

PAGE = Path(__file__).with_name("page.html")


MAX_ITEMS = 200  # overrides, node names and swept paths a job may give
POLL = 0.02  # seconds between looks at a job's events while streaming them


class JobRequest(BaseModel):
    """A job: a workflow and how to run it (the options of `runner run`)."""

    workflow: str | dict = Field(description="the workflow: YAML text, or the workflow as a JSON object")
    filename: str = Field("workflow.yaml", max_length=200, description="the workflow's file name, as problems cite it")
    set: dict[str, Any] | list[str] | None = Field(None, max_length=MAX_ITEMS,
                                                   description="overrides: {PATH: VALUE} or ['PATH=VALUE']")
    only: list[str] | None = Field(None, max_length=MAX_ITEMS, description="run only these nodes and what they need")
    force: list[str] | None = Field(None, max_length=MAX_ITEMS, description="re-run these nodes even if cached")
    sweep: dict[str, list] | list[str] | None = Field(None, max_length=MAX_ITEMS,
                                                       description="{PATH: [values]} or ['PATH=V1,V2']")
    zip: bool = Field(False, description="pair the sweep lists instead of combining them")
    seeds: str | list[int] | None = Field(None, max_length=10_000,
                                          description="sweep the workflow seed: '1-8', '1,5,9' or a list")
    batch: int | None = Field(None, ge=1, le=64, description="a sweep's variants that differ only in seed (and prompt) "
                                                           "computed N to a call, as --batch N; default: the server's")
    priority: int = Field(0, ge=-100, le=100, description="higher runs first; first come first served within one")


class Refusal(BaseModel):
    """Every error the API answers (ComfyUI's routes answer in ComfyUI's shape)."""

    error: str = Field(description="what is wrong")
    fix: str = Field("", description="how to fix it")
    problems: list[dict] | None = Field(None, description="422: each problem of the workflow or request, located")


def refusal(status: int, message: str, fix: str = "", **extra) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, "fix": fix, **extra}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused (413) before it is read into memory (by its
    Content-Length, or while a chunked body streams in)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = refusal(413, f"the request is larger than {self.limit} bytes (the server's --max-request-size)",
                            "send a smaller workflow or fewer or smaller files")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await too_large(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        started = False

        async def watched_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched_send)
        except _TooLarge:
            if not started:
                await too_large(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(service: Service, *, tokens_required: bool = False, cors_origins: list[str] | None = None) -> FastAPI:
    """The ASGI app of one Service. `tokens_required`: refuse every request without a valid token even while the
    server has none (a server bound to a non-loopback address)."""
    refused = {"model": Refusal}
    app = FastAPI(title="runner serve", version=__version__,
                  responses={401: {**refused, "description": "no token, or a token that is unknown or revoked"},
                             403: {**refused, "description": "only an admin may do this"},
                             404: {**refused, "description": "no such job of yours, or no such file"},
                             413: {**refused, "description": "the request is larger than the server takes"},
                             422: {**refused, "description": "an invalid request, or a workflow with problems "
                                                             "(`problems`: where, path, message, fix)"},
                             429: {**refused, "description": "you have as many jobs queued as the server allows"}},
                  description="A durable, authenticated job queue for runner workflows. Authenticate with "
                              "`Authorization: Bearer TOKEN` (`runner serve token add NAME`).")
    store = service.store

    # ----------------------------------------------------------- errors
    @app.exception_handler(JobRefused)
    async def _refused(_request, exc: JobRefused):
        return refusal(exc.status, str(exc), exc.fix)

    @app.exception_handler(Problems)
    async def _problems(_request, exc: Problems):
        problems = [{"where": service.scrub(str(problem.location)), "path": _dotted(problem.path),
                     "message": service.scrub(problem.message), "fix": service.scrub(problem.hint)}
                    for problem in exc.problems]
        return refusal(422, "the workflow is invalid" if problems else "invalid request",
                       "fix the problems listed and submit again", problems=problems)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        problems = [{"where": ".".join(str(part) for part in error.get("loc", ())), "message": error.get("msg", "")}
                    for error in exc.errors()[:20]]
        return refusal(422, "invalid request", "see the API's schema at /docs", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, exc: StarletteHTTPException):
        return refusal(exc.status_code, str(exc.detail), "see the API at /docs")

    @app.exception_handler(Exception)
    async def _crash(_request, exc: Exception):
        print(f"runner serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return refusal(500, "the server failed to answer this request", "try again; the server's log says why")

    # ------------------------------------------------------------- auth
    def user(request: Request) -> User:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            found = store.user(token.strip())
            if found is None:
                raise JobRefused(401, "the token is not valid (unknown or revoked)",
                                 "ask the server's operator for a token (runner serve token add NAME)")
            return User(found.name, found.admin)
        if tokens_required or store.live_tokens():
            raise JobRefused(401, "this server needs a token", "send the header Authorization: Bearer TOKEN "
                             "(runner submit --token, RUNNER_TOKEN)")
        return User("local", True)  # no tokens: the server listens on loopback only, for the people of this machine

    def admin(who: User = Depends(user)) -> User:
        if not who.admin:
            raise JobRefused(403, "only an admin may do this", "ask the server's operator")
        return who

    # ------------------------------------------------------------- jobs
    @app.post("/v1/jobs", status_code=201, summary="Submit a workflow (JSON, or multipart with files)",
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": JobRequest.model_json_schema()},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "request": {"type": "string", "description": "the JobRequest as JSON"},
                      "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                "description": "input files; each file name is its path relative to the workflow"}}}}},
                  "required": True}})
    async def submit(request: Request, who: User = Depends(user)):
        job_request, uploads = await read_job_request(request, service.options.max_request_bytes)
        workflow, job_request = job_request.workflow, job_request.model_dump(exclude={"workflow"}, exclude_none=True)
        text = workflow if isinstance(workflow, str) else _yaml(workflow)
        job = await asyncio.to_thread(_submit_located, service, who, job_request, text, uploads)
        return {"id": job.id, "position": store.position(job), "state": job.state, "name": job.name}

    @app.get("/v1/jobs", summary="Your jobs (an admin's: everyone's): queued and running first, then finished")
    def jobs(state: Literal["all", "active", "done"] = "all", limit: int = Query(200, ge=1, le=1000),
             who: User = Depends(user)):
        listed = store.jobs(None if who.admin else who.name, limit=limit, state=state)
        return {"paused": service.paused, "jobs": [service.describe(job) for job in listed]}

    @app.get("/v1/jobs/{job_id}", summary="A job: state, queue position, progress; its manifest when done")
    def job(job_id: str, who: User = Depends(user)):
        return service.describe(service.visible(who, job_id), full=True)

    @app.delete("/v1/jobs/{job_id}", summary="Cancel a job (a running one stops at its next step; finished nodes "
                                              "stay cached)")
    def cancel(job_id: str, who: User = Depends(user)):
        state = service.cancel(who, job_id)
        return {"id": job_id, "state": state}

    @app.get("/v1/jobs/{job_id}/events", summary="The job's progress as server-sent events (node_started, "
                                                  "node_step, node_done, node_cached, node_failed, ...; `end` last)")
    async def events(job_id: str, request: Request, who: User = Depends(user)):
        job = service.visible(who, job_id)
        return StreamingResponse(_stream(service, job.id, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/v1/jobs/{job_id}/files", summary="The names of the job's files (images, manifest.json, report.html)")
    def files(job_id: str, who: User = Depends(user)):
        job = service.visible(who, job_id)
        described = service.describe(job)
        return {"id": job.id, "files": described.get("files", [])}

    @app.get("/v1/jobs/{job_id}/files/{name:path}", summary="One of the job's files")
    def file(job_id: str, name: str, who: User = Depends(user)):
        job = service.visible(who, job_id)
        return job_file(service, job, name)

    # ------------------------------------------------------------ queue
    @app.post("/v1/queue/pause", summary="Stop starting jobs (the running ones finish)")
    def pause(_who: User = Depends(admin)):
        service.pause(True)
        return {"paused": True}

    @app.post("/v1/queue/resume", summary="Start jobs again")
    def resume(_who: User = Depends(admin)):
        service.pause(False)
        return {"paused": False}

    @app.get("/v1/health", summary="Is the server up (no token needed)")
    def health():
        return {"status": "ok", "version": __version__, "paused": service.paused}

    @app.get("/v1/models", summary="What the model pool holds, and its memory budget")
    def models(_who: User = Depends(user)):
        pool = service.session.pool
        return {"loaded": [{"model": resident.label, "device": resident.device, "dtype": resident.dtype,
                            "bytes": resident.size} for resident in pool.residents.values()],
                "budget": {"ram": pool.known_budget("ram"), "vram": pool.known_budget("vram")},
                "used": {"ram": pool.resident_bytes("ram"), "vram": pool.resident_bytes("vram")},
                "executor": service.options.executor}

    @app.get("/v1/me", summary="Who the token belongs to")
    def me(who: User = Depends(user)):
        return {"name": who.name, "admin": who.admin}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
                                       "script-src 'self' 'unsafe-inline'; frame-src 'self' blob:; object-src 'none'",
            "X-Content-Type-Options": "nosniff"})

    from .comfyui import add_comfyui_routes

    add_comfyui_routes(app, service, user)

    app.add_middleware(BodyLimit, limit=service.options.max_request_bytes)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


def _submit_located(service: Service, who: User, request: dict, text: str, uploads: dict[str, bytes]):
    """Submit; problems located in the inbox's workflow.yaml are cited by the file name the client gave."""
    try:
        return service.submit(who, request, text, uploads)
    except Problems as exc:
        name = request.get("filename") or "workflow.yaml"
        inbox = re.compile(re.escape(str(service.state / "jobs")) + r"/[\w-]+/workflow\.yaml")
        for problem in exc.problems:
            if inbox.fullmatch(problem.location.source):
                problem.location = type(problem.location)(name, problem.location.line, problem.location.column)
            problem.message, problem.hint = inbox.sub(name, problem.message), inbox.sub(name, problem.hint or "")
        raise


async def read_job_request(request: Request, limit: int) -> tuple[JobRequest, dict[str, bytes]]:
    """The JobRequest of a JSON body, or of a multipart form's `request` field with its `files`."""
    kind = request.headers.get("content-type", "")
    uploads: dict[str, bytes] = {}
    try:
        if kind.startswith("multipart/form-data"):
            form = await request.form(max_files=100, max_fields=20, max_part_size=limit)
            raw = form.get("request")
            if not isinstance(raw, str):
                raise JobRefused(422, "the form has no 'request' field", "send the JobRequest as JSON in 'request'")
            body = json.loads(raw)
            for item in form.getlist("files"):
                if isinstance(item, str) or not item.filename:
                    raise JobRefused(422, "a 'files' part is not a file", "send each input as a file part")
                if item.filename in uploads:
                    raise JobRefused(422, f"two files named {item.filename[:100]!r}", "upload each file once")
                uploads[item.filename] = await item.read()
        else:
            body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobRefused(422, f"the request is not valid JSON: {str(exc)[:200]}",
                         "send a JSON object (see /docs)") from None
    except RecursionError:
        raise JobRefused(422, "the request is nested too deeply", "send plain data") from None
    if not isinstance(body, dict):
        raise JobRefused(422, "the request is not a JSON object", "send {\"workflow\": \"...\"} (see /docs)")
    from pydantic import ValidationError

    try:
        return JobRequest.model_validate(body), uploads
    except ValidationError as exc:
        problems = [{"where": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
                    for error in exc.errors()[:20]]
        raise _RequestProblems(problems) from None


class _RequestProblems(JobRefused):
    def __init__(self, problems: list[dict]):
        super().__init__(422, "invalid request: " + "; ".join(f"{p['where']}: {p['message']}" for p in problems),
                         "see the JobRequest schema at /docs")


async def _stream(service: Service, job_id: str, request: Request):
    """Server-sent events: what the job did so far, then each event as it happens, `end` when it is over."""
    index, idle = 0, 0.0
    yield ": runner serve events\n\n"
    while True:
        feed = service.feeds.get(job_id)
        if feed is not None:
            for event in feed.since(index):
                index += 1
                yield _sse(event, service)
                if event["event"] == "end":
                    return
        job = service.store.get(job_id)
        if job is None:
            return
        if job.over and (feed is None or feed.closed):
            if feed is None:  # over before this server started: no events in memory, only the outcome
                yield _sse({"event": "end", "state": job.state, "error": job.error, "fix": job.hint}, service)
                return
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL)  # a job's events come from its worker thread: looked for 50 times a second
        idle += POLL
        if idle >= 15:
            idle = 0.0
            yield ": keep-alive\n\n"


def _sse(event: dict, service: Service) -> str:
    data = service.scrub(json.dumps(event, default=str))
    return f"event: {event['event']}\ndata: {data}\n\n"


def _dotted(path: tuple) -> str:
    from ..core.errors import dotted

    return dotted(path)


def _yaml(document: dict) -> str:
    import yaml

    try:
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    except (yaml.YAMLError, RecursionError) as exc:
        raise JobRefused(422, f"the workflow object cannot be written as YAML: {str(exc)[:200]}", "send plain data") from None
