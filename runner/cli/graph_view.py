"""`runner graph`: the workflow DAG as a text tree or a Mermaid flowchart."""

from __future__ import annotations

from rich.tree import Tree

from ..language.workflow import Workflow


def _edges(workflow: Workflow) -> list[tuple[str, str, str]]:
    """(from, to, label) for every link, in node order."""
    edges = []
    for node in workflow.nodes.values():
        for link, _accepts, path in node.links():
            target = workflow.nodes[link.node]
            output = link.output or target.type.default_output
            label = f"{output} -> {'.'.join(str(p) for p in path)}"
            edge = (link.node, node.id, label)
            if edge not in edges:
                edges.append(edge)
    return edges


def text_tree(workflow: Workflow) -> Tree:
    dependents = workflow.graph.dependents()
    order = workflow.graph.order()
    tree = Tree(f"[bold]{workflow.name}[/] ({len(order)} nodes)")
    labels: dict[tuple[str, str], list[str]] = {}
    for source, target, label in _edges(workflow):
        labels.setdefault((source, target), []).append(label)
    shown: set[str] = set()
    # depth first, each node's dependents in file order; a loop, not recursion: a chain of any length is fine
    pending = [(tree, node_id, "") for node_id in reversed(order) if not workflow.graph.deps[node_id]]
    while pending:
        branch, node_id, via = pending.pop()
        node = workflow.nodes[node_id]
        text = f"[cyan]{node_id}[/] ({node.type.name})" + (f" [dim]{via}[/]" if via else "")
        if node_id in shown:
            branch.add(text + " [dim](shown above)[/]")
            continue
        shown.add(node_id)
        child = branch.add(text)
        for dependent in reversed(sorted(dependents[node_id], key=order.index)):
            pending.append((child, dependent, ", ".join(labels.get((node_id, dependent), []))))
    return tree


def mermaid(workflow: Workflow) -> str:
    lines = ["flowchart LR"]
    for node_id in workflow.graph.order():
        lines.append(f'    {node_id}["{node_id}<br/><small>{workflow.nodes[node_id].type.name}</small>"]')
    for source, target, label in _edges(workflow):
        lines.append(f"    {source} -->|{label}| {target}")
    return "\n".join(lines) + "\n"
