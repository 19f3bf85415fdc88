"""The Ray executor on one local CPU cluster shared by these tests (logical resources; every wait has a timeout)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from conftest import latest_run, manifest, run_cli, write_workflow

ray = pytest.importorskip("ray")

SWEEP = """version: 1
name: raysweep
models:
  sd: tiny:sd15
nodes:
  photo: {type: load_image, path: in.png, size: [64, 64]}
  edges: {type: canny, image: $photo}
  gen: {type: txt2img, model: $models.sd, prompt: a red barn, steps: 2, width: 64, height: 64}
  redo: {type: img2img, model: $models.sd, image: $photo, prompt: a blue barn, steps: 2, strength: 0.5}
  out: {type: save_image, image: $gen, name: gen.png}
  out2: {type: save_image, image: $redo, name: redo.png}
"""


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))
            if "report" not in p.name}


def _keys(folder: Path) -> dict[str, dict[str, str]]:
    return {m.parent.name: {n: node["key"] for n, node in json.loads(m.read_text())["nodes"].items()}
            for m in sorted(folder.rglob("manifest.json"))}


def _local_reference(workflow: Path, tmp_path: Path, monkeypatch, seeds: str = "1-3") -> Path:
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "local-cache"))
    assert run_cli("run", workflow, "--seeds", seeds, "--out", tmp_path / "local", "--plain") == 0
    return next((tmp_path / "local" / "raysweep").iterdir())


def _check_affinity(variants: list[Path], shared: bool) -> None:
    loads: dict[tuple[str, str], int] = {}
    workers = set()
    for variant in variants:
        record = manifest(variant)["executor"]
        assert record["name"] == "ray" and record["ray_version"] == ray.__version__ and record["shared_cache"] is shared
        assert set(record["nodes"]) <= set(manifest(variant)["nodes"]) and record["retries"] == []
        workers |= set(record["nodes"].values())
        for node, identities in record["loads"].items():
            for identity in identities:
                key = (record["nodes"][node], identity)
                loads[key] = loads.get(key, 0) + 1
    assert len(workers) == 2  # independent branches ran side by side
    assert loads and max(loads.values()) == 1  # model affinity: each worker loaded the checkpoint at most once


def test_a_sweep_on_two_workers_equals_the_local_run(cluster, tmp_path, isolated_cache, monkeypatch, capsys):
    workflow = write_workflow(tmp_path, "raysweep.yaml", SWEEP)
    local_sweep = _local_reference(workflow, tmp_path, monkeypatch, seeds="1-6")
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(isolated_cache))
    capsys.readouterr()
    assert run_cli("run", workflow, "--seeds", "1-6", "--out", tmp_path / "ray", "--plain",
                   "--executor", "ray", "--workers", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    ray_sweep = next((tmp_path / "ray" / "raysweep").iterdir())
    assert _pngs(ray_sweep) == _pngs(local_sweep) and len(_pngs(ray_sweep)) == 12
    assert _keys(ray_sweep) == _keys(local_sweep)
    variants = sorted(p for p in ray_sweep.iterdir() if p.is_dir())
    _check_affinity(variants, shared=True)
    index = json.loads((ray_sweep / "index.json").read_text())
    assert [v["variant"] for v in index["variants"]] == list(range(6)) and {v["status"] for v in index["variants"]} == {"ok"}
    # variants ran side by side: variant 1 started before variant 0 printed its last line (each line names its variant)
    first_of = {n: next(i for i, line in enumerate(lines) if line.startswith(f"[{n:03d}] ")) for n in range(6)}
    last_of_0 = max(i for i, line in enumerate(lines) if line.startswith("[000] "))
    assert first_of[1] < last_of_0, "\n".join(lines)
    # photo and edges do not depend on the seed: computed once for the whole sweep, read by the other five
    ran_photo = [v for v in variants if manifest(v)["nodes"]["photo"]["status"] == "ran"]
    assert len(ran_photo) == 1, [manifest(v)["nodes"]["photo"]["status"] for v in variants]


def _running_worker_pids() -> list[int]:
    """Ray worker processes that run a task now (Ray titles them 'ray::Worker.run_task')."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = (proc / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::Worker.run_task"):
                pids.append(int(proc.name))
    return pids


def test_a_worker_killed_mid_sweep_and_the_sweep_completes(cluster, tmp_path, isolated_cache, monkeypatch):
    import os
    import signal

    text = SWEEP.replace("steps: 2, strength: 0.5", "steps: 30, strength: 1.0")
    workflow = write_workflow(tmp_path, "raysweep.yaml", text)
    killed: list[int] = []

    def kill_one_busy_worker() -> None:  # a real crash: SIGKILL to the process of a worker in the middle of a task
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            busy = _running_worker_pids()
            if busy:
                time.sleep(0.5)
                if busy[0] in _running_worker_pids():
                    os.kill(busy[0], signal.SIGKILL)
                    killed.append(busy[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
    killer.start()
    code = run_cli("run", workflow, "--seeds", "1-4", "--out", tmp_path / "out", "--quiet", "--executor", "ray",
                   "--workers", "2")
    killer.join(10)
    assert killed, "the test never saw a worker running a task"
    assert code == 0
    sweep = next((tmp_path / "out" / "raysweep").iterdir())
    index = json.loads((sweep / "index.json").read_text())
    assert [v["status"] for v in index["variants"]] == ["ok"] * 4
    retries = [r for v in sorted(p for p in sweep.iterdir() if p.is_dir()) for r in manifest(v)["executor"]["retries"]]
    assert len(retries) == 1 and retries[0]["attempt"] == 1, retries
    assert run_cli("cache", "verify") == 0


def test_ctrl_c_on_the_driver_stops_a_sweep_keeps_finished_entries_and_exits_130(tmp_path, isolated_cache):
    import signal
    import subprocess
    import sys

    from conftest import REPO

    workflow = write_workflow(tmp_path, "raysweep.yaml", SWEEP.replace("steps: 2, strength: 0.5", "steps: 30, strength: 1.0"))
    # its own process, and its own local cluster (started and stopped by the command)
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(workflow), "--seeds", "1-6", "--out",
                                str(tmp_path / "out"), "--plain", "--executor", "ray", "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "] done " in line:  # a node of some variant finished
            break
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    stdout, stderr = process.communicate(timeout=120)
    assert time.monotonic() - started < 60
    assert process.returncode == 130, ("".join(seen) + stdout, stderr)
    assert "Traceback" not in stderr, stderr
    sweep = next((tmp_path / "out" / "raysweep").iterdir())
    index = json.loads((sweep / "index.json").read_text())
    statuses = {v["variant"]: v["status"] for v in index["variants"]}
    assert "interrupted" in statuses.values() and len(statuses) < 6, statuses
    entries = {p.parent.name for p in (isolated_cache / "nodes").glob("*/*/entry.json")}
    recorded = {node["key"]: node["status"] for v in sweep.iterdir() if (v / "manifest.json").is_file()
                for node in manifest(v)["nodes"].values()}
    assert {key for key, status in recorded.items() if status == "ran"} <= entries  # finished nodes stay cached
    assert run_cli("cache", "verify") == 0


def test_entries_travel_through_the_object_store_without_shared_storage(cluster, tmp_path, isolated_cache, monkeypatch):
    import runner

    workflow = write_workflow(tmp_path, "raysweep.yaml", SWEEP)
    local_sweep = _local_reference(workflow, tmp_path, monkeypatch)
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(isolated_cache))
    runs = []
    with runner.Session(out=tmp_path / "ray", executor="ray", executor_options={"workers": 2, "shared": False}) as session:
        for seed in (1, 2, 3):
            runs.append(session.run(workflow, set={"seed": seed}))
        stopped, freed = _stop_a_long_node(session, tmp_path)
    assert stopped.status == "interrupted" and stopped.manifest["nodes"]["gen"]["status"] == "interrupted", stopped.error
    assert freed < 10  # its 999 steps at 256 px take minutes: the worker stopped at its next step
    assert all(run.status == "ok" for run in runs)
    local = sorted(p for p in local_sweep.iterdir() if p.is_dir())
    for run, reference in zip(runs, local):
        assert {n: node["key"] for n, node in run.manifest["nodes"].items()} == _keys(local_sweep)[reference.name]
        assert (run.folder / "gen.png").read_bytes() == (reference / "gen.png").read_bytes()
        assert (run.folder / "redo.png").read_bytes() == (reference / "redo.png").read_bytes()
    # the driver's own cache holds every entry, written from what the workers sent back
    assert len(list((isolated_cache / "nodes").glob("*/*/entry.json"))) == len({
        node["key"] for run in runs for node in run.manifest["nodes"].values()})
    _check_affinity([run.folder for run in runs], shared=False)


def _stop_a_long_node(session, tmp_path: Path):
    """A run asked to stop while its one long node runs on a warm worker (what `watch` does on a save, a sweep on
    Ctrl-C): the run is recorded as interrupted at once, and the worker's task stops at its next denoising step (Ray
    only flags a running actor task as cancelled). Returns the run and how long the worker stayed busy after it."""
    workflow = write_workflow(tmp_path, "long.yaml", "version: 1\nname: long\nnodes:\n  gen: {type: txt2img, model: "
                                                     "tiny:sd15, prompt: a barn, steps: 999, width: 256, height: 256}\n")
    executor, seen = session.executor, []

    def should_stop() -> bool:
        if "gen" in executor.in_flight and not seen:
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] > 1.0  # the worker is in its step loop by then

    run = session.run(workflow, should_stop=should_stop, mode="quiet")
    returned = time.monotonic()
    ray.get([actor.ready.remote() for actor in executor.actors], timeout=120)  # each answers once its task ended
    return run, time.monotonic() - returned


def test_a_worker_killed_mid_task_is_replaced_and_the_task_retried(cluster, tmp_path):
    import runner

    text = SWEEP.replace("steps: 2, strength: 0.5", "steps: 40, strength: 1.0")
    workflow = write_workflow(tmp_path, "raysweep.yaml", text)
    with runner.Session(out=tmp_path / "out", executor="ray", executor_options={"workers": 2}) as session:
        executor = session.executor
        killed = []

        def kill_when_running() -> None:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not killed:
                index = executor.in_flight.get("redo")
                if index is not None:
                    time.sleep(1.0)
                    if executor.in_flight.get("redo") == index:
                        ray.kill(executor.actors[index], no_restart=True)
                        killed.append(index)
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_running, daemon=True)
        killer.start()
        run = session.run(workflow, mode="quiet")
        killer.join(10)
    assert killed, "the test never saw 'redo' running"
    assert run.status == "ok", run.error
    retries = run.manifest["executor"]["retries"]
    assert [r["node"] for r in retries] == ["redo"] and retries[0]["attempt"] == 1
    assert run.manifest["nodes"]["redo"]["status"] == "ran"


def test_a_worker_whose_replacement_dies_while_starting_fails_the_node_with_its_record(cluster, tmp_path):
    import runner

    workflow = write_workflow(tmp_path, "one.yaml", "version: 1\nname: one\nnodes:\n"
                              "  gen: {type: txt2img, model: tiny:sd15, prompt: a barn, steps: 40, width: 64, height: 64}\n")
    with runner.Session(out=tmp_path / "out", executor="ray", executor_options={"workers": 1}) as session:
        executor = session.executor
        executor.start()
        first, killed = executor.actors[0], []

        def kill_the_worker_then_its_replacement() -> None:
            deadline = time.monotonic() + 60
            while "gen" not in executor.in_flight and time.monotonic() < deadline:
                time.sleep(0.002)
            ray.kill(first, no_restart=True)  # mid-task (the worker is still importing torch for it)
            killed.append(first)
            while executor.actors[0] is first and time.monotonic() < deadline:
                time.sleep(0.001)
            ray.kill(executor.actors[0], no_restart=True)  # the new worker, while it starts
            killed.append(executor.actors[0])

        killer = threading.Thread(target=kill_the_worker_then_its_replacement, daemon=True)
        killer.start()
        run = session.run(workflow, mode="quiet")  # no exception: the run ends with its record
        killer.join(10)
    assert len(killed) == 2 and killed[1] is not first
    assert run.status == "failed" and "the worker started in its place did not start" in run.error, run.error
    assert run.manifest["nodes"]["gen"]["status"] == "failed" and (run.folder / "manifest.json").is_file()
    assert "ray status" in run.hint


CLUSTER_START_INTERRUPTED = """
import json, os, signal, sys, threading, time
from pathlib import Path

private = os.environ["RAY_TMPDIR"]
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background test process may have inherited it ignored


def on_term(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


signal.signal(signal.SIGTERM, on_term)  # what the CLI installs


def ray_processes():
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and private.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


import ray
from runner.executor.cache import NodeCache
from runner.executor.ray import RayExecutor

executor = RayExecutor(NodeCache(Path(private) / "cache"), engine="runner.engine.wiring:worker_engine", workers=1)


def interrupt():
    deadline = time.monotonic() + 60
    while not ray_processes() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the cluster's first processes start


threading.Thread(target=interrupt, daemon=True).start()
try:
    executor.start()
    outcome = "started"
except KeyboardInterrupt:
    outcome = "interrupted"
kept = signal.getsignal(signal.SIGTERM) is on_term
executor.close()  # what the CLI, a Session's close and watch do on the way out
deadline = time.monotonic() + 10
while ray_processes() and time.monotonic() < deadline:
    time.sleep(0.1)
print(json.dumps({"outcome": outcome, "sigterm_handler_kept": kept, "initialized": ray.is_initialized(),
                  "left": ray_processes()}))
"""


def test_ctrl_c_while_a_local_cluster_starts_leaves_no_ray_process(tmp_path):
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile

    from conftest import REPO

    # its own process and cluster, in a private folder (short: Ray's socket paths must fit 107 characters)
    private = tempfile.mkdtemp(prefix="runner-ray-", dir="/tmp")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    try:
        done = subprocess.run([sys.executable, "-c", CLUSTER_START_INTERRUPTED], capture_output=True, text=True,
                              cwd=REPO, env={**env, "RAY_TMPDIR": private}, timeout=120)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        # the Ctrl-C waited for ray.init (its processes are known only then), then stopped the start and the cluster
        assert result == {"outcome": "interrupted", "sigterm_handler_kept": True, "initialized": False, "left": []}
    finally:
        for proc in Path("/proc").iterdir():  # whatever the run left of its own cluster (only processes of this folder)
            try:
                if proc.name.isdigit() and private.encode() in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(private, ignore_errors=True)


def test_a_failing_node_fails_the_run_without_retry(cluster, tmp_path, capsys):
    # more steps than the scheduler's schedule holds: the node raises when it runs (as it would locally)
    workflow = write_workflow(tmp_path, "raysweep.yaml", SWEEP.replace("steps: 2, strength: 0.5", "steps: 1000, strength: 1.0"))
    code = run_cli("run", workflow, "--out", tmp_path / "out", "--plain", "--executor", "ray", "--workers", "1")
    err = capsys.readouterr().err
    assert code == 1 and "redo" in err and "takes at most 999 steps" in err, err
    record = manifest(latest_run(tmp_path / "out", "raysweep"))
    assert record["status"] == "failed" and record["nodes"]["redo"]["status"] == "failed"
    assert record["executor"]["retries"] == []


def test_workers_no_node_can_hold_are_refused_at_once(cluster, tmp_path):
    from runner.executor.cache import NodeCache
    from runner.engine.wiring import WORKER_ENGINE
    from runner.executor.ray import RayExecutor
    from runner.core.errors import CommandError  # a cluster option, not the workflow, is at fault

    started = time.monotonic()
    with pytest.raises(CommandError) as refused:
        RayExecutor(NodeCache(tmp_path / "cache"), engine=WORKER_ENGINE, workers=1, gpus_per_worker=1).start()
    assert time.monotonic() - started < 10
    assert "1 workers of 1 CPU and 1 GPU need 1 CPUs and 1 GPUs, but the cluster has 2 CPUs and 0 GPUs" in str(refused.value)
    with pytest.raises(CommandError) as refused:
        RayExecutor(NodeCache(tmp_path / "cache"), engine=WORKER_ENGINE, workers=3).start()
    assert "they could never start" in str(refused.value) and "--workers" in str(refused.value)


def test_the_ray_options_are_checked(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "raysweep.yaml", SWEEP)
    assert run_cli("run", workflow, "--executor", "ray", "--workers", "0", "--out", tmp_path / "out") == 2
    assert "at least 1 worker" in capsys.readouterr().err


def test_a_cluster_that_cannot_be_reached_fails_at_once(tmp_path, capsys):
    import socket

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    workflow = write_workflow(tmp_path, "raysweep.yaml", SWEEP)
    started = time.monotonic()
    code = run_cli("run", workflow, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err and "ray start --head" in err, err
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))  # no run folder left behind
    code = run_cli("run", workflow, "--seeds", "1-2", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                   "--out", tmp_path / "out")
    assert code == 2 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err
    assert not any((tmp_path / "out").rglob("*")), list((tmp_path / "out").rglob("*"))  # nor a sweep folder


def test_a_server_on_the_ray_executor_runs_jobs_side_by_side(cluster, tmp_path):
    from test_server import serving

    text = "version: 1\nname: side\nnodes:\n  gen: {type: txt2img, model: tiny:sd15, prompt: PROMPT, steps: 2, " \
           "width: 64, height: 64}\n  out: {type: save_image, image: $gen, name: gen.png}\n"
    with serving(tmp_path / "served", executor="ray", executor_options={"workers": 2}) as (client, service):
        assert len(service.workers) == 2  # one job thread per Ray worker
        client.pause()
        jobs = [client.submit(text.replace("PROMPT", prompt)) for prompt in ("a red barn", "a blue barn")]
        client.resume()
        runs = [client.wait(job, tmp_path / "dl") for job in jobs]
        assert [run.status for run in runs] == ["ok", "ok"], [run.error for run in runs]
        assert all(run.manifest["executor"]["name"] == "ray" for run in runs)
        first, second = (client.job(job) for job in jobs)
        assert first["started"] < second["finished"] and second["started"] < first["finished"]  # at the same time


def test_a_batch_is_one_task_and_its_entries_come_back_without_shared_storage(cluster, tmp_path, isolated_cache,
                                                                               monkeypatch):
    """--batch 2 on Ray: variant 0's task computes both variants' gen (and redo) in one call on its worker, whose
    cache is its own; both entries come back, variant 1 finds its own in the driver's cache, and the images are the
    local batched sweep's."""
    import runner

    workflow = write_workflow(tmp_path, "raysweep.yaml", SWEEP)
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "local-cache"))
    with runner.Session(out=tmp_path / "local") as session:
        local = session.sweep(workflow, seeds=[1, 2], batch=2)
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(isolated_cache))
    with runner.Session(out=tmp_path / "ray", executor="ray", executor_options={"workers": 1, "shared": False}) as session:
        remote = session.sweep(workflow, seeds=[1, 2], batch=2)
    assert local.status == remote.status == "ok"
    for number in (0, 1):
        nodes = remote.runs[number].manifest["nodes"]
        assert nodes["gen"]["batch"]["index"] == number and nodes["gen"]["batch"]["size"] == 2
        assert nodes["gen"]["status"] == ("ran" if number == 0 else "cached")
        assert remote.runs[number].manifest["executor"]["name"] == "ray"
        for name in ("gen.png", "redo.png"):
            assert (remote.runs[number].folder / name).read_bytes() == (local.runs[number].folder / name).read_bytes()
    # variant 1 sent nothing to a worker: its batched nodes' entries had come back with variant 0's tasks
    assert {"gen", "redo"} & set(remote.runs[1].manifest["executor"]["nodes"]) == set()
