"""A job's files as the API serves them: only files inside its own folder (no link out of it, no hidden file), text
files with the server's folders hidden (Service.scrub), every answer marked not to be sniffed or scripted elsewhere."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse, Response

from .service import JobRefused, Service

TEXT_FILES = (".json", ".html", ".yaml", ".yml", ".txt")


def job_file(service: Service, job, name: str) -> Response:
    folder = service.folder(job)
    if folder is None or not folder.is_dir():
        raise JobRefused(404, f"job {job.id} has no files yet (state: {job.state})", "wait until it runs")
    target = (folder / name)
    try:
        resolved = target.resolve(strict=True)
    except (OSError, RuntimeError):
        resolved = None
    if (resolved is None or not resolved.is_relative_to(folder.resolve()) or not resolved.is_file()
            or any(part.startswith(".") for part in Path(name).parts)):
        raise JobRefused(404, f"job {job.id} has no file {name[:200]!r}", "list them: GET /v1/jobs/ID/files")
    if resolved.suffix.lower() in TEXT_FILES:
        text = service.scrub(resolved.read_text(encoding="utf-8", errors="replace"), job) or ""
        media = {".json": "application/json", ".html": "text/html"}.get(resolved.suffix.lower(), "text/plain")
        return Response(text, media_type=f"{media}; charset=utf-8",
                        headers={"Content-Security-Policy": "default-src 'none'; img-src data: 'self'; "
                                                            "style-src 'unsafe-inline'; script-src 'unsafe-inline'",
                                 "X-Content-Type-Options": "nosniff"})
    return FileResponse(resolved, headers={"X-Content-Type-Options": "nosniff"})
