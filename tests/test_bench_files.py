"""`make bench` must run on a clean clone: its workflows validate where they are (their inputs beside them, inside
the folder the confinement rules let them read), and the hand-written scripts read the same input file."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("name", sorted(path.name for path in BENCH.glob("*.yaml")))
def test_bench_workflow_validates(name, capsys):
    assert run_cli("validate", BENCH / name) == 0, capsys.readouterr().err


def test_the_handwritten_script_reads_the_workflows_input():
    assert "inputs/room.png" in (BENCH / "demo_chain.yaml").read_text()
    assert '"inputs/room.png"' in (BENCH / "handwritten_demo.py").read_text()
    assert (BENCH / "inputs" / "room.png").read_bytes() == (BENCH.parent / "workflows" / "inputs" / "room.png").read_bytes()
