"""The distributions runner needs on a GPU machine that already has PyTorch: runner's dependencies and theirs, as
installed here (their markers evaluated for this machine), without torch and opencv; plus pytest and torchao for the
GPU tests.

    python bench/gpu/dependencies.py    # prints NAME==VERSION lines (what bench/gpu/requirements.txt lists)
"""

from __future__ import annotations

import re
from importlib import metadata

from packaging.markers import Marker

EXCLUDED = {"torch", "numpy", "opencv-python-headless"}  # the machine's own (torch and numpy); not used (opencv)
EXTRA = ("pytest", "setuptools", "torchao")  # the GPU tests (torchao: quantize int8/fp8); building the editable install of runner


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(name: str) -> list[str]:
    """The names a distribution requires here (no extras; markers evaluated for this machine)."""
    found = []
    for requirement in metadata.distribution(name).requires or []:
        text, _, marker = requirement.partition(";")
        if marker and not Marker(marker).evaluate({"extra": ""}):
            continue
        found.append(re.match(r"^\s*([A-Za-z0-9_.\-]+)", text).group(1))
    return found


def closure() -> dict[str, str]:
    """normalised name -> 'Name==version' for everything runner needs here (EXCLUDED and their own needs left out)."""
    seen: dict[str, str] = {}
    stack = [*_requirements("runner"), *EXTRA]
    while stack:
        name = stack.pop()
        if normal(name) in seen or normal(name) in EXCLUDED:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[normal(name)] = f"{distribution.metadata['Name']}=={distribution.version}"
        stack += _requirements(name)
    return seen


if __name__ == "__main__":
    for line in sorted(closure().values(), key=str.lower):
        print(line)
