"""Model sources: what a `model:` value names, its pinned identity, and where its files are.

Identities are cheap (no torch): they feed cache keys before anything runs.
- tiny:NAME          -> the tiny builder's config hash
- local folder/file  -> sha256 over the weight and config files (cached by path+size+mtime)
- hub id             -> the commit the revision resolves to in the local Hugging Face cache
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from ..language.refs import MODEL_REF_PREFIX
from ..language.workflow import ModelEntry

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
HASHED_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".bin", ".ckpt", ".pt", ".pth")


class ModelUnavailable(RuntimeError):
    """The model cannot be loaded here; the message says how to get it."""


@dataclass(frozen=True)
class ModelSource:
    entry: ModelEntry
    kind: str  # tiny | folder | file | hub
    location: str  # tiny name, absolute path, or hub id

    @property
    def label(self) -> str:
        return self.entry.source


def resolve_entry(ref: str, models: dict[str, ModelEntry]) -> ModelEntry:
    """`$models.NAME` or an inline source string -> ModelEntry."""
    if ref.startswith(MODEL_REF_PREFIX):
        return models[ref[len(MODEL_REF_PREFIX):]]
    return ModelEntry(source=ref)


def classify(entry: ModelEntry, base_dir: Path) -> ModelSource:
    source = entry.source
    if source.startswith("tiny:"):
        return ModelSource(entry, "tiny", source[len("tiny:"):])
    path = Path(os.path.expanduser(source))
    if not path.is_absolute():
        path = base_dir / path
    if path.is_dir():
        return ModelSource(entry, "folder", str(path.resolve()))
    if path.is_file():
        return ModelSource(entry, "file", str(path.resolve()))
    if HUB_ID.match(source) and not source.startswith((".", "/")):
        return ModelSource(entry, "hub", source)
    raise ModelUnavailable(
        f"model source '{source}' is neither an existing folder or file (looked at {path}) nor a hub id (org/name) "
        "nor tiny:NAME; fix the path or the id"
    )


def identity(source: ModelSource, hash_cache: "FileHashCache") -> str:
    """A string that changes whenever the model's weights or configs change."""
    entry = source.entry
    extras = "".join(f";{k}={v}" for k, v in (("variant", entry.variant), ("subfolder", entry.subfolder)) if v)
    if source.kind == "tiny":
        from .tiny import tiny_identity

        return tiny_identity(source.location) + extras
    if source.kind in ("folder", "file"):
        return f"{source.kind}:{hash_cache.tree_digest(Path(source.location))}" + extras
    commit = resolve_hub_commit(source.location, entry.revision or "main")
    return f"hub:{source.location}@{commit or 'unresolved:' + (entry.revision or 'main')}" + extras


def local_folder(source: ModelSource, models_dir: Path) -> Path | None:
    """Where the model's files are on this machine, if they are (a tiny model only once built)."""
    if source.kind == "tiny":
        from .tiny import tiny_folder

        folder = tiny_folder(source.location, models_dir / "tiny")
        return folder if folder.is_dir() else None
    if source.kind in ("folder", "file"):
        return Path(source.location)
    commit = resolve_hub_commit(source.location, source.entry.revision or "main")
    if commit is None:
        return None
    return hf_hub_cache() / ("models--" + source.location.replace("/", "--")) / "snapshots" / commit


def model_record(source: ModelSource, model_identity: str, models_dir: Path, hash_cache: "FileHashCache") -> dict:
    """What a manifest says about a model: source, revision, resolved commit, and the sha256 of each weight/config file."""
    entry = source.entry
    record = {"source": entry.source, "kind": source.kind, "identity": model_identity, "revision": entry.revision,
              "variant": entry.variant}
    if source.kind == "hub":
        record["commit"] = resolve_hub_commit(source.location, entry.revision or "main")
    folder = local_folder(source, models_dir)
    if folder is not None and folder.exists():
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in HASHED_SUFFIXES)
        record["files"] = {(f.name if folder.is_file() else f.relative_to(folder).as_posix()): hash_cache.file_digest(f)
                           for f in files}
        hash_cache.save()
    return record


# ------------------------------------------------------------------ hub cache
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


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = re.sub(r"^https?://", "", endpoint).split("/")[0].split(":")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def prepare_hub(source: ModelSource) -> dict:
    """from_pretrained keyword arguments for a hub model; fails fast when it is neither cached nor downloadable."""
    entry = source.entry
    revision = entry.revision or "main"
    if resolve_hub_commit(source.location, revision):
        # the same cache folder that the commit was resolved from (huggingface_hub reads its env only at import)
        return {"revision": revision, "local_files_only": True, "cache_dir": str(hf_hub_cache())}
    if not hub_reachable():
        raise ModelUnavailable(
            f"model '{source.location}' (revision {revision}) is not in the local Hugging Face cache ({hf_hub_cache()}) "
            "and the hub cannot be reached from here. Download it where there is internet with "
            f"`huggingface-cli download {source.location}` and copy the cache folder here (or set HF_HUB_CACHE), "
            "or point the model at a local folder, or use a tiny: model for offline tests."
        )
    return {"revision": revision, "cache_dir": str(hf_hub_cache())}


# ----------------------------------------------------------------- file hashes
class FileHashCache:
    """sha256 of files, remembered by (path, size, mtime) in a JSON file so big weights hash once."""

    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[str, list] | None = None
        self._dirty = False

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            try:
                self._entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def file_digest(self, path: Path) -> str:
        stat = path.stat()
        entries = self._load()
        key = str(path.resolve())
        known = entries.get(key)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            return known[2]
        digest = sha256_file(path)
        entries[key] = [stat.st_size, stat.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def tree_digest(self, root: Path) -> str:
        """One digest over every weight/config file (relative path + content hash)."""
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in HASHED_SUFFIXES)
        hasher = hashlib.sha256()
        for file in files:
            relative = file.name if root.is_file() else file.relative_to(root).as_posix()
            hasher.update(f"{relative}\0{self.file_digest(file)}\n".encode())
        self.save()
        return hasher.hexdigest()[:16]

    def save(self) -> None:
        if not self._dirty or self._entries is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self._entries))
        os.replace(tmp, self.path)
        self._dirty = False


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()
