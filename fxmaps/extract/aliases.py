"""In-place operations and aliasing in a traced graph.

A map must be what its node produced, even when a later in-place op (an
``inplace=True`` ReLU, ``add_``, ``x[...] = y``) overwrites that tensor, directly
or through an alias (``nn.Identity``, ``view``, ``flatten``, slicing, eval-mode
dropout all may return a tensor sharing storage). This module finds:

* *alias groups*: nodes whose outputs may share storage (union-find; an op not
  known to return a fresh tensor is assumed to alias its inputs);
* *live nodes*: what must run to produce the requested nodes. Unlike fx's own
  dead-code elimination, an in-place op whose result is unused stays live when a
  later live node reads the tensor it mutates;
* *out-of-place rewrites*: a live in-place op whose overwritten tensor nothing
  reads afterwards can run out of place instead (a copy of its module with
  ``inplace=False``, ``inplace=False`` for a functional, ``relu`` for ``relu_``):
  the same values, and the maps before it stay intact without a copy;
* *snapshots*: the requested nodes that a remaining live in-place op mutates
  after they were produced. Only those need a copy; others cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from torch import fx, nn

from fxmaps.facts import facts
from fxmaps.trace.aliasing import fresh_result, is_helper, mutated_input, runs_out_of_place

__all__ = ["Liveness", "plan_liveness"]


@dataclass(frozen=True)
class Liveness:
    """What must run to produce the requested nodes, which in-place ops run out of place
    instead, and which requested nodes still need a copy."""

    live: frozenset[fx.Node]
    out_of_place: frozenset[fx.Node]
    snapshots: frozenset[fx.Node]


def plan_liveness(
    module: fx.GraphModule,
    nodes: Sequence[fx.Node],
    requested: Iterable[fx.Node],
    read_at_end: Iterable[fx.Node] = (),
) -> Liveness:
    """Live nodes and snapshots for returning ``requested`` (see the module docstring).

    ``requested`` maps are taken when produced; ``read_at_end`` values (what the
    model returns) are taken after every op, so in-place ops on them must run.
    Kinds are read from the nodes' facts.
    """
    requested = set(requested)
    at_end = set(read_at_end)
    modules = {n: module.get_submodule(str(n.target)) for n in nodes if n.op == "call_module"}
    mutates = {n: m for n in nodes if (m := mutated_input(n, modules.get(n))) is not None}
    group = _alias_groups(nodes, modules, mutates)
    live: set[fx.Node] = requested | at_end
    read_later = {group[n] for n in at_end}  # alias groups read by live nodes further on
    for node in reversed(nodes):
        is_live = node in live or (node in mutates and group[mutates[node]] in read_later)
        if is_live:
            live.add(node)
            for arg in node.all_input_nodes:
                live.add(arg)
                read_later.add(group[arg])
    position = {node: i for i, node in enumerate(nodes)}
    out_of_place = _out_of_place(
        nodes, live | at_end, mutates, group, modules, position, at_end, requested
    )
    mutations: dict[fx.Node, int] = {}  # alias group -> position of its last live mutation
    for node, target in mutates.items():
        if node in live and node not in out_of_place:
            root = group[target]
            mutations[root] = max(mutations.get(root, -1), position[node])
    snapshots = {r for r in requested if mutations.get(group[r], -1) > position[r]}
    return Liveness(frozenset(live), frozenset(out_of_place), frozenset(snapshots))


def _out_of_place(
    nodes: Sequence[fx.Node],
    live: set[fx.Node],
    mutates: Mapping[fx.Node, fx.Node],
    group: Mapping[fx.Node, fx.Node],
    modules: Mapping[fx.Node, nn.Module],
    position: Mapping[fx.Node, int],
    at_end: set[fx.Node],
    requested: set[fx.Node],
) -> set[fx.Node]:
    """Live in-place ops worth running out of place, and safe to: one would overwrite a
    requested map (else in place is cheaper), and no live node after it reads a tensor
    of the overwritten group that existed before it, nor does the model return one."""
    members: dict[fx.Node, list[fx.Node]] = {}
    for node in nodes:
        members.setdefault(group[node], []).append(node)
    chosen = set()
    for node, target in mutates.items():
        if node not in live or not runs_out_of_place(node, modules.get(node)):
            continue
        at = position[node]
        earlier = [m for m in members[group[target]] if position[m] < at]
        if not any(m in requested for m in earlier):
            continue
        read_after = any(m in at_end for m in earlier) or any(
            user in live and user is not node and position.get(user, -1) > at
            for m in earlier
            for user in m.users
        )
        if not read_after:
            chosen.add(node)
    return chosen


def _alias_groups(
    nodes: Sequence[fx.Node],
    modules: Mapping[fx.Node, nn.Module],
    mutates: Mapping[fx.Node, fx.Node],
) -> dict[fx.Node, fx.Node]:
    """Each node's alias group, as the group's first node (union-find, path-halving)."""
    parent: dict[fx.Node, fx.Node] = {}

    def find(node: fx.Node) -> fx.Node:
        while parent[node] is not node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for node in nodes:
        parent[node] = node
        for source in _aliased_inputs(node, modules.get(node), mutates.get(node)):
            a, b = find(source), find(node)
            if a is not b:
                parent[b] = a
    return {node: find(node) for node in nodes}


def _aliased_inputs(
    node: fx.Node, module: nn.Module | None, mutated: fx.Node | None
) -> list[fx.Node]:
    """The inputs whose storage ``node``'s output may share."""
    if is_helper(node):  # it may return, or update, any of them: one group
        return list(node.all_input_nodes)
    if mutated is not None:
        return [mutated]
    if fresh_result(node, module, facts(node).kind):
        return []
    return list(node.all_input_nodes)
