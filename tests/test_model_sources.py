"""Model sources for real: a hub id from a Hugging Face cache laid out on disk, a local folder, errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import latest_run, manifest, run_cli, statuses

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def tiny_folder(models_dir) -> Path:
    from runner.models.tiny import ensure_tiny

    return ensure_tiny("sd15", models_dir / "tiny")


@pytest.fixture
def hf_cache(tmp_path, tiny_folder, monkeypatch) -> Path:
    """A real huggingface_hub cache layout: blobs/, snapshots/<commit>/ (links to blobs), refs/main."""
    hub = tmp_path / "hf-hub"
    repo = hub / "models--acme--tiny-sd"
    for file in tiny_folder.rglob("*"):
        if file.is_file():
            relative = file.relative_to(tiny_folder)
            blob = repo / "blobs" / file.name.replace(".", "_") / relative.parent.as_posix().replace("/", "_")
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, blob)
            link = repo / "snapshots" / COMMIT / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    return hub


def test_hub_id_loads_offline_from_the_hf_cache_and_records_the_commit(demo, hf_cache, tmp_path):
    from runner.models.sources import resolve_hub_commit

    assert resolve_hub_commit("acme/tiny-sd", "main") == COMMIT
    assert resolve_hub_commit("acme/tiny-sd", "v2") is None
    assert run_cli("run", demo, "--out", tmp_path / "out", "--plain", "--set", "models.sd15=acme/tiny-sd") == 0
    data = manifest(latest_run(tmp_path / "out", "demo"))
    assert data["nodes"]["generated"]["models"] == {"$models.sd15": f"hub:acme/tiny-sd@{COMMIT}"}
    assert data["models_loaded"] == [f"hub:acme/tiny-sd@{COMMIT}"]


def test_uncached_revision_of_a_cached_repo_fails_with_how_to_fetch(demo, hf_cache, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = run_cli("run", demo, "--out", tmp_path / "out", "--plain",
                   "--set", "models.sd15={source: acme/tiny-sd, revision: v2}")
    assert code == 1
    err = capsys.readouterr().err
    assert "acme/tiny-sd" in err and "revision v2" in err and "hf download" in err


def test_local_folder_identity_follows_file_bytes(demo, tiny_folder, tmp_path):
    folder = tmp_path / "my-model"
    shutil.copytree(tiny_folder, folder)
    assert run_cli("run", demo, "--out", tmp_path / "out", "--plain", "--set", f"models.sd15={folder}") == 0
    first = manifest(latest_run(tmp_path / "out", "demo"))["nodes"]["generated"]["models"]["$models.sd15"]
    assert first.startswith("folder:")
    assert run_cli("run", demo, "--out", tmp_path / "out", "--plain", "--set", f"models.sd15={folder}") == 0
    assert set(statuses(latest_run(tmp_path / "out", "demo")).values()) == {"cached"}
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"steps_offset": 1', '"steps_offset": 0'))
    assert run_cli("run", demo, "--out", tmp_path / "out", "--plain", "--set", f"models.sd15={folder}") == 0
    again = latest_run(tmp_path / "out", "demo")
    assert manifest(again)["nodes"]["generated"]["models"]["$models.sd15"] != first
    assert statuses(again)["generated"] == "ran" and statuses(again)["room"] == "cached"


def test_unknown_source_and_unknown_tiny_name_are_invalid_input(demo, tmp_path, capsys):
    assert run_cli("run", demo, "--out", tmp_path / "out", "--set", "models.sd15=./no/such/folder") == 2
    err = capsys.readouterr().err
    # located where the bad source was written: here the --set that replaced the workflow's models.sd15
    assert "error: --set models.sd15=./no/such/folder: models.sd15: model source './no/such/folder'" in err
    assert run_cli("run", demo, "--out", tmp_path / "out", "--set", "models.sd15=tiny:sd51") == 2
    assert "sd15" in capsys.readouterr().err


def test_lock_pins_models_and_run_refuses_a_changed_pinned_file(demo, tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setenv("RUNNER_MODELS_DIR", str(tmp_path / "models"))  # this test edits a model: a private copy
    assert run_cli("lock", demo) == 0
    lock = json.loads((demo.parent / "demo.yaml.lock").read_text())
    pin = lock["models"]["$models.sd15"]
    assert pin["source"] == "tiny:sd15" and "unet/diffusion_pytorch_model.safetensors" in pin["files"]
    assert run_cli("run", demo, "--out", tmp_path / "out", "--plain") == 0
    config = next((tmp_path / "models" / "tiny").glob("sd15-*")) / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"epsilon"', '"v_prediction"'))
    capsys.readouterr()
    assert run_cli("run", demo, "--out", tmp_path / "out", "--plain") == 2
    err = capsys.readouterr().err
    assert "demo.yaml.lock" in err and "$models.sd15 (tiny:sd15): pinned file scheduler/scheduler_config.json changed" in err


def test_lock_pins_hub_models_to_their_commit(demo, hf_cache, tmp_path):
    import json

    assert run_cli("lock", demo, "--set", "models.sd15=acme/tiny-sd") == 0
    assert json.loads((demo.parent / "demo.yaml.lock").read_text())["models"]["$models.sd15"]["commit"] == COMMIT
    demo.write_text(demo.read_text().replace("sd15: tiny:sd15", "sd15: acme/tiny-sd"))
    assert run_cli("run", demo, "--out", tmp_path / "out", "--plain") == 0
    data = manifest(latest_run(tmp_path / "out", "demo"))
    assert any(o.startswith("models.sd15=") and COMMIT in o for o in data["workflow"]["overrides"])
    assert data["models"]["$models.sd15"]["commit"] == COMMIT


@pytest.mark.parametrize("content,says", [
    (b"{not json", "not what 'runner lock' writes"),
    (b"\xff\xfe garbage", "not what 'runner lock' writes"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"models": ["$models.sd15"]}', "needs a 'models' mapping"),
    (b'"just a string"', "needs a 'models' mapping"),
    (b" " * ((1 << 20) + 10), "larger than 1,048,576 bytes"),
])
def test_a_damaged_lock_file_is_a_located_error(demo, capsys, content, says):
    (demo.parent / "demo.yaml.lock").write_bytes(content)
    for command in (("run", demo, "--dry-run"), ("run", demo, "--dry-run", "--seeds", "1-2")):
        assert run_cli(*command) == 2
        err = capsys.readouterr().err
        assert "demo.yaml.lock" in err and says in err and "runner lock demo.yaml" in err and "Traceback" not in err, err


def test_session_run_honours_the_lock_as_runner_run_does(demo, hf_cache, tmp_path, monkeypatch, capsys):
    """WF.lock is applied by the engine, once, for every front: Session.run records the pinned revisions as `runner
    run` does, and refuses a changed pinned file the same way."""
    import json

    import runner

    demo.write_text(demo.read_text().replace("sd15: tiny:sd15", "sd15: acme/tiny-sd"))
    assert run_cli("lock", demo) == 0
    assert run_cli("run", demo, "--out", tmp_path / "cli", "--plain") == 0
    cli = manifest(latest_run(tmp_path / "cli", "demo"))
    with runner.Session(out=tmp_path / "py") as session:
        run = session.run(demo)
        assert run.status == "ok"
        assert run.manifest["workflow"]["overrides"] == cli["workflow"]["overrides"]
        assert any(o.startswith("models.sd15=") and COMMIT in o for o in run.manifest["workflow"]["overrides"])
        assert run.manifest["models"]["$models.sd15"]["commit"] == COMMIT
        sweep = session.sweep(demo, seeds=[1, 2])
        assert all(COMMIT in " ".join(r.manifest["workflow"]["overrides"]) for r in sweep.runs.values())
        lock = json.loads((demo.parent / "demo.yaml.lock").read_text())
        pinned = next(iter(lock["models"]["$models.sd15"]["files"]))
        lock["models"]["$models.sd15"]["files"][pinned] = "0" * 64
        (demo.parent / "demo.yaml.lock").write_text(json.dumps(lock))
        with pytest.raises(runner.WorkflowError, match=f"pinned file {pinned} changed"):
            session.run(demo)
