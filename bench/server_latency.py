"""Benchmark: `runner serve` on tiny models. (1) Submit to image of the demo on a warm server (the models loaded by an
earlier job; every node computed again: each job sets another prompt) against `runner run` of the same workflow in a
fresh process (imports, model load and all), median of --repeats. (2) The server's added latency per job: a small
workflow (load an image, save it) submitted and waited for through the HTTP API, against the same workflow run by
`Session.run` in the server's own process, so the difference is the queue, the HTTP round trips, the event stream
and the download. Run: `.venv/bin/python bench/server_latency.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import REPO, timed

SMALL = """\
version: 1
name: small
nodes:
  photo: {type: load_image, path: inputs/room.png, size: [32, 32]}
  out: {type: save_image, image: $photo, name: small.png}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from runner.server.client import Client

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        env = {**os.environ, "RUNNER_CACHE_DIR": str(work / "cache"),
               "RUNNER_MODELS_DIR": os.environ.get("RUNNER_MODELS_DIR", str(REPO / "outputs" / ".bench-models")),
               "TRANSFORMERS_VERBOSITY": "error"}
        os.environ.update(env)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--out", str(work / "served"), "--port",
                                   str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = Client(f"http://127.0.0.1:{port}")
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.health()
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the server did not start:\n{server.stderr.read().decode()[-2000:]}")
                    time.sleep(0.05)
            demo = REPO / "workflows" / "demo.yaml"
            client.wait(client.submit(demo, {"params.prompt": "warm-up"}), work / "dl")  # loads the models
            warm = []
            for number in range(args.repeats):
                started = time.perf_counter()
                run = client.wait(client.submit(demo, {"params.prompt": f"prompt {number}"}), work / "dl")
                warm.append(time.perf_counter() - started)
                assert run.status == "ok" and run.manifest["counts"]["cached"] == 2, run.manifest["counts"]
            fresh = [timed([sys.executable, "-m", "runner", "run", str(demo), "--quiet", "--out", str(work / "local"),
                            "--set", f"params.prompt=fresh {number}"], env) for number in range(args.repeats)]
            small = work / "small" / "small.yaml"
            (small.parent / "inputs").mkdir(parents=True)
            (small.parent / "inputs" / "room.png").write_bytes((REPO / "workflows" / "inputs" / "room.png").read_bytes())
            small.write_text(SMALL)
            served = []
            for number in range(args.repeats * 4):
                started = time.perf_counter()
                client.wait(client.submit(small, {"nodes.photo.size": [32, 16 + number]}), work / "dl")
                served.append(time.perf_counter() - started)
        finally:
            server.terminate()
            server.wait(60)
        import runner

        with runner.Session(out=work / "inproc") as session:
            session.run(small, {"nodes.photo.size": [32, 15]})
            direct = []
            for number in range(args.repeats * 4):
                started = time.perf_counter()
                session.run(small, {"nodes.photo.size": [32, 16 + number]}).raise_for_status()
                direct.append(time.perf_counter() - started)
    print("| tiny models, median of runs | seconds |\n|---|---|")
    print(f"| demo: submit to image, warm server | {statistics.median(warm):.2f} |")
    print(f"| demo: `runner run` in a fresh process | {statistics.median(fresh):.2f} |")
    print(f"| ratio warm server / fresh process | {statistics.median(warm) / statistics.median(fresh):.2f}x |")
    print(f"| small job: submit, events, download through the API | {statistics.median(served):.3f} |")
    print(f"| small job: Session.run in one process | {statistics.median(direct):.3f} |")
    print(f"| the server's added latency per job | {statistics.median(served) - statistics.median(direct):.3f} |")


if __name__ == "__main__":
    main()
