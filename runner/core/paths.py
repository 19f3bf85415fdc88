"""Where runner keeps what outlives a run: the cache folder and the built models inside it."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    return Path(os.environ.get("RUNNER_CACHE_DIR") or Path("outputs") / ".cache")


def models_dir(cache_root: Path) -> Path:
    return Path(os.environ.get("RUNNER_MODELS_DIR") or Path(cache_root) / "models")
