"""`runner import comfyui FILE.json|IMAGE.png [-o OUT.yaml]`: a ComfyUI graph as a runner workflow file."""

from __future__ import annotations

import sys
from pathlib import Path

from ..importers.comfyui.convert import convert, read_prompt, validate, workflow_name
from ..core.errors import CommandError, Location, Problem
from .output_file import write_output


def import_command(args) -> int:
    source: Path = args.file
    target: str | None = None if args.out == "-" else args.out
    out = Path(target) if target else None  # an empty name is refused when written, after the checks of the graph
    if out is not None and out.exists() and source.exists() and out.resolve() == source.resolve():
        raise CommandError([Problem(Location(f"-o {out}"), (), "the output file is the ComfyUI file itself",
                                     "write the workflow to another file, e.g. -o workflow.yaml")])
    prompt, found_in = read_prompt(source)
    out_dir = (out.parent if out is not None else Path.cwd()).resolve()
    text, imported = convert(prompt, source, out_dir, found_in, workflow_name(out or source))
    validate(text, imported, out, out_dir, source)
    if target is None:
        sys.stdout.write(text)
    else:
        write_output(target, text, option="-o", force=args.force)
        print(f"wrote {target}: {len(imported.nodes)} nodes, {len(imported.models)} models", file=sys.stderr)
    for path, name in imported.images:
        if not (out_dir / path).is_file():
            print(f"note: ComfyUI's input image '{name}' is not beside {source.name}: put it at {out_dir / path} "
                  "before running", file=sys.stderr)
    return 0
