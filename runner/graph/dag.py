"""The workflow as a graph: dependencies, order, what a target needs, cycles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Graph:
    deps: dict[str, list[str]]  # node id -> ids it reads from, in field order

    def order(self, only: set[str] | None = None) -> list[str]:
        """Topological order, ties broken by the order nodes appear in the file; raises ValueError on a cycle."""
        rank = {node: index for index, node in enumerate(self.deps)}
        nodes = set(self.deps) if only is None else set(only)
        remaining = {n: {d for d in self.deps[n] if d in nodes} for n in nodes}
        ordered: list[str] = []
        ready = sorted((n for n, d in remaining.items() if not d), key=rank.__getitem__)
        while ready:
            node = ready.pop(0)
            ordered.append(node)
            for other, needs in remaining.items():
                if node in needs:
                    needs.discard(node)
                    if not needs and other not in ordered and other not in ready:
                        ready.append(other)
            ready.sort(key=rank.__getitem__)
        if len(ordered) != len(nodes):
            raise ValueError("cycle: " + " -> ".join(self.find_cycle() or []))
        return ordered

    def needed(self, targets: list[str]) -> set[str]:
        """The targets and everything upstream of them."""
        seen: set[str] = set()
        stack = list(targets)
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.deps.get(node, ()))
        return seen

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.deps}
        for node, deps in self.deps.items():
            for dep in deps:
                if dep in out and node not in out[dep]:
                    out[dep].append(node)
        return out

    def find_cycle(self) -> list[str] | None:
        """One cycle as [a, b, ..., a], or None. A loop, not recursion: a chain of any length is fine."""
        state: dict[str, int] = {}  # 1 = on the path, 2 = done
        for start in sorted(self.deps):
            if start in state:
                continue
            state[start] = 1
            path = [start]
            pending = [iter(self.deps.get(start, ()))]  # for each node on the path: its deps not yet looked at
            while pending:
                dep = next(pending[-1], None)
                if dep is None:
                    state[path.pop()] = 2
                    pending.pop()
                elif dep not in self.deps or state.get(dep) == 2:
                    continue
                elif state.get(dep) == 1:
                    cycle = path[path.index(dep):] + [dep]
                    return list(reversed(cycle))
                else:
                    state[dep] = 1
                    path.append(dep)
                    pending.append(iter(self.deps.get(dep, ())))
        return None
