"""Model sources: what a `model:` value names, its pinned identity, and where its files are.

Identities are cheap (no torch): they feed cache keys before anything runs.
- tiny:NAME          -> the tiny builder's config hash
- local folder       -> sha256 over the weight and config files (cached by path+size+mtime)
- single file        -> the file's sha256 (cached the same way), and the identity of its diffusers config
- hub id             -> the commit the revision resolves to in the local Hugging Face cache
"""

from __future__ import annotations

import json
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..core.hashing import HASHED_SUFFIXES, FileHashCache
from ..core.model_entry import PART_KINDS, PARTS, ModelEntry
from .errors import ModelUnavailable
from .hub_cache import hf_hub_cache, resolve_hub_commit

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
CONFIG_SUFFIXES = (".json", ".txt", ".model")  # what from_single_file reads of a config folder (configs, tokenizers)


# Weight files torch reads with its pickle loader (diffusers and transformers read every single-file checkpoint
# that is not .safetensors or .gguf with torch.load). Pickle can run code when loaded.
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
NOT_PICKLE_SUFFIXES = (".safetensors", ".gguf")
PICKLE_FIX = ("convert to safetensors, or, if you trust it, set allow_pickle: true on the model entry and allow that with "
              "--allow-pickle NAME")
# how diffusers and transformers say that the safetensors file they were asked for is not there
NO_SAFETENSORS = re.compile(r"(no file named|does not appear to have (a )?files? named)[^\n]*\.safetensors")


class PickleRefused(ModelUnavailable):
    """Pickle weights of a model whose entry does not say allow_pickle: true. `what` is the finding, `hint` the fix."""

    def __init__(self, what: str, hint: str = PICKLE_FIX):
        super().__init__(f"{what}: {hint}")
        self.what, self.hint = what, hint


@dataclass(frozen=True)
class ModelSource:
    entry: ModelEntry
    kind: str  # tiny | folder | file | hub
    location: str  # tiny name, absolute path, or hub id
    # ((part, quantization), ...): the components a node's quantize: loads quantized (runner.models.quantize)
    quantize: tuple = ()

    @property
    def label(self) -> str:
        return self.entry.source

    def to_data(self) -> dict:
        """As plain JSON-able data, the form tasks carry it in (to another process or machine)."""
        return {"entry": self.entry.model_dump(exclude_defaults=True), "kind": self.kind, "location": self.location}

    @classmethod
    def from_data(cls, data: dict) -> "ModelSource":
        return cls(ModelEntry.model_validate(data["entry"]), data["kind"], data["location"])

    def local_paths(self) -> tuple[set[Path], set[Path]]:
        """(files, folders) on this machine that the model is made of, for what follows their changes (`watch`): a
        single file and its local config folder, a model folder, and a swapped-in local VAE. Hub and tiny models
        have none (their files are the hub cache's, and runner's own)."""
        files: set[Path] = set()
        folders: set[Path] = set()
        if self.kind == "file":
            files.add(Path(self.location))
            config = self.entry.config
            if config and Path(config).is_absolute():  # a local config folder (resolved by classify)
                folders.add(Path(config))
        elif self.kind == "folder":
            folders.add(Path(self.location))
        # a swapped-in VAE or text encoder, an embedding: resolved to its path when it is local
        for value in [getattr(self.entry, part) for part in PARTS] + list(self.entry.embeddings.values()):
            if value and Path(value).is_absolute():
                (folders if Path(value).is_dir() else files).add(Path(value))
        return files, folders


def describe(entry: ModelEntry, base_dir: Path, hash_cache: FileHashCache, kind: str = "pipeline",
             roots=()) -> tuple[dict, str]:
    """(the source as plain data, its identity): what a plan needs of a model, without loading it. `kind` is what
    the place it is used expects (runner.language.fields.ModelField), `roots` the model folders
    (runner.models.model_folders) a bare name is looked for in."""
    source = classify(entry, base_dir, roots, kind)
    if source.kind != "tiny":  # tiny models are built as safetensors; their folder may not exist yet
        refuse_pickle(source, local_folder(source, Path()))
    if source.kind == "file":
        from .single_file import check_layout

        check_layout(Path(source.location), source.label)
    return source.to_data(), identity(source, hash_cache)


class ConfigUnusable(ModelUnavailable):
    """The model entry's `config:` cannot serve: the problem is located at that field."""

    entry_field = "config"


def single_file_config(entry: ModelEntry, kind: str, base_dir: Path) -> ModelEntry:
    """The entry with its `config:` (a single file's diffusers config) resolved as a source is: a local folder as
    its absolute path. Only single files take one; a folder must hold model_index.json."""
    if entry.config is None:
        return entry
    if kind != "file":
        raise ConfigUnusable(f"config: is for single-file checkpoints, and model '{entry.source}' is a "
                             f"{'tiny model' if kind == 'tiny' else 'hub model' if kind == 'hub' else 'diffusers folder'} "
                             "with its own config", "remove config: from this entry")
    try:
        config = classify(ModelEntry(source=entry.config), base_dir)
    except ModelUnavailable as exc:
        raise ConfigUnusable(f"config '{entry.config}' of model '{entry.source}': {exc}", exc.hint) from None
    if config.kind == "file" or (config.kind == "folder" and not (Path(config.location) / "model_index.json").is_file()):
        raise ConfigUnusable(
            f"config '{entry.config}' of model '{entry.source}' is not a diffusers pipeline folder (no model_index.json "
            f"in {config.location})", "name a diffusers folder of the same architecture (model_index.json, unet/, "
            "vae/, text_encoder/, tokenizer/, scheduler/; the weights are not needed), a hub id or tiny:NAME")
    return entry.model_copy(update={"config": config.location if config.kind == "folder" else entry.config})


def config_source(source: ModelSource) -> ModelSource | None:
    """The source of a single file's `config:` (already resolved by classify), None when it has none."""
    config = source.entry.config
    if config is None:
        return None
    return classify(ModelEntry(source=config), Path())  # a local folder's path is absolute by now


def default_config_source(source: ModelSource) -> ModelSource | None:
    """For a single file of a transformer family (SD3 / SD3.5, FLUX.1) without `config:`: diffusers' repository for
    its architecture (its config files are what the file is read with); None for the others."""
    if source.kind != "file" or source.entry.config:
        return None
    from . import families
    from .single_file import file_keys

    family = families.from_files(source)
    if family is None or family.single_file_config is None:
        return None
    repo = family.single_file_config(file_keys(Path(source.location)) or [])
    return ModelSource(ModelEntry(source=repo), "hub", repo)


def _what_is(path: Path) -> str | None:
    """"folder", "file", or None when nothing is there, or the name cannot be (too long for the file system, ...)."""
    try:
        return "folder" if path.is_dir() else "file" if path.is_file() else None
    except OSError:
        return None


def classify(entry: ModelEntry, base_dir: Path, roots=(), kind: str = "pipeline") -> ModelSource:
    """What the entry's source names. A relative path is looked for in the workflow's folder first, then (a name
    that is not ./ or ../) in the model folders `roots` for `kind`; what is found nowhere is a hub id if it reads as
    one (org/name, not a weight file name), else ModelUnavailable listing every folder looked in."""
    from .model_folders import WEIGHT_SUFFIXES, find_model, looks_local

    for part in PARTS:  # resolved here, as the source is, so that the task carries where their files are
        value = getattr(entry, part)
        if value:
            entry = entry.model_copy(update={part: part_location(classify(ModelEntry(source=value), base_dir, roots,
                                                                          PART_KINDS[part]))})
    if entry.embeddings:
        entry = entry.model_copy(update={"embeddings": {
            token: part_location(classify(ModelEntry(source=value), base_dir, roots, "embedding"))
            for token, value in entry.embeddings.items()}})
    source = entry.source
    if source.startswith("tiny:"):
        single_file_config(entry, "tiny", base_dir)
        return ModelSource(entry, "tiny", source[len("tiny:"):])
    path = Path(os.path.expanduser(source))
    if not path.is_absolute():
        path = base_dir / path
    looked = [path.parent]
    if _what_is(path) is None and roots and looks_local(source):
        found, folders = find_model(source, kind, roots)
        looked += folders
        if found is not None:
            path = found
    if _what_is(path) == "folder":
        single_file_config(entry, "folder", base_dir)
        return ModelSource(entry, "folder", str(path.resolve()))
    if _what_is(path) == "file":
        return ModelSource(single_file_config(entry, "file", base_dir), "file", str(path.resolve()))
    if HUB_ID.match(source) and not source.startswith((".", "/")) and not source.lower().endswith(WEIGHT_SUFFIXES):
        single_file_config(entry, "hub", base_dir)
        return ModelSource(entry, "hub", source)
    if len(looked) > 1:
        shown = ", ".join(str(folder) for folder in looked[:12]) + (f" and {len(looked) - 12} more" if len(looked) > 12 else "")
        raise ModelUnavailable(
            f"model '{source}' was not found: looked in the workflow's folder and the model folders ({shown})",
            "put it into one of these folders (ComfyUI layout: checkpoints/, controlnet/, loras/, vae/, ...), add its "
            "folder with --model-path DIR or RUNNER_MODEL_PATHS, or fix the name")
    if looks_local(source) and source.lower().endswith(WEIGHT_SUFFIXES):
        raise ModelUnavailable(
            f"model '{source}' is not in the workflow's folder ({looked[0]}), and no model folders are set to look in",
            "name the folder that holds it with --model-path DIR or RUNNER_MODEL_PATHS (a folder, ComfyUI layout or "
            "flat, or ComfyUI's extra_model_paths.yaml), or write its path relative to the workflow file's folder")
    raise ModelUnavailable(
        f"model source '{source}' is neither an existing folder or file (looked at {path}) nor a hub id (org/name) "
        "nor tiny:NAME",
        "fix the path (relative to the workflow file's folder), or write a hub id such as "
        "stable-diffusion-v1-5/stable-diffusion-v1-5, or tiny:sd15 for an offline test",
    )


def part_location(source: ModelSource) -> str:
    """What a resolved part (`vae:`, `text_encoder:`, ...) says: tiny:NAME, an absolute path, or a hub id."""
    return f"tiny:{source.location}" if source.kind == "tiny" else source.location


def part_source(source: ModelSource, part: str) -> ModelSource | None:
    """The part a model entry names (`vae:`, `text_encoder:`, ...; resolved by classify), as a source of its own."""
    value = getattr(source.entry, part)
    if not value:
        return None
    return classify(ModelEntry(source=value, revision=None, allow_pickle=source.entry.allow_pickle), Path("/"),
                    kind=PART_KINDS[part])


def embedding_sources(source: ModelSource) -> dict[str, ModelSource]:
    """The textual-inversion embeddings a model entry names (resolved by classify), by token."""
    return {token: classify(ModelEntry(source=value, allow_pickle=source.entry.allow_pickle), Path("/"),
                            kind="embedding") for token, value in source.entry.embeddings.items()}


def vae_source(source: ModelSource) -> ModelSource | None:
    """The VAE a model entry swaps in (`vae:`), as a source of its own."""
    return part_source(source, "vae")


def identity(source: ModelSource, hash_cache: FileHashCache) -> str:
    """A string that changes whenever the model's weights or configs change (a swapped-in VAE's too)."""
    entry = source.entry
    extras = "".join(f";{k}={v}" for k, v in (("variant", entry.variant), ("subfolder", entry.subfolder),
                                              ("weight_name", entry.weight_name)) if v)
    for part in PARTS:
        swapped = part_source(source, part)
        if swapped is not None:
            extras += f";{part}={identity(swapped, hash_cache)}"
    for token, embedding in sorted(embedding_sources(source).items()):
        extras += f";embedding {json.dumps(token)}={identity(embedding, hash_cache)}"
    if source.kind == "tiny":
        from .tiny import tiny_identity

        return tiny_identity(source.location) + extras
    if source.kind == "folder":
        return f"folder:{hash_cache.tree_digest(Path(source.location))}" + extras
    if source.kind == "file":
        config = config_source(source) or default_config_source(source)
        if config is not None and config.kind == "folder":  # only its config files are read, not its weights
            configured = f"folder:{hash_cache.tree_digest(Path(config.location), CONFIG_SUFFIXES)}"
        elif config is not None:
            configured = identity(config, hash_cache)
        else:
            from .single_file import packaged_digest

            configured = f"packaged:{packaged_digest()}"
        return f"file:{hash_cache.file_digest(Path(source.location))};config={configured}" + extras
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


# ------------------------------------------------------------ pickle weights
def pickle_weights(path: Path) -> list[Path]:
    """The pickle weight files that loading `path` (a single-file checkpoint or a model folder) would read.

    A file is pickle unless it is .safetensors or .gguf. In a folder, each folder that holds weights is looked at:
    a diffusers pipeline's component folders (those model_index.json names; a Kandinsky-style folder of several
    pipelines, each one's), otherwise the folder itself. Where a folder holds any .safetensors file the loaders
    (asked for safetensors) read that, and its pickle files are not counted.
    """
    if path.is_file():
        return [] if path.suffix.lower() in NOT_PICKLE_SUFFIXES else [path]
    found = []
    for folder in weight_folders(path):
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if not any(p.suffix.lower() == ".safetensors" for p in files):
            found.extend(p for p in files if p.suffix.lower() in PICKLE_SUFFIXES)
    return found


def has_safetensors(path: Path) -> bool:
    """Whether any folder that loading `path` reads weights from holds a .safetensors file (or `path` is one)."""
    if path.is_file():
        return path.suffix.lower() == ".safetensors"
    return any(p.suffix.lower() == ".safetensors" for folder in weight_folders(path) for p in folder.iterdir())


def weight_folders(folder: Path) -> list[Path]:
    """The folders that loading the model folder `folder` reads weight files from."""
    if not folder.is_dir():
        return []
    index = folder / "model_index.json"
    if index.is_file():
        try:
            data = json.loads(index.read_text())
        except (OSError, ValueError):
            data = {}
        return [folder / name for name, value in (data.items() if isinstance(data, dict) else ())
                if isinstance(value, list) and value and value[0] is not None and (folder / name).is_dir()]
    pipelines = sorted(sub for sub in folder.iterdir() if sub.is_dir() and (sub / "model_index.json").is_file())
    if pipelines:
        return [weights for sub in pipelines for weights in weight_folders(sub)]
    return [folder]


def refuse_pickle(source: ModelSource, folder: Path | None) -> None:
    """PickleRefused when loading the model from `folder` (its files on this machine) would read pickle weights
    and its entry does not say allow_pickle: true."""
    entry = source.entry
    if entry.allow_pickle or folder is None or not folder.exists():
        return
    if entry.subfolder and (folder / entry.subfolder).is_dir():
        folder = folder / entry.subfolder
    files = pickle_weights(folder)
    if not files:
        return
    if folder.is_file():
        kind = ("a pickle checkpoint" if folder.suffix.lower() in PICKLE_SUFFIXES else
                "not a .safetensors file, so it would be read with torch's pickle loader")
        what = f"model '{source.label}' is {kind} ({folder})"
    else:
        names = [f.relative_to(folder).as_posix() for f in files]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        what = f"model '{source.label}' has pickle weights and no safetensors beside them ({shown} in {folder})"
    raise PickleRefused(f"{what}; pickle can run code when loaded, so runner refuses it")


@contextmanager
def missing_safetensors_explained(source: ModelSource):
    """Around a library load asked for safetensors only: its "no file named ....safetensors" (a model downloaded
    now, whose files could not be looked at before) becomes a ModelUnavailable that says why and what to do."""
    try:
        yield
    except (OSError, ValueError) as exc:
        if source.entry.allow_pickle or not NO_SAFETENSORS.search(str(exc)):
            raise
        said = " ".join(str(exc).split())
        raise ModelUnavailable(
            f"model '{source.label}' has no safetensors weights where they were looked for ({said[:300]}); "
            "runner loads only safetensors unless the model entry says allow_pickle: true. If the model has only "
            f"pickle weights (.bin, .ckpt, .pt): {PICKLE_FIX}") from None


def model_record(source: ModelSource, model_identity: str, models_dir: Path, hash_cache: FileHashCache) -> dict:
    """What a manifest says about a model: source, revision, resolved commit, and the sha256 of each weight/config file."""
    entry = source.entry
    record = {"source": entry.source, "kind": source.kind, "identity": model_identity, "revision": entry.revision,
              "variant": entry.variant}
    if source.kind == "hub":
        record["commit"] = resolve_hub_commit(source.location, entry.revision or "main")
    if source.kind in ("folder", "file"):
        record["path"] = source.location  # where it was found: beside the workflow or in a model folder
    for part in PARTS:
        swapped = part_source(source, part)
        if swapped is not None:
            record[part] = {k: v for k, v in model_record(swapped, identity(swapped, hash_cache), models_dir,
                                                          hash_cache).items() if k not in ("revision", "variant")}
    if source.entry.embeddings:
        record["embeddings"] = {token: {k: v for k, v in model_record(embedding, identity(embedding, hash_cache),
                                                                      models_dir, hash_cache).items()
                                        if k not in ("revision", "variant")}
                                for token, embedding in embedding_sources(source).items()}
    folder = local_folder(source, models_dir)
    if folder is not None and folder.exists():
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in HASHED_SUFFIXES)
        record["files"] = {(f.name if folder.is_file() else f.relative_to(folder).as_posix()): hash_cache.file_digest(f)
                           for f in files}
        hash_cache.save()
    return record


# ------------------------------------------------------------------ hub cache
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
            "and the hub cannot be reached from here",
            f"download it where there is internet with `{download_command(source)}` (huggingface_hub's CLI) and copy "
            "the cache folder here (or set HF_HUB_CACHE), or point the model at a local folder, or use a tiny: model "
            "for offline tests",
        )
    return {"revision": revision, "cache_dir": str(hf_hub_cache())}


def download_command(source: ModelSource) -> str:
    """The command that puts this hub model (at its revision) into the Hugging Face cache: `hf download` (the
    `huggingface-cli` of older huggingface_hub releases is gone from 1.x on)."""
    revision = source.entry.revision
    return f"hf download {source.location}" + (f" --revision {revision}" if revision and revision != "main" else "")
