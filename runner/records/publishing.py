"""Publishing: after each node, the files nodes with a publish step write into the run folder (save_image's PNGs,
with the workflow and A1111 parameters embedded), and the resolved workflow the run folder records."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.atomic import write_atomic
from ..core.paths import models_dir
from ..executor.cache import NodeCache
from ..executor.engine import NodeResult
from ..executor.plan import Plan, Task
from ..language.refs import Link
from ..language.workflow import Workflow
from ..language.yaml_source import dump_yaml
from ..nodes import NODE_TYPES
from .png_text import with_text
from .provenance import a1111_name, a1111_parameters, png_size


class RunFolderUnwritable(Exception):
    """A file of the run folder could not be written (a full disk, say) after nodes ran: the run fails (exit 1)."""


def resolved_workflow_text(workflow: Workflow, plan: Plan) -> str:
    """The workflow as run: overrides applied, random seeds replaced by the drawn ones."""
    document = json.loads(json.dumps(workflow.document))
    document.pop("sweep", None)  # a run is one variant: its swept values are among the overrides
    if workflow.seed == "random":
        document["seed"] = plan.workflow_seed
    for node_id, node in workflow.nodes.items():
        if node.seed == "random" and node_id in plan.seeds:
            document["nodes"][node_id]["seed"] = plan.seeds[node_id]
    header = f"# resolved by runner from {workflow.path}" + (f" with {' '.join('--set ' + o for o in workflow.overrides)}" if workflow.overrides else "")
    return header + "\n" + dump_yaml(document, sort_keys=False, allow_unicode=True)


class Publisher:
    """After each node (ran or cached), lets nodes with a publish step write files into the run folder."""

    def __init__(self, workflow: Workflow, plan: Plan, cache: NodeCache, run_dir: Path, resolved_text: str):
        self.workflow, self.plan, self.cache, self.run_dir, self.resolved_text = workflow, plan, cache, run_dir, resolved_text
        self.files: dict[str, list[str]] = {}

    def __call__(self, task: Task, result: NodeResult) -> None:
        node_type = NODE_TYPES[task.type_name]
        if node_type.publish is not None:
            try:
                self.files[task.node_id] = node_type.publish(PublishContext(self, task), self.workflow.nodes[task.node_id].fields)
            except OSError as exc:
                raise RunFolderUnwritable(f"node '{task.node_id}' ({task.type_name}) could not write its files into "
                                          f"{self.run_dir}: {exc.strerror or exc}; free some space or choose another "
                                          "--out (the node's result is cached: the next run only writes the files)") from None


class PublishContext:
    def __init__(self, publisher: Publisher, task: Task):
        self.publisher = publisher
        self.task = task
        self.node_id = task.node_id

    def image_sources(self, value) -> list[tuple[Link, int]]:
        sources = []
        for link in value if isinstance(value, list) else [value]:
            _kind, files = self._files(link)
            sources.extend((link, index) for index in range(len(files)))
        return sources

    def _files(self, link: Link) -> tuple[str, list[Path]]:
        return self.publisher.cache.output(self.task.upstream[link.node], link.output)

    def _weights_hash(self, source: dict) -> str | None:
        """sha256 of a model's main weights, as A1111's "Model hash" (the file itself, or the UNet's of a folder)."""
        from ..models.sources import ModelSource, local_folder

        folder = local_folder(ModelSource.from_data(source), models_dir(self.publisher.cache.root))
        if folder is None or not folder.exists():
            return None
        if folder.is_file():
            return self.publisher.cache.hashes.file_digest(folder)
        weights = sorted((folder / "unet").glob("*.safetensors")) or sorted(folder.glob("*.safetensors"))
        return self.publisher.cache.hashes.file_digest(weights[0]) if weights else None

    def _a1111_text(self, made_by: Task, seed: int | None, size: tuple[int, int]) -> str | None:
        """A1111's `parameters` text for an image `made_by` a node, from what that node recorded of its call (the
        model it ran: `checkpoint`; its LoRAs by identity) and the task's model sources; None when it recorded
        none (an image node, an entry from before the record was kept)."""
        info = (self.publisher.cache.entry(made_by.key) or {}).get("info", {})
        ref = info.get("checkpoint")
        if ref not in made_by.models:
            return None
        ref_of = {identity: lora_ref for lora_ref, identity in made_by.model_ids.items()}
        loras = [(a1111_name(made_by.models[ref_of[item["model"]]]["entry"]["source"]), item["scale"],
                  self._weights_hash(made_by.models[ref_of[item["model"]]]))
                 for item in info.get("loras", []) if item.get("model") in ref_of]
        return a1111_parameters(info, seed, size, made_by.models[ref]["entry"]["source"],
                                self._weights_hash(made_by.models[ref]), loras)

    def publish_png(self, source, name: str) -> str:
        link, index = source if isinstance(source, tuple) else (source, 0)
        plan = self.publisher.plan
        seed = plan.seeds.get(link.node)
        texts = {
            "runner:workflow": self.publisher.resolved_text,
            "runner:workflow_path": str(self.publisher.workflow.path.resolve()),
            "runner:node": link.node,
            "runner:seed": json.dumps({"workflow_seed": plan.workflow_seed, "node_seed": seed}),
        }
        pixels = self.publisher.cache.read_output(self.task.upstream[link.node], link.output,
                                                  lambda _kind, paths: paths[index].read_bytes())
        parameters = self._a1111_text(plan.tasks[link.node], seed, png_size(pixels))
        if parameters:
            texts["parameters"] = parameters
        data = with_text(pixels, texts)
        write_atomic(self.publisher.run_dir / name, data)
        return name
