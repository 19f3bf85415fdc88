"""The generated reference pages (docs/reference/cli.md, nodes.md) match the code they are generated from."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from runner.cli.parser import build_parser
from runner.cli.reference import cli_reference, nodes_reference, write_pages
from runner.language.fields import nested_models
from runner.nodes import NODE_TYPES

REPO = Path(__file__).resolve().parent.parent
CLI_PAGE = REPO / "docs" / "reference" / "cli.md"
NODES_PAGE = REPO / "docs" / "reference" / "nodes.md"


def subcommands(parser: argparse.ArgumentParser):
    """Every parser below `parser` (run, watch, ..., import, import comfyui), in parser order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from subcommands(sub)


def node_sections(text: str) -> dict[str, str]:
    """Node type name -> its section of nodes.md (from its heading to the next one)."""
    sections = {}
    for chunk in text.split("\n## `")[1:]:
        name, _, body = chunk.partition("`")
        sections[name] = body
    return sections


def test_cli_page_equals_the_generated_text():
    committed = CLI_PAGE.read_text(encoding="utf-8")
    assert committed == cli_reference(), "docs/reference/cli.md is stale: run `make docs`"


def test_api_page_equals_the_servers_openapi_schema():
    from runner.cli.api_reference import api_reference

    committed = (REPO / "docs" / "reference" / "api.md").read_text(encoding="utf-8")
    assert committed == api_reference(), "docs/reference/api.md is stale: run `make docs`"
    for route in ("POST /v1/jobs", "GET /v1/jobs/{job_id}/events", "DELETE /v1/jobs/{job_id}", "POST /prompt"):
        assert f"## `{route}`" in committed


def test_nodes_page_equals_the_generated_text():
    committed = NODES_PAGE.read_text(encoding="utf-8")
    assert committed == nodes_reference(), "docs/reference/nodes.md is stale: run `make docs`"


def test_every_command_and_option_is_in_the_cli_page():
    text = CLI_PAGE.read_text(encoding="utf-8")
    commands = list(subcommands(build_parser()))
    assert {"runner run", "runner import", "runner import comfyui", "runner cache"} <= {sub.prog for sub in commands}
    for sub in commands:
        heading = f"## `{sub.prog}`\n"
        assert heading in text, f"no section for {sub.prog}"
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in section, f"{sub.prog} {flag} missing"


def test_every_node_type_and_field_is_in_the_nodes_page():
    sections = node_sections(NODES_PAGE.read_text(encoding="utf-8"))
    assert list(sections) == list(NODE_TYPES)
    for name, node_type in NODE_TYPES.items():
        models = [node_type.fields, *nested_models(node_type.fields).values()]
        for model in models:
            for field_name, info in model.model_fields.items():
                assert f"| `{info.alias or field_name}` |" in sections[name], f"{name}: field {field_name} missing"
        for item_field in nested_models(node_type.fields):
            assert f"Each item of `{item_field}`" in sections[name]
        for output in node_type.outputs:
            assert f"`{output}`" in sections[name]
    assert "Each item of `lora`" in sections["txt2img"] and "Each item of `controlnet`" in sections["txt2img"]


def test_the_cli_comparison_catches_a_new_option():
    """The equality check above is not vacuous: an option added to the parser changes the text."""
    before = cli_reference()
    parser = build_parser()
    run = next(sub for sub in subcommands(parser) if sub.prog == "runner run")
    run.add_argument("--fake-option", metavar="X", default="7", help="a fake | option")
    after = cli_reference(parser)
    assert after != before
    assert "| `--fake-option X` | text | `7` | a fake \\| option |" in after


def test_the_nodes_comparison_catches_a_new_node_type(monkeypatch):
    """Declaring a node type changes the text."""
    from runner.nodes.base import NodeType
    from runner.nodes.images import Canny

    before = nodes_reference()
    edges2 = NodeType("edges2", Canny, {"image": "image"}, 1, "Edges again.", lambda *a: {})
    monkeypatch.setitem(NODE_TYPES, "edges2", edges2)
    after = nodes_reference()
    assert after != before
    assert "## `edges2`\n\nEdges again." in after


def test_usage_lines_do_not_depend_on_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = cli_reference()
    monkeypatch.setenv("COLUMNS", "400")
    assert cli_reference() == narrow


def test_the_entry_point_writes_both_pages_without_importing_torch(tmp_path):
    """`python -m runner.cli.reference FOLDER` (what `make docs` runs) is cheap: no torch, no diffusers."""
    script = ("import runpy, sys; sys.argv = ['reference', sys.argv[1]]; "
              "runpy.run_module('runner.cli.reference', run_name='__main__'); "
              "print([name for name in ('torch', 'diffusers', 'transformers') if name in sys.modules])")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "reference")], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "reference" / "cli.md").read_text(encoding="utf-8") == CLI_PAGE.read_text(encoding="utf-8")
    assert (tmp_path / "reference" / "nodes.md").read_text(encoding="utf-8") == NODES_PAGE.read_text(encoding="utf-8")


def test_write_pages_makes_the_folder(tmp_path):
    written = write_pages(tmp_path / "a" / "b")
    assert [path.name for path in written] == ["cli.md", "nodes.md"]
    assert written[0].read_text(encoding="utf-8") == cli_reference()
