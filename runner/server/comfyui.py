"""ComfyUI's submission API on runner's queue: `POST /prompt` takes an API-format graph (what ComfyUI's "Save (API)"
writes and its scripts send), converts it with `runner import comfyui`'s importer and queues the workflow; `GET
/history/{prompt_id}`, `GET /view` and `POST /upload/image` answer in ComfyUI's shapes, so existing ComfyUI
clients and scripts submit to runner unchanged. Authentication and isolation are runner's (a token when the server
has tokens; each user sees only their own prompts and uploads).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from fastapi import Depends, FastAPI, Request

from ..core.errors import Problems
from .files import job_file
from .service import JobRefused, Service, User, check_uploads

SAVE = re.compile(r"^(\S+) SaveImage$")


def add_comfyui_routes(app: FastAPI, service: Service, user) -> None:
    @app.post("/prompt", tags=["ComfyUI"], summary="Queue a ComfyUI API-format graph (ComfyUI's /prompt)")
    async def prompt(request: Request, who: User = Depends(user)):
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _comfy_error("invalid_prompt", "the body is not JSON", "send {\"prompt\": {...API-format graph...}}")
        graph = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(graph, dict):
            return _comfy_error("invalid_prompt", "no 'prompt' object in the body",
                                "send {\"prompt\": {...}} as ComfyUI's Save (API) writes it")
        try:
            job = await asyncio.to_thread(_queue_graph, service, who, graph, body)
        except Problems as exc:
            details = "; ".join(service.scrub(str(problem)) or "" for problem in exc.problems)
            return _comfy_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return {"prompt_id": job.id, "number": job.seq, "node_errors": {}}

    @app.get("/history/{prompt_id}", tags=["ComfyUI"], summary="A prompt's outputs once done (ComfyUI's /history)")
    def history(prompt_id: str, who: User = Depends(user)):
        try:
            job = service.visible(who, prompt_id)
        except JobRefused:
            return {}
        if not job.over:
            return {}
        outputs = {}
        folder = service.folder(job)
        manifest = _manifest(folder)
        saves = job.request.get("comfyui_saves", {})
        for comfy_id, node_id in saves.items():
            published = (manifest.get("nodes", {}).get(node_id) or {}).get("published") or []
            outputs[comfy_id] = {"images": [{"filename": name, "subfolder": job.id, "type": "output"}
                                            for name in published]}
        ok = job.state == "ok"
        messages = [] if ok else [["execution_error", {"prompt_id": job.id, "exception_message": service.scrub(job.error, job)}]]
        return {job.id: {"prompt": [job.seq, job.id, {}, {}, list(saves)], "outputs": outputs,
                         "status": {"status_str": "success" if ok else "error", "completed": ok, "messages": messages}}}

    @app.get("/view", tags=["ComfyUI"], summary="An output image (ComfyUI's /view?filename=&subfolder=&type=output)")
    def view(filename: str, subfolder: str = "", type: str = "output", who: User = Depends(user)):
        if type != "output":
            raise JobRefused(404, f"no {type!r} images here", "ask for type=output, with the subfolder /history gave")
        job = service.visible(who, subfolder)
        return job_file(service, job, filename)

    @app.post("/upload/image", tags=["ComfyUI"], summary="Upload an input image for LoadImage (ComfyUI's /upload/image)")
    async def upload(request: Request, who: User = Depends(user)):
        form = await request.form(max_files=1, max_fields=5, max_part_size=service.options.max_request_bytes)
        image = form.get("image")
        if image is None or isinstance(image, str) or not image.filename:
            raise JobRefused(422, "no 'image' file in the form", "send the image as the multipart field 'image'")
        name = Path(image.filename).name
        check_uploads({name: b""})
        folder = _inputs(service, who)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(await image.read())
        return {"name": name, "subfolder": "", "type": "input"}


def _inputs(service: Service, who: User) -> Path:
    """A user's ComfyUI input folder (what /upload/image wrote): its files join a prompt's inbox when it names them."""
    return service.state / "comfyui-input" / re.sub(r"[^A-Za-z0-9_.-]", "_", who.name)


def _queue_graph(service: Service, who: User, graph: dict, body: dict):
    from ..importers.comfyui.convert import comfy_nodes, convert

    source = Path("prompt.json")
    comfy_nodes(graph, source)  # nodes with no class_type: refused like the importer refuses them
    text, imported = convert(graph, source, Path("."), "", "comfyui")
    saves = {}
    for node_id, node in imported.nodes:
        for origin in node.comfy:
            match = SAVE.match(origin)
            if match:
                saves[match.group(1)] = node_id
    uploads = {}
    inputs = _inputs(service, who)
    for path, name in imported.images:
        candidate = inputs / Path(name).name
        if candidate.is_file():
            uploads[path] = candidate.read_bytes()
    request = {"filename": "prompt.json", "comfyui_saves": saves}
    if isinstance(body.get("client_id"), str):
        request["client_id"] = body["client_id"][:100]
    return service.submit(who, request, text, uploads)


def _manifest(folder: Path | None) -> dict:
    if folder is None:
        return {}
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _comfy_error(kind: str, message: str, details: str = ""):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"type": kind, "message": message, "details": details, "extra_info": {}},
                         "node_errors": {}}, status_code=400)

