"""A traced graph cut in two at one node: the part that makes the node's value, and the
part after it.

Class activation maps need a node's value and the gradient of a score at that node
only. The *head* (every node the chosen one does not feed) runs once, without
autograd; the *tail* (the chosen node's descendants, up to the output) takes the
chosen value and whatever else crosses the cut, so gradients flow through the tail
alone. Parameters (``get_attr`` nodes) are copied into whichever part reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import fx

from fxmaps.facts import facts

__all__ = ["Split", "split_at"]


@dataclass(frozen=True)
class Split:
    """The two parts of a graph cut at one node.

    Attributes:
        head: Takes the graph's inputs; returns ``(value, *crossing)``: the chosen
            node's value and every other value the tail reads.
        tail: Takes ``(value, *crossing)``; returns what the model returns.
        crossing: How many values besides the chosen one cross the cut.
    """

    head: fx.GraphModule
    tail: fx.GraphModule
    crossing: int


def split_at(module: fx.GraphModule, node: fx.Node) -> Split:
    """``module``'s graph cut after ``node`` (a node of ``module.graph``)."""
    nodes = list(module.graph.nodes)
    output = next(n for n in reversed(nodes) if n.op == "output")
    after = _reachable(node.users, lambda n: n.users) - {output}
    tail_reads = [n for n in nodes if n in after or n is output]
    crossing = _crossing(node, after, tail_reads)
    head = _head(module, nodes, node, crossing, after)
    tail = _tail(module, node, crossing, tail_reads)
    return Split(head=head, tail=tail, crossing=len(crossing))


def _reachable(
    starts: Iterable[fx.Node], step: Callable[[fx.Node], Iterable[fx.Node]]
) -> set[fx.Node]:
    """Every node reached from ``starts`` by ``step`` (users: downstream; inputs: upstream)."""
    found: set[fx.Node] = set()
    stack = list(starts)
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(step(current))
    return found


def _crossing(node: fx.Node, after: set[fx.Node], readers: Iterable[fx.Node]) -> list[fx.Node]:
    """Values made before the cut (not parameters) that the tail reads, in graph order."""
    seen: dict[fx.Node, None] = {}
    for reader in readers:
        for arg in reader.all_input_nodes:
            if arg is not node and arg not in after and arg.op != "get_attr":
                seen.setdefault(arg, None)
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    return sorted(seen, key=order.__getitem__)


def _head(
    module: fx.GraphModule,
    nodes: list[fx.Node],
    node: fx.Node,
    crossing: list[fx.Node],
    after: set[fx.Node],
) -> fx.GraphModule:
    """The graph's inputs to ``(node, *crossing)``: the ancestors of those, in order, and
    the in-place writes into them that nothing reads (``mask[..., 8:] = 1``: a
    ``setitem`` that no node uses, but that changes a value the node is made from)."""
    needed = _reachable([node, *crossing], lambda n: n.all_input_nodes)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for current in nodes:
        visible = current.op == "placeholder" and not facts(current).hidden
        kept = current in needed or _writes_into(current, needed)
        if visible or (kept and current not in after and current.op != "output"):
            env[current] = graph.node_copy(current, env.__getitem__)
    graph.output(tuple(env[n] for n in (node, *crossing)))
    return fx.GraphModule(module, graph, "CamHead")


def _writes_into(node: fx.Node, needed: set[fx.Node]) -> bool:
    """Whether ``node`` is read by nothing and takes a needed value: an in-place write
    (its effect is on its input; without it the head would compute another value)."""
    return not node.users and node.op != "output" and any(a in needed for a in node.all_input_nodes)


def _tail(
    module: fx.GraphModule, node: fx.Node, crossing: list[fx.Node], readers: list[fx.Node]
) -> fx.GraphModule:
    """``(node, *crossing)`` to the output: the descendants of ``node``, in order."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    value = graph.placeholder("cam_value")
    # a fresh tensor: an in-place op of the tail must not write into the value itself
    env[node] = graph.call_method("clone", (value,))
    for i, current in enumerate(crossing):
        env[current] = graph.placeholder(f"cam_crossing_{i}")
    for reader in readers:
        for arg in reader.all_input_nodes:
            if arg.op == "get_attr" and arg not in env:
                env[arg] = graph.node_copy(arg, env.__getitem__)
        env[reader] = graph.node_copy(reader, env.__getitem__)
    return fx.GraphModule(module, graph, "CamTail")
