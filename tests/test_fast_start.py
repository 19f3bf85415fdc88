"""What makes a fully cached `runner run` start fast (issue 28, bench/start_time.py) gives the answers it replaced:
library versions as importlib.metadata reads them, the parser of one command as the whole grammar, the C YAML
emitter's text as the Python one's, git's state from two calls as from three, and the command-line process's
paused garbage collector and teardown-less exit lose nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from runner.cli.parser import build_parser, command_of
from runner.core.installed import installed_versions
from runner.executor.plan import KEY_LIBRARIES, library_versions
from runner.language.yaml_source import dump_yaml
from runner.records.provenance import git_state

REPO = Path(__file__).resolve().parent.parent


def metadata_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_installed_versions_are_importlib_metadatas():
    names = KEY_LIBRARIES + ("huggingface_hub", "safetensors", "PyYAML", "pydantic-core", "no-such-distribution-x")
    found = installed_versions(names)
    assert list(found) == list(names)
    assert found == {name: metadata_version(name) for name in names}
    assert found["no-such-distribution-x"] is None and found["torch"]
    versions = library_versions()
    assert versions["runner"] == __import__("runner").__version__ == metadata.version("runner")
    assert versions["python"] == sys.version.split()[0]


def _dist(folder: Path, name: str, version: str, suffix: str = "dist-info") -> None:
    info = folder / f"{name}-{version}.{suffix}"
    info.mkdir(parents=True)
    (info / ("METADATA" if suffix == "dist-info" else "PKG-INFO")).write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_installed_versions_follow_the_search_order_and_ask_metadata_where_a_name_could_mislead(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "alpha_pkg", "1.0")  # found first on the path: it wins over second's
    _dist(second, "alpha_pkg", "2.0")
    _dist(first, "Beta.Pkg", "3.1.post2")  # a name written with capitals and dots
    _dist(second, "gamma", "4.0", "egg-info")  # an egg-info folder: metadata reads its PKG-INFO
    _dist(first, "delta", "5.0")  # two folders for one name in one place: metadata's choice
    _dist(first, "delta", "6.0")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(first), str(second)])
    names = ("alpha-pkg", "beta_pkg", "gamma", "delta", "absent")
    found = installed_versions(names)
    assert found == {name: metadata_version(name) for name in names}
    assert found["alpha-pkg"] == "1.0" and found["beta_pkg"] == "3.1.post2" and found["gamma"] == "4.0"
    assert found["absent"] is None


COMMAND_LINES = [
    ["run", "workflows/demo.yaml", "--quiet", "--set", "params.steps=3", "--seeds", "1-4", "--batch", "2"],
    ["run", "workflows/demo.yaml", "--plain", "--only", "generated", "--force", "room", "--executor", "ray"],
    ["validate", "workflows/demo.yaml", "--allow-path", "/tmp", "--model-path", "/models"],
    ["nodes", "txt2img", "--all"],
    ["export", "workflows/demo.yaml", "-o", "-"],
    ["import", "comfyui", "graph.json", "-o", "out.yaml", "--force"],
    ["serve", "token", "add", "alice", "--admin"],
    ["serve", "--port", "9000", "--cors-origin", "http://a"],
    ["submit", "workflows/demo.yaml", "--wait", "--priority", "3"],
    ["jobs", "show", "abc"],
    ["cache", "prune", "--max-size", "1GB"],
    ["runs", "diff", "a", "b"],
    ["--debug", "run", "workflows/demo.yaml"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=[" ".join(a[:2]) for a in COMMAND_LINES])
def test_the_parser_of_one_command_parses_as_the_whole_grammar(argv):
    assert vars(build_parser(only=command_of(argv)).parse_args(argv)) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", [["run", "--help"], ["serve", "token", "--help"], ["bogus"], ["run"],
                                  ["validate", "a.yaml", "--no-such-option"]])
def test_help_and_errors_of_one_command_read_as_the_whole_grammars(argv, capsys):
    said = []
    for parser in (build_parser(only=command_of(argv)), build_parser()):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args(argv)
        captured = capsys.readouterr()
        said.append((stopped.value.code, captured.out, captured.err))
    assert said[0] == said[1]
    assert said[0][1] or said[0][2]


def test_dump_yaml_writes_what_safe_dump_writes(tmp_path):
    documents = [yaml.safe_load(path.read_text()) for path in sorted((REPO / "workflows").glob("*.yaml"))]
    documents.append({"prompt": "a " * 120 + "end", "negative": "línea\ncon\n", "unicode": "日本 ✓", "empty": "",
                      "strings": ["yes", "null", "1.5", "#x", "a: b", " lead", "trail ", "'q'", '"d"', "~"],
                      "numbers": [0, -1, 1.5, 1e300, 2**70], "nested": {"list": [[1, [2, {"k": None}]]], "t": True}})
    assert len(documents) > 5
    for document in documents:
        for options in ({"sort_keys": False, "allow_unicode": True}, {"sort_keys": False}):
            assert dump_yaml(document, **options) == yaml.safe_dump(document, **options)


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


def test_git_state_records_the_commit_the_dirty_flag_and_the_workflow_files_state(tmp_path):
    repo = tmp_path / "repo"
    (repo / "flows").mkdir(parents=True)
    workflow, other = repo / "flows" / "wf.yaml", repo / "notes.txt"
    workflow.write_text("version: 1\n")
    other.write_text("a\n")
    assert git_state(workflow) is None  # not a repository
    _git(repo, "init", "-q")
    assert git_state(workflow) is None  # no commit yet
    _git(repo, "add", "notes.txt")
    _git(repo, "commit", "-qm", "notes")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_state(workflow) == {"commit": head, "dirty": False, "workflow_file_modified": True}  # untracked
    _git(repo, "add", "flows/wf.yaml")
    _git(repo, "commit", "-qm", "workflow")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_state(workflow) == {"commit": head, "dirty": False, "workflow_file_modified": False}
    other.write_text("b\n")
    assert git_state(workflow) == {"commit": head, "dirty": True, "workflow_file_modified": False}
    workflow.write_text("version: 1\n# edited\n")
    assert git_state(workflow) == {"commit": head, "dirty": True, "workflow_file_modified": True}
    (repo / "untracked.txt").write_text("x\n")  # untracked files elsewhere do not make it dirty
    _git(repo, "checkout", "-q", "--", ".")
    assert git_state(workflow) == {"commit": head, "dirty": False, "workflow_file_modified": False}


def test_the_command_line_process_resumes_its_collector_and_runs_exit_hooks_before_a_teardown_less_exit(demo, tmp_path):
    """`runner run` in its own process: the collector paused for the start is running (and the start's objects
    frozen) when the work starts; what an exit hook writes and what was printed is all there after the exit."""
    out = tmp_path / "out"
    probe = (
        "import atexit, gc, sys\n"
        "import runner.cli\n"
        "seen = {}\n"
        "original = runner.cli.work_starts\n"
        "def starts():\n"
        "    if not seen:  # the first call: the work starts (later ones find it running)\n"
        "        seen['paused at start'] = not gc.isenabled()\n"
        "        original()\n"
        "        seen['resumed'] = gc.isenabled()\n"
        "        seen['frozen'] = gc.get_freeze_count() > 10000\n"
        "    original()\n"
        "runner.cli.work_starts = starts\n"
        "import runner.cli.run\n"
        "runner.cli.run.work_starts = starts\n"
        "atexit.register(lambda: print('exit hook', sorted(k for k, v in seen.items() if v),\n"
        "                              [m for m in ('torch', 'filelock', 'rich') if m in sys.modules], flush=True))\n"
        f"sys.argv = ['runner', 'run', {str(demo)!r}, '--out', {str(out)!r}, '--quiet']\n"
        "sys.exit(runner.cli.main())\n"
    )
    # computed (torch, and locks to write the cache), then fully cached: no lock taken, nothing heavy imported
    for imported in (["torch", "filelock"], []):
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("run folder: ") and Path(lines[0].split(": ", 1)[1]).is_dir()
        assert lines[-1] == f"exit hook ['frozen', 'paused at start', 'resumed'] {imported}"
    folder = Path(lines[0].split(": ", 1)[1])
    record = json.loads((folder / "manifest.json").read_text())
    assert set(node["status"] for node in record["nodes"].values()) == {"cached"}
    assert (folder / "report.html").is_file() and (folder / "final.png").is_file()
    failed = subprocess.run([sys.executable, "-c", probe.replace(str(demo), str(tmp_path / "missing.yaml"))],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and "missing.yaml" in failed.stderr and "Traceback" not in failed.stderr


def test_a_run_that_computes_without_torch_leaves_teardown_less_with_everything_written(tmp_path):
    """An image-only workflow computes its nodes (writing cache entries under their locks) without importing
    torch, so it too ends by the teardown-less exit: its entries are whole and the next run uses them."""
    from conftest import write_workflow

    workflow = write_workflow(tmp_path, "images.yaml", "version: 1\nname: images\nnodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [32, 32]}\n"
                              "  out: {type: save_image, image: $photo, name: out.png}\n")
    out = tmp_path / "out"
    probe = ("import atexit, sys, runner.cli\n"
             "atexit.register(lambda: print('exit hook', [m for m in ('torch', 'filelock') if m in sys.modules], "
             "flush=True))\n"
             f"sys.argv = ['runner', 'run', {str(workflow)!r}, '--out', {str(out)!r}, '--plain']\n"
             "sys.exit(runner.cli.main())\n")
    said = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        said.append(result.stdout)
    assert "exit hook ['filelock']" in said[0] and "exit hook []" in said[1]  # computed with locks, then cached
    folders = sorted((out / "images").iterdir())
    records = [json.loads((folder / "manifest.json").read_text()) for folder in folders]
    assert [sorted({n["status"] for n in r["nodes"].values()}) for r in records] == [["ran"], ["cached"]]
    assert (folders[0] / "out.png").read_bytes() == (folders[1] / "out.png").read_bytes()
    verify = subprocess.run([sys.executable, "-m", "runner", "cache", "verify"], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert verify.returncode == 0, verify.stdout + verify.stderr
