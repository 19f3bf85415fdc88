"""The versions of installed distributions, as `importlib.metadata.version` gives them, read where cheaper.

Every run records the versions of the libraries that can change its outputs (runner.executor.plan), and a fully
cached run should start fast (issue 28): `metadata.version` parses each distribution's METADATA file with the
email parser: for the ten libraries a run records, 2% of a cached run's work (bench/start_time.py). A wheel's
installed folder already says its version in its name (`NAME-VERSION.dist-info`, the wheel and PEP 376 layout), so
the folders on `sys.path` are listed once and read in the order `importlib.metadata` searches them; wherever that
could answer otherwise (an `.egg-info` folder, several folders for one name in one place, a zip on the path, a
name found nowhere) the answer is `metadata.version`'s own.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata

_SEPARATORS = re.compile(r"[-_.]+")


def _normal(name: str) -> str:
    return _SEPARATORS.sub("_", name).lower()


def installed_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """{name: its version, or None when it is not installed} for each distribution name, as metadata.version says."""
    wanted = {_normal(name): name for name in names}
    versions: dict[str, str | None] = {}
    undecided = set(wanted)  # normalized names not yet found (or to be asked of importlib.metadata)
    ask: set[str] = set()
    for entry in sys.path:
        if not undecided:
            break
        matches: dict[str, list[str]] = {}
        try:
            with os.scandir(entry or ".") as items:
                for item in items:
                    stem, _, suffix = item.name.rpartition(".")
                    if suffix in ("dist-info", "egg-info"):
                        key = _normal(stem.partition("-")[0])
                        if key in undecided:
                            matches.setdefault(key, []).append(item.name)
        except NotADirectoryError:  # a zip on the path: metadata looks inside it
            ask |= undecided
            break
        except OSError:
            continue
        for key, found in matches.items():
            undecided.discard(key)
            stem, _, suffix = found[0].rpartition(".")
            version = stem.partition("-")[2]
            if len(found) == 1 and suffix == "dist-info" and version and "-" not in version:
                versions[wanted[key]] = version
            else:
                ask.add(key)
    for key in ask | undecided:
        try:
            versions[wanted[key]] = metadata.version(wanted[key])
        except metadata.PackageNotFoundError:
            versions[wanted[key]] = None
    return {name: versions[name] for name in names}


__all__ = ["installed_versions"]
