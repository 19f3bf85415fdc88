"""`runner serve`, `runner submit`/`jobs` and runner.Client against real servers on loopback: the API, validation
before queueing, tokens and isolation, limits, cancel, priorities, the durable queue across a kill -9, ComfyUI's
/prompt, and answers that never show the server's folders."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO, WORKFLOWS, run_cli

from runner.server.client import Client, ServerRefused

TWO_STAGES = """\
version: 1
name: two_stages
models: {sd15: tiny:sd15}
nodes:
  first: {type: txt2img, model: $models.sd15, prompt: a red barn, steps: 2, width: 64, height: 64}
  second: {type: img2img, model: $models.sd15, image: $first, prompt: a blue barn, steps: STEPS, strength: 1.0}
  out: {type: save_image, image: $second, name: out.png}
"""
SMALL = """\
version: 1
name: small
nodes:
  photo: {type: load_image, path: inputs/room.png, size: [32, 32]}
  out: {type: save_image, image: $photo, name: small.png}
"""


@contextmanager
def serving(out: Path, *, tokens_required: bool = False, **options):
    """A server on a free loopback port in this process (its Session, queue and workers), and a Client for it."""
    import uvicorn

    from runner.server.app import create_app
    from runner.server.service import ServerOptions, Service

    service = Service(ServerOptions(out=out, **options))
    app = create_app(service, tokens_required=tokens_required)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=1))
    service.start()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Client(f"http://127.0.0.1:{port}"), service
    finally:
        server.should_exit = True
        thread.join(20)
        service.stop()


def small_files() -> dict[str, bytes]:
    return {"inputs/room.png": (WORKFLOWS / "inputs" / "room.png").read_bytes()}


def pixels(image: Path | bytes) -> bytes:
    """An image's pixel bytes (its PNG text chunks name the run, so whole files differ between runs)."""
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(image) if isinstance(image, bytes) else image) as opened:
        return opened.mode.encode() + repr(opened.size).encode() + opened.tobytes()


def raw(client: Client, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, JSON answer) of a request sent as is."""
    request = urllib.request.Request(client.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_a_job_runs_on_the_warm_session_and_comes_back_as_a_run(tmp_path, demo):
    out = tmp_path / "served"
    with serving(out) as (client, service):
        assert client.health()["status"] == "ok"
        events: list[dict] = []
        first = client.submit(demo, {"params.prompt": "a red barn"})
        run = client.wait(first, tmp_path / "downloads", events=events.append)
        assert run.status == "ok" and run.exit_code == 0, run.error
        assert (run.folder / "final.png").is_file() and (run.folder / "manifest.json").is_file()
        assert run.image("final").size == (64, 64)
        kinds = [event["event"] for event in events]
        assert kinds[0] == "job" and kinds[-1] == "end" and "node_step" in kinds and kinds.count("node_done") == 7
        step = next(event for event in events if event["event"] == "node_step")
        assert step["node"] == "generated" and step["total"] == 2
        # the run folder on the server is the one its manifest names; the Session kept the model for the next job
        job = client.job(first)
        assert (out / job["folder"] / "final.png").read_bytes() == (run.folder / "final.png").read_bytes()
        assert job["manifest"]["status"] == "ok" and job["manifest"]["job"]["id"] == first
        assert any("sd15" in model["model"] for model in client.models()["loaded"])
        second = client.wait(client.submit(demo, {"params.prompt": "a red barn"}), tmp_path / "downloads")
        counts = second.manifest["counts"]
        assert counts["cached"] == 7 and counts["ran"] == 0
        text = json.dumps(client.job(first)) + client.file(first, "manifest.json").decode()
        events_text = json.dumps(events)
        for folder in (tmp_path, os.environ["RUNNER_MODELS_DIR"], os.environ["RUNNER_CACHE_DIR"]):
            assert str(folder) not in text and str(folder) not in events_text  # nor where the server keeps things


def test_an_invalid_workflow_is_refused_with_located_problems_and_never_queued(tmp_path):
    with serving(tmp_path / "served") as (client, service):
        text = "version: 1\nnodes:\n  a: {type: load_image, path: ../../../etc/passwd}\n  b: {type: txt2img, steps: x}\n"
        status, answer = raw(client, "POST", "/v1/jobs", json.dumps({"workflow": text, "filename": "mine.yaml"}).encode(),
                             {"Content-Type": "application/json"})
        assert status == 422 and answer["error"] == "the workflow is invalid"
        wheres = [problem["where"] for problem in answer["problems"]]
        assert "mine.yaml:3:25" in wheres and all(where.startswith("mine.yaml") for where in wheres)
        outside = next(problem for problem in answer["problems"] if problem["path"] == "nodes.a.path")
        assert "outside the workflow's folder" in outside["message"] and outside["fix"]
        assert str(tmp_path) not in json.dumps(answer) and ".server" not in json.dumps(answer)
        assert client.jobs() == []
        assert list((service.state / "jobs").iterdir()) == []  # its inbox is gone too
        with pytest.raises(Exception) as refused:  # the Client raises the same located problems runner validate prints
            client.submit(text)
        assert "workflow.yaml:3:25" in str(refused.value)
        # requests that are no job: clear JSON refusals
        assert raw(client, "POST", "/v1/jobs", b"{not json", {"Content-Type": "application/json"})[0] == 422
        assert raw(client, "POST", "/v1/jobs", b'{"workflow": 5}', {"Content-Type": "application/json"})[0] == 422
        status, answer = raw(client, "GET", "/v1/jobs/nope")
        assert status == 404 and answer["fix"]
        hostile = {
            "nested": '{"workflow": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}",
            "many overrides": json.dumps({"workflow": text, "set": [f"params.p{n}=1" for n in range(20_000)]}),
            "NUL": json.dumps({"workflow": "\x00"}),
            "not an object": "[]",
        }
        for name, body in hostile.items():
            started = time.monotonic()
            status, answer = raw(client, "POST", "/v1/jobs", body.encode(), {"Content-Type": "application/json"})
            assert status == 422 and answer["error"] and time.monotonic() - started < 2, name
        assert client.jobs() == []


def test_uploads_are_the_workflows_own_folder_and_nothing_else(tmp_path):
    with serving(tmp_path / "served") as (client, _service):
        run = client.wait(client.submit(SMALL, files=small_files()), tmp_path / "dl")
        assert run.status == "ok" and run.image("out").size == (32, 32)
        for name in ("../escape.png", "/abs.png", "a/../../b.png", "workflow.yaml"):
            with pytest.raises(ServerRefused, match="plain relative path"):
                client.submit(SMALL, files={name: b"x"})


def test_runner_submit_waits_prints_progress_and_downloads_like_runner_run(tmp_path, capsys):
    workflow = tmp_path / "wf" / "stages.yaml"
    workflow.parent.mkdir()
    workflow.write_text(TWO_STAGES.replace("STEPS", "2"))
    with serving(tmp_path / "served") as (client, _service):
        code = run_cli("submit", workflow, "--server", client.url, "--wait", "--out", tmp_path / "dl",
                       "--set", "nodes.first.prompt=a green barn")
        printed = capsys.readouterr()
        assert code == 0, printed.err
        assert "3 nodes: first, second, out" in printed.out
        assert "done     second (img2img)" in printed.out and "second: step 2/2" in printed.out
        folder = Path(printed.out.strip().splitlines()[-1].removeprefix("run folder: "))
        assert (folder / "out.png").is_file() and folder.parent == tmp_path / "dl" / "two_stages"
        assert json.loads((folder / "manifest.json").read_text())["nodes"]["first"]["call"]["prompt"] == "a green barn"
        # the same bytes as runner run of the same workflow computes (every node again, not from the cache)
        assert run_cli("run", workflow, "--no-cache", "--quiet", "--out", tmp_path / "local",
                       "--set", "nodes.first.prompt=a green barn") == 0
        local = next((tmp_path / "local" / "two_stages").iterdir())
        assert pixels(local / "out.png") == pixels(folder / "out.png")
        capsys.readouterr()
        assert run_cli("jobs", "--server", client.url) == 0
        assert "\tok\tlocal\ttwo_stages" in capsys.readouterr().out
        # an invalid one: exit 2 with the located problem, as runner run says it
        workflow.write_text(TWO_STAGES.replace("STEPS", "-3"))
        assert run_cli("submit", workflow, "--server", client.url) == 2
        err = capsys.readouterr().err
        assert "stages.yaml:6:" in err and "workflow.yaml" not in err
    # nobody listening: exit 2 saying so
    assert run_cli("submit", workflow, "--server", client.url) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_tokens_users_see_only_their_own_jobs(tmp_path, capsys):
    out = tmp_path / "served"
    tokens = {}
    for name, extra in (("alice", []), ("bob", []), ("root", ["--admin"])):
        assert run_cli("serve", "token", "add", name, "--out", out, *extra) == 0
        tokens[name] = capsys.readouterr().out.strip().splitlines()[-1]
    assert run_cli("serve", "token", "add", "alice", "--out", out) == 2  # one live token a name
    assert "already has a token" in capsys.readouterr().err
    database = (out / ".server" / "server.sqlite3").read_bytes()
    assert all(token.encode() not in database for token in tokens.values())  # only hashes are kept
    with serving(out) as (anonymous, _service):
        status, answer = raw(anonymous, "GET", "/v1/jobs")
        assert status == 401 and "token" in answer["error"]
        assert raw(anonymous, "GET", "/v1/jobs", headers={"Authorization": "Bearer rnr_wrong"})[0] == 401
        assert anonymous.health()["status"] == "ok"  # no token needed to see it is up
        alice, bob, root = (Client(anonymous.url, tokens[name]) for name in ("alice", "bob", "root"))
        with pytest.raises(ServerRefused, match="only an admin"):
            alice.pause()
        root.pause()  # keep the jobs queued
        job = alice.submit(SMALL, files=small_files())
        assert [item["id"] for item in alice.jobs()] == [job] and bob.jobs() == []
        assert [item["owner"] for item in root.jobs()] == ["alice"]
        with pytest.raises(ServerRefused, match="no job") as refused:
            bob.cancel(job)
        assert refused.value.status == 404
        assert root.cancel(job) == "cancelled"
        assert run_cli("serve", "token", "revoke", "alice", "--out", out) == 0
        with pytest.raises(ServerRefused) as refused:
            alice.jobs()
        assert refused.value.status == 401
    assert run_cli("serve", "token", "list", "--out", out) == 0
    listed = capsys.readouterr().out
    assert "alice\tuser" in listed and "revoked" in listed and "root\tadmin" in listed


def test_a_sweep_job_runs_every_variant_into_one_sweep_folder(tmp_path):
    with serving(tmp_path / "served") as (client, service):
        job = client.submit(SMALL, files=small_files(), sweep={"nodes.photo.size": [[16, 16], [24, 20]]})
        run = client.wait(job, tmp_path / "dl")
        assert run.status == "ok"
        described = client.job(job)
        assert described["sweep"] is True and len(described["index"]["variants"]) == 2
        assert {"000/small.png", "001/small.png", "index.json"} <= set(described["files"])
        from PIL import Image

        assert Image.open(run.folder / "001" / "small.png").size == (24, 20)
        # batch: a sweep's seeds computed in one call, as runner run --batch (refused without a sweep, as there)
        generate = ("version: 1\nname: batched\nnodes:\n  gen: {type: txt2img, model: tiny:sd15, prompt: a barn, "
                    "steps: 2, width: 64, height: 64}\n  save: {type: save_image, image: $gen}\n")
        status, answer = raw(client, "POST", "/v1/jobs", json.dumps({"workflow": generate, "batch": 2}).encode(),
                             {"Content-Type": "application/json"})
        assert status == 422 and "it groups the variants of a sweep" in json.dumps(answer), answer
        batched = client.wait(client.submit(generate, seeds=[1, 2], batch=2), tmp_path / "batched")
        assert batched.status == "ok"
        records = [json.loads((batched.folder / f"00{n}" / "manifest.json").read_text())["nodes"]["gen"] for n in (0, 1)]
        assert [record["batch"]["index"] for record in records] == [0, 1] and records[0]["batch"]["size"] == 2
        with pytest.raises(Exception, match="another runner serve"):  # one server per --out folder
            from runner.server.service import ServerOptions, Service

            Service(ServerOptions(out=tmp_path / "served")).start()


def test_a_server_without_tokens_listens_only_on_loopback(tmp_path, capsys):
    assert run_cli("serve", "--host", "0.0.0.0", "--out", tmp_path / "served") == 2
    err = capsys.readouterr().err
    assert "without tokens" in err and "runner serve token add" in err


def test_limits_and_the_queue_order(tmp_path):
    with serving(tmp_path / "served", max_queued=3, max_request_bytes=200_000) as (client, service):
        client.pause()
        status, answer = raw(client, "POST", "/v1/jobs", b"x" * 300_000, {"Content-Type": "application/json"})
        assert status == 413 and "larger than" in answer["error"]
        low = client.submit(SMALL, files=small_files())
        high = client.submit(SMALL, files=small_files(), priority=5)
        later = client.submit(SMALL, files=small_files())
        assert [client.job(job)["position"] for job in (low, high, later)] == [2, 1, 3]
        with pytest.raises(ServerRefused, match="limit") as refused:
            client.submit(SMALL, files=small_files())
        assert refused.value.status == 429
        assert client.cancel(later) == "cancelled"
        client.resume()
        runs = [client.wait(job, tmp_path / "dl") for job in (low, high)]
        assert all(run.status == "ok" for run in runs)
        started = {job: client.job(job)["started"] for job in (low, high)}
        assert started[high] < started[low]  # priority first, then first come
        assert client.job(later)["state"] == "cancelled"


def test_cancel_a_running_job_stops_it_at_the_next_step(tmp_path):
    with serving(tmp_path / "served") as (client, _service):
        job = client.submit(TWO_STAGES.replace("STEPS", "200"))
        for event in client.events(job):
            if event["event"] == "node_step" and event["node"] == "second":
                assert client.cancel(job) == "stopping"
                break
        run = client.wait(job, tmp_path / "dl")
        assert run.status == "interrupted" and run.exit_code == 130
        described = client.job(job)
        assert described["state"] == "cancelled" and "cancelled" in described["error"]
        assert described["manifest"]["nodes"]["first"]["status"] == "ran"  # finished nodes stay cached
        assert described["manifest"]["nodes"]["second"]["status"] != "ran"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(out: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--out", str(out), "--port", str(port)],
                               cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    client = Client(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.health()
            return process
        except Exception:  # noqa: BLE001 - not listening yet
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)


def test_a_killed_server_resumes_its_running_job_from_the_cache(tmp_path):
    out, port = tmp_path / "served", free_port()
    client = Client(f"http://127.0.0.1:{port}")
    process = start_server(out, port)
    try:
        job = client.submit(TWO_STAGES.replace("STEPS", "6"))
        queued = [client.submit(SMALL, {"nodes.photo.size": [32, 24 + n]}, files=small_files()) for n in range(5)]
        for event in client.events(job):
            if event["event"] == "node_step" and event["node"] == "second":
                break
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert client.url  # the server is gone; its database says the job was running
        process = start_server(out, port)
        run = client.wait(job, tmp_path / "dl")
        assert run.status == "ok", run.error
        described = client.job(job)
        assert described["attempts"] == 2
        nodes = described["manifest"]["nodes"]
        assert nodes["first"]["status"] == "cached" and nodes["second"]["status"] == "ran"
        assert len(list((out / "two_stages").iterdir())) == 1  # exactly one run folder
        for number, small in enumerate(queued):  # the queue survived too, in its order
            assert client.wait(small, tmp_path / "dl").image("out").size == (32, 24 + number)
        assert len(list((out / "small").iterdir())) == 5
        assert [client.job(small)["attempts"] for small in queued] == [1] * 5
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    assert "stopped" in process.stdout.read()
    # the resumed job's image is the one an uninterrupted run makes
    workflow = tmp_path / "stages.yaml"
    workflow.write_text(TWO_STAGES.replace("STEPS", "6"))
    assert run_cli("run", workflow, "--no-cache", "--quiet", "--out", tmp_path / "local") == 0
    local = next((tmp_path / "local" / "two_stages").iterdir())
    assert pixels(local / "out.png") == pixels(run.folder / "out.png")


def test_twenty_jobs_from_four_clients_at_once_all_run_once(tmp_path):
    with serving(tmp_path / "served") as (client, _service):
        clients = [Client(client.url) for _ in range(4)]
        ids: list[list[str]] = [[] for _ in clients]

        def submit_five(number: int) -> None:
            for size in range(5):
                ids[number].append(clients[number].submit(SMALL, {"nodes.photo.size": [16 + size, 16 + number]},
                                                          files=small_files()))

        threads = [threading.Thread(target=submit_five, args=(number,)) for number in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        every = [job for jobs in ids for job in jobs]
        assert len(every) == 20 and len(set(every)) == 20
        for number, jobs in enumerate(ids):
            for size, job in enumerate(jobs):
                run = clients[number].wait(job, tmp_path / "dl")
                assert run.status == "ok" and run.image("out").size == (16 + size, 16 + number)
        described = [client.job(job) for job in every]
        assert all(job["attempts"] == 1 for job in described)
        folders = [job["folder"] for job in described]
        assert len(set(folders)) == 20 and len(list((tmp_path / "served" / "small").iterdir())) == 20


COMFY_GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 48,
                                                  "height": 40, "crop": "disabled"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "scaled"}},
}


def test_comfyui_clients_upload_queue_and_fetch_as_from_comfyui(tmp_path):
    with serving(tmp_path / "served") as (client, _service):
        png = (WORKFLOWS / "inputs" / "room.png").read_bytes()
        boundary = "b0undary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
        status, answer = raw(client, "POST", "/upload/image", body,
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status == 200 and answer == {"name": "photo.png", "subfolder": "", "type": "input"}
        status, answer = raw(client, "POST", "/prompt", json.dumps({"prompt": COMFY_GRAPH, "client_id": "x"}).encode(),
                             {"Content-Type": "application/json"})
        assert status == 200 and answer["node_errors"] == {} and answer["number"] >= 1
        prompt_id = answer["prompt_id"]
        client.wait(prompt_id, tmp_path / "dl")
        status, history = raw(client, "GET", f"/history/{prompt_id}")
        entry = history[prompt_id]
        assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
        image = entry["outputs"]["3"]["images"][0]
        assert image["type"] == "output"
        with urllib.request.urlopen(f"{client.url}/view?filename={image['filename']}&subfolder={image['subfolder']}"
                                    "&type=output", timeout=30) as answer:
            from io import BytesIO

            from PIL import Image

            served = answer.read()
            assert Image.open(BytesIO(served)).size == (48, 40)
        # the same image as importing the graph and running it
        folder = tmp_path / "imported"
        folder.mkdir()
        (folder / "photo.png").write_bytes(png)
        (folder / "graph.json").write_text(json.dumps(COMFY_GRAPH))
        assert run_cli("import", "comfyui", folder / "graph.json", "-o", folder / "graph.yaml") == 0
        assert run_cli("run", folder / "graph.yaml", "--quiet", "--out", tmp_path / "local") == 0
        local = next((tmp_path / "local" / "graph").iterdir())
        assert pixels(local / image["filename"]) == pixels(served)
        bad = {"1": {"class_type": "SomeCustomNode", "inputs": {}}}
        status, answer = raw(client, "POST", "/prompt", json.dumps({"prompt": bad}).encode(),
                             {"Content-Type": "application/json"})
        assert status == 400 and answer["error"]["type"] == "prompt_outputs_failed_validation"
        assert "SomeCustomNode" in answer["error"]["details"]


def test_the_api_is_documented(tmp_path):
    with serving(tmp_path / "served") as (client, _service):
        with urllib.request.urlopen(client.url + "/openapi.json", timeout=30) as answer:
            paths = json.loads(answer.read())["paths"]
        for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/files/{name}",
                     "/v1/queue/pause", "/v1/queue/resume", "/v1/health", "/v1/models", "/prompt"):
            assert path in paths, path
