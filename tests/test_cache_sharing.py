"""The cache under damage, concurrency and kills: integrity checks and quarantine, verify/prune/info, many processes
on one cache, runs killed at spread moments and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, latest_run, manifest, run_cli, statuses, write_workflow

# image nodes only (no model to load): many processes fit on two cores
IMAGES = """version: 1
name: shared
nodes:
  photo: {type: load_image, path: in.png, size: [96, 64]}
  edges: {type: canny, image: $photo}
  mask: {type: make_mask, like: $photo, shapes: [{rect: [10, 10, 50, 40]}], grow: 3}
  big: {type: upscale, image: $edges, scale: 2}
  sheet: {type: grid, images: [$photo, $edges, $mask], cols: 3}
  out_sheet: {type: save_image, image: $sheet, name: sheet.png}
  out_big: {type: save_image, image: $big, name: big.png}
"""
NODES = {"photo", "edges", "mask", "big", "sheet", "out_sheet", "out_big"}  # each has an entry (a save's is empty)


def _entries(cache: Path) -> dict[str, Path]:
    return {json.loads(e.read_text())["node_id"]: e.parent for e in (cache / "nodes").glob("*/*/entry.json")}


def _outputs(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in ("sheet.png", "big.png")}


def _pixels(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        return image.tobytes()


@pytest.fixture
def images_workflow(tmp_path) -> Path:
    return write_workflow(tmp_path, "shared.yaml", IMAGES)


def _run(workflow: Path, out: Path, *extra: str) -> Path:
    assert run_cli("run", workflow, "--out", out, "--plain", *extra) == 0
    return latest_run(out, "shared")


def _damage(kind: str, entry: Path) -> None:
    record = json.loads((entry / "entry.json").read_text())
    image = entry / record["outputs"][record["default_output"]]["files"][0]
    if kind == "flipped byte":
        data = bytearray(image.read_bytes())
        data[len(data) // 2] ^= 0xFF
        image.write_bytes(bytes(data))
    elif kind == "truncated file":
        image.write_bytes(image.read_bytes()[:-7])
    elif kind == "deleted output":
        image.unlink()
    elif kind == "garbage entry.json":
        (entry / "entry.json").write_text('{"outputs": [1, 2')
    elif kind == "wrong-shape entry.json":
        (entry / "entry.json").write_text('["not", "a", "record"]')
    elif kind == "file where the folder should be":
        import shutil

        shutil.rmtree(entry)
        entry.write_text("not a folder")
    elif kind in RECORD_DAMAGE:  # a record of the right syntax and the wrong shape: it used to crash every reader
        RECORD_DAMAGE[kind](record)
        (entry / "entry.json").write_text(json.dumps(record))
    elif kind == "entries swapped":  # two whole entries, each in the other's folder: the keys inside tell
        other = _entries(entry.parent.parent.parent)["photo"]
        entry.rename(entry.with_name("swap"))
        other.rename(entry)
        entry.with_name("swap").rename(other)


def _outputs_of(record: dict) -> dict:
    return record["outputs"][record["default_output"]]


RECORD_DAMAGE = {
    "sizes of the wrong type": lambda r: _outputs_of(r).update(sizes=5),
    "sizes holding text": lambda r: _outputs_of(r).update(sizes=["many"]),
    "files holding numbers": lambda r: _outputs_of(r).update(files=[7]),
    "unknown default_output": lambda r: r.update(default_output="nope"),
    "default_output a list": lambda r: r.update(default_output=["image"]),
    "sha256 not a list": lambda r: _outputs_of(r).update(sha256="abc"),
    "unknown kind": lambda r: _outputs_of(r).update(kind="video"),
    "outputs a list": lambda r: r.update(outputs=[1]),
    "info a list": lambda r: r.update(info=[1]),
    "a path as a file name": lambda r: _outputs_of(r).update(files=["../../x.png"]),
    "another entry's key": lambda r: r.update(key="0" * 64),
}


@pytest.mark.parametrize("kind", ["flipped byte", "truncated file", "deleted output", "garbage entry.json",
                                  "wrong-shape entry.json", "file where the folder should be", *RECORD_DAMAGE,
                                  "entries swapped"])
def test_a_damaged_entry_is_detected_quarantined_and_recomputed(images_workflow, tmp_path, isolated_cache, capsys, kind):
    clean = _outputs(_run(images_workflow, tmp_path / "clean"))
    entry = _entries(isolated_cache)["edges"]
    _damage(kind, entry)
    capsys.readouterr()
    run_dir = _run(images_workflow, tmp_path / "out")
    err = capsys.readouterr().err
    assert "edges" in err and "damaged" in err and "quarantine" in err, err
    damaged = {"edges", "photo"} if kind == "entries swapped" else {"edges"}
    assert {node for node, status in statuses(run_dir).items() if status == "ran"} >= damaged
    assert {node for node, status in statuses(run_dir).items() if status == "ran"} <= damaged | {"big", "sheet",
                                                                                                 "out_sheet", "out_big"}
    assert _outputs(run_dir) == clean
    quarantined = list((isolated_cache / "quarantine").iterdir())
    assert len(quarantined) == len(damaged) and all((q / "reason.txt").read_text().strip() for q in quarantined)
    # the recomputed entry is whole again: a third run is all cache hits
    assert set(statuses(_run(images_workflow, tmp_path / "again")).values()) == {"cached"}


def test_a_damaged_input_entry_is_recomputed_before_its_reader_runs(images_workflow, tmp_path, isolated_cache, capsys):
    """An upstream entry damaged between the check of its own node and the read by the next one."""
    clean = _outputs(_run(images_workflow, tmp_path / "clean"))
    entries = _entries(isolated_cache)
    import shutil

    for node in ("big", "sheet", "out_big", "out_sheet"):
        if node in entries:
            shutil.rmtree(entries[node])
    _damage("flipped byte", entries["edges"])
    run_dir = _run(images_workflow, tmp_path / "out")
    assert _outputs(run_dir) == clean


def test_cache_verify_reports_damage_and_exits_1(images_workflow, tmp_path, isolated_cache, capsys):
    _run(images_workflow, tmp_path / "out")
    capsys.readouterr()
    assert run_cli("cache", "verify") == 0
    assert f"checked {len(NODES)} node results, 0 damaged" in capsys.readouterr().out
    entries = _entries(isolated_cache)
    _damage("flipped byte", entries["mask"])
    _damage("deleted output", entries["big"])
    assert run_cli("cache", "verify") == 1
    out = capsys.readouterr().out
    assert out.count("damaged: ") == 2 and entries["mask"].name in out and "sha256" in out and "missing" in out
    assert "2 damaged" in out
    assert not entries["mask"].exists() and len(list((isolated_cache / "quarantine").iterdir())) == 2
    assert run_cli("cache", "verify") == 0


def test_cache_info_counts_everything_by_kind(images_workflow, tmp_path, isolated_cache, capsys):
    _run(images_workflow, tmp_path / "out")
    _damage("flipped byte", _entries(isolated_cache)["mask"])
    run_cli("cache", "verify")
    (isolated_cache / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert run_cli("cache", "info") == 0
    out = capsys.readouterr().out
    assert f"{len(NODES) - 1} cached node results" in out
    for kind in ("quarantined entries: 1", "lock files: 7", "other files: 1"):
        assert kind in out, out


def _hold_lock(cache: Path, key: str) -> subprocess.Popen:
    """Another process holding an entry's lock (as a run reading or computing it does)."""
    path = cache / "locks" / key[:2] / f"{key}.lock"
    code = ("import sys, filelock; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
            "sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_cache_prune_by_age_and_size_keeps_entries_in_use(images_workflow, tmp_path, isolated_cache, capsys):
    _run(images_workflow, tmp_path / "out")
    entries = _entries(isolated_cache)
    # last use is recorded at read: "photo" the least recently used, "sheet" the most
    for age, node in enumerate(["sheet", "out_sheet", "out_big", "big", "mask", "edges", "photo"]):
        stamp = time.time() - 86400 * (age + 1)
        os.utime(entries[node] / "entry.json", (stamp, stamp))
    assert run_cli("cache", "prune", "--older-than", "5.5") == 0
    assert "removed 2 cached node results" in capsys.readouterr().out
    assert set(_entries(isolated_cache)) == {"sheet", "out_sheet", "out_big", "big", "mask"}
    sizes = {node: sum(f.stat().st_size for f in folder.iterdir()) for node, folder in _entries(isolated_cache).items()}
    holder = _hold_lock(isolated_cache, entries["mask"].name)
    try:
        # room for the most recent one and "mask", which is in use by another process and cannot go
        assert run_cli("cache", "prune", "--max-size", str(sizes["sheet"] + sizes["mask"])) == 0
        out = capsys.readouterr().out
        assert "removed 3 cached node results" in out and "kept 1 in use" in out
        assert set(_entries(isolated_cache)) == {"sheet", "mask"}
        assert run_cli("cache", "clear") == 0
        assert "kept 1 in use" in capsys.readouterr().out and set(_entries(isolated_cache)) == {"mask"}
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert run_cli("cache", "prune") == 2
    assert run_cli("cache", "prune", "--max-size", "lots") == 2
    assert run_cli("cache", "info", "--older-than", "3") == 2


def test_a_read_marks_the_entry_as_recently_used(images_workflow, tmp_path, isolated_cache):
    _run(images_workflow, tmp_path / "out")
    entry = _entries(isolated_cache)["photo"] / "entry.json"
    os.utime(entry, (1_000_000, 1_000_000))
    _run(images_workflow, tmp_path / "out")
    assert time.time() - entry.stat().st_mtime < 600


def test_no_cache_replaces_an_entry_whole(images_workflow, tmp_path, isolated_cache):
    clean = _outputs(_run(images_workflow, tmp_path / "out"))
    before = {node: json.loads((folder / "entry.json").read_text())["outputs"] for node, folder in _entries(isolated_cache).items()}
    assert _outputs(_run(images_workflow, tmp_path / "out", "--no-cache")) == clean
    after = {node: json.loads((folder / "entry.json").read_text())["outputs"] for node, folder in _entries(isolated_cache).items()}
    assert after == before
    assert not [p for p in (isolated_cache / "nodes").rglob(".*") if p.name.endswith((".tmp", ".old"))]


def _spawn(workflow: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner", "run", str(workflow), "--out", str(out), "--plain", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def test_eight_processes_share_one_cache(images_workflow, tmp_path, isolated_cache):
    """Overlapping rounds, cold and warm, some with --no-cache, and a `cache clear` in the middle: every process
    exits 0, every output equals a serial run's, no torn entry and no stray staging folder is left."""
    serial = _outputs(_run(images_workflow, tmp_path / "serial", "--no-cache"))
    assert run_cli("cache", "clear") == 0
    for round_ in range(2):  # the first round starts cold, the second warm
        processes = [_spawn(images_workflow, tmp_path / f"out{round_}-{i}", *(["--no-cache"] if i % 3 == 1 else []))
                     for i in range(8)]
        for line in processes[0].stdout:  # the first one is working: clear the cache under all of them
            if line.startswith(("running", "cached")):
                break
        clear = subprocess.run([sys.executable, "-m", "runner", "cache", "clear"], capture_output=True, text=True,
                               cwd=REPO, timeout=120)
        assert clear.returncode == 0 and "Traceback" not in clear.stderr, clear.stderr
        for i, process in enumerate(processes):
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0 and "Traceback" not in stderr, (stdout, stderr)
            assert _outputs(latest_run(tmp_path / f"out{round_}-{i}", "shared")) == serial
    for folder in _entries(isolated_cache).values():
        record = json.loads((folder / "entry.json").read_text())
        for output in record["outputs"].values():
            assert [(folder / f).stat().st_size for f in output["files"]] == output["sizes"]
    assert not [p for p in (isolated_cache / "nodes").rglob(".*") if p.name.endswith((".tmp", ".old"))]
    assert not (isolated_cache / "quarantine").exists()


KILLED = """version: 1
name: killed
seed: 7
models:
  sd: tiny:sd15
nodes:
  photo: {type: load_image, path: in.png, size: [64, 64]}
  edges: {type: canny, image: $photo}
  first: {type: img2img, model: $models.sd, image: $photo, prompt: a room, strength: 1.0, steps: 20}
  second: {type: img2img, model: $models.sd, image: $first, prompt: a painted room, strength: 1.0, steps: 20}
  sheet: {type: grid, images: [$edges, $second], cols: 2}
  out: {type: save_image, image: $sheet, name: sheet.png}
"""


@pytest.mark.parametrize("signame,moment", [
    ("SIGKILL", "first: step 10"), ("SIGKILL", "running  sheet"), ("SIGINT", "first: step 10"), ("SIGINT", "running  out"),
])
def test_a_killed_run_resumes_exactly_where_it_stopped(tmp_path, isolated_cache, monkeypatch, capsys, signame, moment):
    workflow = write_workflow(tmp_path, "killed.yaml", KILLED)
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "reference-cache"))
    assert run_cli("run", workflow, "--out", tmp_path / "ref", "--plain") == 0
    expected = _pixels(latest_run(tmp_path / "ref", "killed") / "sheet.png")
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(isolated_cache))

    process = _spawn(workflow, tmp_path / "out")
    for line in process.stdout:
        if moment in line:
            process.send_signal(getattr(signal, signame))
            break
    _stdout, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    finished = set(_entries(isolated_cache))
    if signame == "SIGINT":
        run_dir = latest_run(tmp_path / "out", "killed")
        status = manifest(run_dir)["status"]
        assert (process.returncode, status) in {(130, "interrupted"), (0, "ok")}, (process.returncode, status, stderr)
        assert {node for node, s in statuses(run_dir).items() if s == "ran"} <= finished
    else:
        assert process.returncode == -signal.SIGKILL

    capsys.readouterr()
    assert run_cli("run", workflow, "--out", tmp_path / "again", "--plain") == 0
    assert "damaged" not in capsys.readouterr().err  # nothing torn was left to find
    run_dir = latest_run(tmp_path / "again", "killed")
    ran = {node for node, s in statuses(run_dir).items() if s == "ran"}
    assert ran == {"photo", "edges", "first", "second", "sheet", "out"} - finished, (ran, finished)
    assert _pixels(run_dir / "sheet.png") == expected
    assert run_cli("cache", "verify") == 0


def _read_only(folder: Path) -> list[str] | None:
    """A command prefix that sees `folder` read-only (a private mount namespace, no root needed), or None."""
    prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
              'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"', str(folder)]
    try:
        probe = subprocess.run(prefix + ["true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def test_a_read_only_cache_serves_hits_and_refuses_clear_clearly(images_workflow, tmp_path, isolated_cache):
    clean = _outputs(_run(images_workflow, tmp_path / "out"))
    prefix = _read_only(isolated_cache)
    if prefix is None:
        pytest.skip("no unprivileged mount namespace here")
    command = [sys.executable, "-m", "runner"]
    run = subprocess.run(prefix + command + ["run", str(images_workflow), "--out", str(tmp_path / "ro"), "--plain"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert set(statuses(latest_run(tmp_path / "ro", "shared")).values()) == {"cached"}
    assert _outputs(latest_run(tmp_path / "ro", "shared")) == clean
    for action in (["clear"], ["prune", "--older-than", "0"]):
        result = subprocess.run(prefix + command + ["cache", *action], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "the cache folder is not writable" in result.stderr and "fix:" in result.stderr
    assert len(_entries(isolated_cache)) == len(NODES)


def test_cache_clear_through_a_symlinked_nodes_folder(images_workflow, tmp_path, isolated_cache, capsys):
    _run(images_workflow, tmp_path / "out")
    elsewhere = tmp_path / "bigdisk-nodes"
    (isolated_cache / "nodes").rename(elsewhere)
    (isolated_cache / "nodes").symlink_to(elsewhere)
    (elsewhere / "my-notes.txt").write_text("keep me")
    assert set(statuses(_run(images_workflow, tmp_path / "again")).values()) == {"cached"}
    capsys.readouterr()
    assert run_cli("cache", "clear") == 0
    assert f"removed {len(NODES)} cached node results" in capsys.readouterr().out
    assert (isolated_cache / "nodes").is_symlink() and (elsewhere / "my-notes.txt").read_text() == "keep me"
    assert not list(elsewhere.glob("*/*/entry.json"))


def test_a_shard_removed_before_its_staging_folder_is_made_again(tmp_path, monkeypatch):
    """`runner cache clear` removes a shard folder it empties; a writer that had just made it makes it again (the race
    once failed a run in test_eight_processes_share_one_cache, 1 time in about 30)."""
    import tempfile

    from runner.core import atomic

    real, removed = tempfile.mkdtemp, []

    def shard_cleared_first(*args, **kwargs):
        if not removed:  # the clear's rmdir lands between the writer's mkdir and its mkdtemp
            Path(kwargs["dir"]).rmdir()
            removed.append(kwargs["dir"])
        return real(*args, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", shard_cleared_first)
    final = tmp_path / "nodes" / "ab" / "abcdef"
    with atomic.staged_folder(final) as staging:
        (staging / "entry.json").write_text("{}")
    assert removed and (final / "entry.json").read_text() == "{}"


def test_cache_info_counts_each_built_tiny_model(isolated_cache, capsys):
    tiny = isolated_cache / "models" / "tiny"
    for name in ("sd15-0123456789ab", "dpt-0123456789ab", "flux-0123456789ab"):
        (tiny / name).mkdir(parents=True)
        (tiny / name / "model_index.json").write_text("{}")
    (tiny / ".sd3-0123456789ab.tmp").mkdir()
    assert run_cli("cache", "info") == 0
    out = capsys.readouterr().out
    assert "built tiny models: 3" in out and "unfinished writes: 1" in out, out


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_run_folders_and_cache_entries_honour_the_umask(images_workflow, tmp_path, isolated_cache, umask):
    """A teammate (or a web server) reads a shared cache and run folders: folders are 0777 and files 0666 less the
    umask, as mkdir and open would make them (mkdtemp and mkstemp make 0700 / 0600)."""
    import os
    import stat

    from runner.core.atomic import staged_folder

    before = os.umask(umask)
    try:
        run_dir = _run(images_workflow, tmp_path / "out")
        with staged_folder(tmp_path / "staged" / "entry") as folder:
            (folder / "x.txt").write_text("x")
    finally:
        os.umask(before)
    checked = 0
    # the run folder and its workflow's folder, the cache's entries, locks and marker (.runner-cache), a staged folder
    for root in (run_dir, isolated_cache / "nodes", isolated_cache / "locks", tmp_path / "staged"):
        for path in [root, *root.rglob("*")] + ([run_dir.parent, isolated_cache / ".runner-cache"] if root == run_dir
                                                else []):
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o777 if path.is_dir() else 0o666) & ~umask, (path, oct(mode))
            checked += 1
    assert checked > 20


def test_prune_and_info_go_on_when_a_concurrent_clear_removes_a_shard(images_workflow, tmp_path, isolated_cache, capsys,
                                                                      monkeypatch):
    """`cache clear` in another process removes the shard folders it empties while prune walks them: prune (and
    info) count what is left instead of failing with FileNotFoundError. The other process is simulated at the worst
    moment: between the walk's is_dir() of a shard and its listing."""
    import pathlib
    import shutil

    from runner.executor import maintenance
    from runner.executor.cache import NodeCache

    _run(images_workflow, tmp_path / "out")
    cache = NodeCache(isolated_cache)
    before = list(maintenance.keys(cache))
    victim = sorted(p for p in (isolated_cache / "nodes").iterdir())[0]
    listing = pathlib.Path.iterdir

    def racing(path):
        if path == victim and path.exists():
            shutil.rmtree(path)
        return listing(path)

    monkeypatch.setattr(pathlib.Path, "iterdir", racing)
    removed, _freed, _skipped = maintenance.prune(cache, max_size=0)
    monkeypatch.setattr(pathlib.Path, "iterdir", listing)
    assert 0 < removed < len(before) and not list(maintenance.keys(cache))
    assert run_cli("cache", "info") == 0


def test_links_planted_in_the_cache_and_the_outputs_are_not_followed(images_workflow, tmp_path, isolated_cache, capsys):
    """A symbolic link planted as cache/locks, cache/quarantine or outputs/NAME would have runner write outside the
    cache and the output folder: the cache's own links are replaced by folders (the link only is removed), and a run
    into a linked workflow folder is refused (exit 2)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (isolated_cache / "locks").mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.rmtree(isolated_cache / "locks")
    (isolated_cache / "locks").symlink_to(outside)
    (isolated_cache / "quarantine").symlink_to(outside)
    run_dir = _run(images_workflow, tmp_path / "out")
    _damage("flipped byte", _entries(isolated_cache)["mask"])
    assert run_cli("cache", "verify") == 1
    assert not any(outside.iterdir()), list(outside.iterdir())  # nothing was written through the links
    assert (isolated_cache / "locks").is_dir() and not (isolated_cache / "locks").is_symlink()
    assert len(list((isolated_cache / "quarantine").iterdir())) == 1
    capsys.readouterr()
    linked = tmp_path / "out2"
    linked.mkdir()
    (linked / "shared").symlink_to(outside)
    assert run_cli("run", images_workflow, "--out", linked, "--plain") == 2
    err = capsys.readouterr().err
    assert f"error: --out: {linked / 'shared'} is a symbolic link (to {outside})" in err, err
    assert not any(outside.iterdir()) and run_dir.is_dir()


def _write_text(kind: str, value: str, stem: Path) -> list[str]:
    path = stem.with_suffix(".txt")
    path.write_text(value)
    return [path.name]


def test_a_read_without_the_lock_that_sees_the_entry_swapped_or_removed_reads_again_under_it(tmp_path):
    """Whole entries are read without their lock; a reader that saw another version swapped in meanwhile (a
    --no-cache re-run) or the files removed (cache clear) reads again, locked, and never returns a mix."""
    from runner.executor.cache import EntryMissing, NodeCache, remove

    cache, key = NodeCache(tmp_path / "cache"), "a" * 64
    cache.put(key, {"text": ("latents", "first")}, _write_text, {"default_output": "text"})
    locked, acquire = [], cache.acquire
    cache.acquire = lambda key, waiting=None: locked.append(key) or acquire(key, waiting)
    assert cache.lookup(key)["key"] == key and cache.output(key)[0] == "latents"
    assert cache.read_output(key, None, lambda kind, files: files[0].read_text()) == "first"
    assert locked == []  # the entry was whole: nothing was locked
    calls = []

    def swapping_reader(kind, files):
        calls.append(files[0].read_text())
        if len(calls) == 1:  # another process replaces the entry while this one reads
            cache.put(key, {"text": ("latents", "second")}, _write_text, {"default_output": "text"}, replace=True)
        return calls[-1]

    assert cache.read_output(key, None, swapping_reader) == "second" and calls == ["first", "second"]
    assert locked.count(key) == 2  # the swap, and the second read

    def removing_reader(kind, files):
        if not calls or calls[-1] != "removed":
            calls.append("removed")
            remove(cache.entry_dir(key))  # `cache clear` meanwhile
        return files[0].read_text()

    with pytest.raises(EntryMissing):
        cache.read_output(key, None, removing_reader)
    assert cache.lookup(key) is None
