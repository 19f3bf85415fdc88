"""Where the Hugging Face hub cache is, and which commit a cached revision is (no network, no torch)."""

from __future__ import annotations

import os
import re
from pathlib import Path

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home) / "hub"


def resolve_hub_commit(repo_id: str, revision: str) -> str | None:
    """The commit `revision` points to in the local HF cache (refs/REVISION), or None if not cached."""
    if COMMIT.match(revision):
        return revision
    repo = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / revision
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if (repo / "snapshots" / commit).is_dir() else None
