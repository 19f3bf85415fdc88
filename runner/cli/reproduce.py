"""`runner reproduce RUN`: run a recorded workflow again, bypassing the cache, and compare every output."""

from __future__ import annotations

from pathlib import Path

from ..language.yaml_source import read_yaml_text
from ..language.workflow import Workflow
from ..engine.loading import consent_of, load_workflow
from .run import command_record
from ..records.runs import load_manifest, resolve_run
from ..engine.session import Session
from ..executor.plan import recorded_batch


def environment_differences(old: dict, new: dict) -> list[str]:
    """Why outputs may legitimately differ: versions, device, dtype, model files, input files."""
    notes = []
    for name in sorted(set(old.get("libraries", {})) | set(new.get("libraries", {}))):
        before, now = old.get("libraries", {}).get(name), new.get("libraries", {}).get(name)
        if before != now:
            notes.append(f"version of {name}: recorded {before}, now {now}")
    for key in ("device", "dtype"):
        if old.get(key) != new.get(key):
            notes.append(f"{key}: recorded {old.get(key)}, now {new.get(key)}")
    for ref, before in old.get("models", {}).items():
        now = new.get("models", {}).get(ref, {})
        label = f"model {ref} ({before.get('source')})"
        if before.get("identity") != now.get("identity"):
            notes.append(f"{label}: identity was {before.get('identity')}, now {now.get('identity')}")
        for file, digest in before.get("files", {}).items():
            current = now.get("files", {}).get(file)
            if current is None:
                notes.append(f"{label}: file {file} is missing now")
            elif current != digest:
                notes.append(f"{label}: file {file} changed (sha256 {digest[:12]} -> {current[:12]})")
    for node_id, node in old.get("nodes", {}).items():
        for file, digest in node.get("input_files", {}).items():
            current = new.get("nodes", {}).get(node_id, {}).get("input_files", {}).get(file)
            if current != digest:
                notes.append(f"input file {file} of node {node_id} changed")
    return notes


def max_pixel_difference(a: Path, b: Path) -> int | None:
    from PIL import Image, ImageChops

    with Image.open(a) as first, Image.open(b) as second:
        if first.size != second.size or first.mode != second.mode:
            return None
        extrema = ImageChops.difference(first, second).getextrema()
    return max(high for _low, high in extrema) if isinstance(extrema[0], tuple) else extrema[1]


def recorded_status(manifest: dict) -> tuple[str | None, str]:
    """(the node the recorded run failed at, or None; a sentence on how the recorded run ended, '' when it was ok)."""
    status = manifest.get("status")
    failed = next((node_id for node_id, node in manifest["nodes"].items() if node.get("status") == "failed"), None)
    if status == "failed" and failed is not None:
        node = manifest["nodes"][failed]
        error = node.get("error") or manifest.get("error") or "no error recorded"
        return failed, f"the recorded run had failed at node '{failed}' ({node['type']}): {error}"
    if status == "failed":
        return None, f"the recorded run had failed: {manifest.get('error') or 'no error recorded'}"
    if status == "interrupted":
        done = [node_id for node_id, node in manifest["nodes"].items() if node.get("status") in ("ran", "cached")]
        return None, (f"the recorded run was interrupted ({manifest.get('error') or 'no reason recorded'}); it had finished "
                      + (", ".join(done) if done else "no node"))
    return None, ""


def recorded_workflow(run: Path, manifest: dict, allow_paths=(), model_paths=(), consent=None) -> Workflow:
    """The workflow a run folder recorded (its workflow.yaml), loaded to run again.

    Relative paths start from the folder of the workflow file the manifest names, as in the recorded run (not from
    the current folder). A manifest is data anyone can write, so that folder is not trusted for its saying so: files
    are read from the run folder and the folders the user allows (`allow_paths`), and from the recorded workflow's
    folder only while the file there is the one that ran (its sha256 as recorded) and the recorded run read no input
    file that this file, with the recorded overrides, does not name: then reproducing reads nothing that `runner run`
    of that file would not."""
    copy = run / "workflow.yaml"
    text = read_yaml_text(copy)
    recorded = Path(manifest["workflow"]["path"])
    if not recorded.is_absolute():  # manifests written before paths were recorded absolute: the folder is unknown
        recorded = copy
    readable = _vouched_for(recorded, manifest, text, copy, model_paths, consent)
    return load_workflow(recorded, [], text=text, source=str(copy), allow_paths=[run, *allow_paths],
                         model_paths=model_paths, home_readable=readable, consent=consent)


def _vouched_for(original: Path, manifest: dict, text: str, copy: Path, model_paths, consent) -> bool:
    """Whether `original` is the workflow file the run folder's workflow.yaml came from (see `recorded_workflow`)."""
    import hashlib

    from ..language.errors import WorkflowError

    if not original.is_file():  # a regular file (a FIFO named by a manifest must not block the open)
        return False
    try:  # hashed as the manifest hashed it: the text as read
        if hashlib.sha256(read_yaml_text(original).encode("utf-8")).hexdigest() != manifest["workflow"]["sha256"]:
            return False
        ran = load_workflow(original, [], text=text, source=str(copy), model_paths=model_paths, check_files=False,
                            consent=consent)
        named = load_workflow(original, list(manifest["workflow"].get("overrides") or []), model_paths=model_paths,
                              check_files=False, consent=consent)
    except (OSError, WorkflowError, TypeError, KeyError):
        return False
    return input_files(ran) <= input_files(named)


def input_files(workflow: Workflow) -> set[Path]:
    """The real paths of every input file a workflow's nodes read."""
    from ..language.fields import InputFile, iter_marked

    return {(workflow.base_dir / written).resolve() for node in workflow.nodes.values()
            for written, _marker, _path in iter_marked(node.fields, InputFile)}


def reproduce_command(args) -> int:
    run = resolve_run(args.run, args.out, "runner reproduce")
    old = load_manifest(run)
    failed_at, ended = recorded_status(old)
    if ended and not args.quiet:
        print(f"note: {ended}; the outputs it recorded are compared")
    workflow = recorded_workflow(run, old, args.allow_paths, args.model_paths, consent_of(args))
    deterministic = bool(old.get("determinism", {}).get("requested"))
    with Session(out=args.out, allow_private_urls=args.allow_private_urls) as session:
        plan = session.plan(workflow, None, deterministic)
        for node_id, node in old["nodes"].items():
            if isinstance(node.get("batch"), dict) and node_id in plan.tasks:
                # computed in one call with other variants of a sweep: the same call again (its bytes may differ
                # from an unbatched call's in the last bits), the others' images made but not kept
                plan.tasks[node_id].batch = recorded_batch(plan.tasks[node_id], node["batch"])
        outcome = session.run(workflow, plan=plan, deterministic=deterministic, mode="quiet" if args.quiet else "plain",
                              no_cache=True,
                              # the workflow it ran is the recorded one (path, file hash, overrides): a reproduction
                              # of this reproduction finds the same file vouching for the same folder
                              extra={"reproduces": str(run), "workflow": old["workflow"], **command_record(args)})
    new = outcome.manifest
    notes = environment_differences(old, new)
    for note in notes:
        print(f"warning: {note}")
    failed_again = failed_at is not None and new["nodes"].get(failed_at, {}).get("status") == "failed"
    if outcome.exit_code and not failed_again:
        if ended:
            print(ended)
        print(f"the reproduction did not finish: {outcome.error or outcome.status}")
        print(f"run folder: {outcome.folder}")
        return outcome.exit_code
    if failed_again:
        print(f"reproduced the failure: node '{failed_at}' fails again, as in the recorded run "
              f"({new['nodes'][failed_at].get('error', outcome.error)})")
    elif ended:
        print(f"{ended}; the reproduction finished")
    differing = []
    for node_id, node in old["nodes"].items():
        before = node.get("outputs", {})
        after = new["nodes"].get(node_id, {}).get("outputs", {})
        for output, hashes in before.items():
            if after.get(output) != hashes:
                differing.append(f"{node_id}.{output}")
    for node_id, node in old["nodes"].items():
        for name in node.get("published", []):
            if _published_differs(run / name, outcome.folder / name):
                diff = max_pixel_difference(run / name, outcome.folder / name)
                detail = "a different size or mode" if diff is None else f"max pixel difference {diff}"
                differing.append(f"{name} ({detail})")
    compared = sum(len(node.get("outputs", {})) for node in old["nodes"].values())
    if differing:
        print(f"differs: {len(differing)} of {compared} outputs and published images: " + ", ".join(differing))
    else:
        print(f"identical: all {compared} node outputs have the recorded sha256")
    print(f"run folder: {outcome.folder}")
    return 1 if differing or failed_again else 0


def _published_differs(a: Path, b: Path) -> bool:
    from PIL import Image

    if not a.exists() or not b.exists():
        return a.exists() != b.exists()
    with Image.open(a) as first, Image.open(b) as second:
        return first.tobytes() != second.tobytes()
