"""`runner serve` (the job server and its tokens), `runner submit` and `runner jobs` (its command-line clients)."""

from __future__ import annotations

import ipaddress
import sys
import time
from pathlib import Path

from ..core.errors import CommandError, Location, Problem
from . import EXIT_INTERRUPTED, EXIT_NODE_FAILED, EXIT_OK


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_serve(args) -> int:
    if getattr(args, "serve_command", None) == "token":
        return _token(args)
    from ..server.service import ServerOptions, Service
    from ..server.store import Store
    from .run import executor_options

    host = args.host
    out = Path(args.out)
    tokens = Store(out.resolve() / ".server").live_tokens() if (out / ".server").is_dir() else 0
    if not is_loopback(host) and not tokens:
        raise CommandError([Problem(Location("--host"), (), f"refusing to listen on {host} without tokens: anyone who "
                                    "can reach it could run workflows on this machine",
                                    f"add a token first (runner serve token add NAME --out {out}), or listen on "
                                    "127.0.0.1 only")])
    from ..core.sizes import parse_size

    try:
        max_request = parse_size(args.max_request_size)
    except ValueError as exc:
        raise CommandError([Problem(Location("--max-request-size"), (), str(exc), "e.g. 64MB")]) from None
    options = ServerOptions(out=out, executor=args.executor, executor_options=executor_options(args),
                            allow_paths=args.allow_paths, model_paths=args.model_paths,
                            allow_private_urls=args.allow_private_urls, max_ram=args.max_ram, max_vram=args.max_vram,
                            max_queued=args.max_queued, max_request_bytes=max_request)
    service = Service(options)
    from ..server.app import create_app

    app = create_app(service, tokens_required=not is_loopback(host), cors_origins=args.cors_origin)
    import uvicorn

    config = uvicorn.Config(app, host=host, port=args.port, log_level="warning", timeout_graceful_shutdown=3,
                            access_log=False)
    server = uvicorn.Server(config)
    service.start()  # before the port is taken: a second server on this --out is refused (exit 2) without binding
    shown = f"[{host}]" if ":" in host else host
    auth = (f"{tokens} token{'' if tokens == 1 else 's'}: requests need Authorization: Bearer TOKEN" if tokens else
            "no tokens: listening on loopback only; add one with runner serve token add NAME")
    print(f"runner serve: http://{shown}:{args.port}/ (API docs at /docs), runs in {out}, {auth}"
          + (f"; resumed {len(service.recovered)} interrupted job(s)" if service.recovered else ""), flush=True)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn hands the Ctrl-C or SIGTERM it stopped on back once it has stopped
        pass
    finally:
        service.stop()
    print("runner serve: stopped; queued jobs wait for the next start", flush=True)
    return EXIT_OK


def _token(args) -> int:
    from ..server.store import Store

    out = Path(args.out)
    store = Store(out.resolve() / ".server")
    try:
        if args.token_action == "add":
            name = args.name or ""
            if not (0 < len(name) <= 64) or not all(c.isalnum() or c in "-_.@" for c in name):
                raise CommandError([Problem(Location("NAME"), (), f"{name!r} is not a user name",
                                            "letters, digits and - _ . @, at most 64 characters")])
            try:
                token = store.add_token(name, args.admin)
            except ValueError as exc:
                raise CommandError([Problem(Location("NAME"), (), str(exc), f"revoke it first (runner serve token "
                                            f"revoke {name} --out {out}), or choose another name")]) from None
            print(f"token for {name}{' (admin)' if args.admin else ''}, shown once; the server keeps only its hash:",
                  file=sys.stderr)
            print(token)
        elif args.token_action == "list":
            for token in store.tokens():
                state = f"revoked {time.strftime('%Y-%m-%d %H:%M', time.localtime(token.revoked))}" if token.revoked \
                    else "active"
                print(f"{token.name}\t{'admin' if token.admin else 'user'}\t"
                      f"created {time.strftime('%Y-%m-%d %H:%M', time.localtime(token.created))}\t{state}")
        else:
            if not store.revoke(args.name or ""):
                raise CommandError([Problem(Location("NAME"), (), f"no active token named {args.name!r}",
                                            f"see them: runner serve token list --out {out}")])
            print(f"revoked the token of {args.name}")
    finally:
        store.close()
    return EXIT_OK


# ------------------------------------------------------------------ clients
def _client(args):
    from ..server.client import Client

    return Client(args.server, args.token)


def cmd_submit(args) -> int:
    client = _client(args)
    job_id = client.submit(args.workflow, args.overrides, only=args.only or None, force=args.force or None,
                           sweep=args.sweep or None, zip=args.zip, seeds=args.seeds, priority=args.priority,
                           batch=args.batch)
    job = client.job(job_id)
    where = f"position {job['position']} in the queue" if job.get("position") else job["state"]
    print(f"submitted {job_id} ({where})", file=sys.stderr if args.wait else sys.stdout, flush=True)
    if not args.wait:
        return EXIT_OK
    return _follow(client, job_id, args)


def _follow(client, job_id: str, args) -> int:
    """Print the job's progress as `runner run --plain` prints a run's, then download its files like a run folder."""
    from ..engine.progress import PlainEvents

    quiet = getattr(args, "quiet", False)
    shown: dict[str, PlainEvents] = {}

    def show(event: dict) -> None:
        kind = event["event"]
        label = f"[{event['variant']}] " if event.get("variant") else ""
        if kind == "run_started":
            events = shown[label] = PlainEvents({n["node"]: n["type"] for n in event["nodes"]}, quiet=quiet, label=label)
            events.start([n["node"] for n in event["nodes"]])
            return
        events = shown.get(label)
        if events is None:
            return
        node = event.get("node")
        if kind == "node_started":
            events.node_started(node)
        elif kind == "node_cached":
            events.node_cached(node)
        elif kind == "node_phase":
            events.node_phase(node, event.get("text", ""))
        elif kind == "node_step":
            events.node_step(node, event["step"], event.get("total"))
        elif kind == "node_done":
            events.node_done(node, event.get("seconds", 0.0))
        elif kind == "node_failed":
            print(f"{label}FAILED   {node} ({event.get('type', '')}): {event.get('error', '')}", file=sys.stderr)
        elif kind == "node_warning":
            events.node_warning(node, event.get("message", ""))
        elif kind == "job" and event.get("attempt", 1) > 1 and not quiet:
            print(f"job {job_id}: attempt {event['attempt']} (resumed from the cache)", flush=True)

    try:
        run = client.wait(job_id, args.out, events=show)
    except KeyboardInterrupt:
        print(f"stopped following; the job goes on (runner jobs cancel {job_id} stops it)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if run.error:
        print(f"error: {run.error}", file=sys.stderr)
        if run.hint:
            print(f"    fix: {run.hint}", file=sys.stderr)
    print(f"run folder: {run.folder}")
    return {"ok": EXIT_OK, "failed": EXIT_NODE_FAILED}.get(run.status, EXIT_INTERRUPTED)


def cmd_jobs(args) -> int:
    client = _client(args)
    if args.action == "list":
        jobs = client.jobs()
        if not jobs:
            print("no jobs")
        for job in jobs:
            progress = job.get("progress") or {}
            detail = (f"position {job['position']}" if job.get("position") else
                      f"{progress.get('done', 0)}/{progress.get('nodes', 0)} nodes" if job["state"] == "running" else
                      (job.get("error") or "")[:80])
            print(f"{job['id']}\t{job['state']}\t{job['owner']}\t{job['name']}\t{detail}")
        return EXIT_OK
    if not args.job:
        raise CommandError([Problem(Location("JOB"), (), f"`runner jobs {args.action}` needs a job id",
                                    "see them: runner jobs list")])
    if args.action == "cancel":
        print(f"{args.job}: {client.cancel(args.job)}")
        return EXIT_OK
    if args.action == "wait":
        return _follow(client, args.job, args)
    import json

    print(json.dumps(client.job(args.job), indent=2))
    return EXIT_OK
