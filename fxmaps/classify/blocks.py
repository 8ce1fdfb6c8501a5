"""Residual merges, downsample convs and blocks, found from the graph's structure.

For each add of two tensors, the two operands are walked back together, in
reverse execution order, until they meet at the *fork*: the latest node both
depend on that the model's inputs flow into (a weight both branches read is no
fork). Each operand's *branch* is what lies on paths from the fork to it.
The branch with more learned layers (convs, linears, attention, weighted ops)
is the main path; the other is the shortcut, and its convs are downsample
convs. Equal counts are a multi-branch merge, not a residual. Module names are
never consulted, so a shortcut called ``shortcut``, ``proj`` or ``skip`` works
and an empty ``nn.Sequential()`` or an ``nn.Identity`` shortcut is an identity skip.

A residual merge must also be local: both branches lie inside the module call
that performs the add (a block), which tells a ResNet shortcut apart from the
long top-down merges of a feature pyramid.

The walk visits each branch once (a heap ordered by execution index), so the
whole pass is linear in the size of the branches, with no all-pairs searches.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from torch import fx, nn

from fxmaps.facts import BlockKind, Kind, Scope, SkipKind, facts, note

__all__ = ["ROLE_SHORTCUT", "ROLE_SKIP", "Block", "Residual", "Structure", "analyze_structure"]

_TRANSPARENT = frozenset({Kind.NORM, Kind.ACTIVATION, Kind.DROPOUT, Kind.RESHAPE})
ROLE_SKIP = "skip"
ROLE_SHORTCUT = "shortcut"


@dataclass(frozen=True)
class Residual:
    """One residual merge: an add whose operands split at ``fork``."""

    merge: str
    block: str
    fork: str
    skip: SkipKind
    main: tuple[str, ...]
    shortcut: tuple[str, ...]
    downsample: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    """A module call that groups layers: a residual block or a sequential container."""

    name: str
    kind: BlockKind
    module_type: str
    layers: tuple[str, ...]
    parent: str | None


@dataclass(frozen=True)
class Structure:
    """What structural analysis found beyond the nodes' own facts: the merges, the blocks,
    and the role of each edge along a shortcut, keyed by ``(source, target)`` names."""

    residuals: tuple[Residual, ...]
    blocks: tuple[Block, ...]
    edge_roles: Mapping[tuple[str, str], str]


@dataclass(frozen=True)
class _Merge:
    add: fx.Node
    fork: fx.Node
    main: list[fx.Node]
    shortcut: list[fx.Node]
    shortcut_operand: fx.Node
    skip: SkipKind
    block: str


def analyze_structure(nodes: list[fx.Node]) -> Structure:
    """Find residual merges, downsample convs and blocks in a traced graph.

    Reads each node's kind, name, scopes and parameter count from its facts; writes
    ``kind=downsample`` for shortcut convs and each node's innermost ``block``.

    Args:
        nodes: The graph's visible nodes in execution order.
    """
    index = {node: i for i, node in enumerate(nodes)}
    fed = _fed_by_inputs(nodes)
    merges = []
    for node in nodes:
        if facts(node).kind is Kind.ADD:
            merge = _residual_merge(node, index, fed)
            if merge is not None:
                merges.append(merge)
    downsample = {n for m in merges for n in m.shortcut if facts(n).kind is Kind.CONV}
    for node in downsample:
        note(node, kind=Kind.DOWNSAMPLE)
    shortcut_nodes = {n for m in merges for n in m.shortcut}
    blocks = _blocks(nodes, merges, shortcut_nodes, fed)
    residuals = tuple(
        Residual(
            merge=_name(m.add),
            block=m.block,
            fork=_name(m.fork),
            skip=m.skip,
            main=tuple(_name(n) for n in m.main),
            shortcut=tuple(_name(n) for n in m.shortcut),
            downsample=tuple(_name(n) for n in m.shortcut if n in downsample),
        )
        for m in merges
    )
    return Structure(residuals, blocks, _edge_roles(merges))


_LEARNED = frozenset({Kind.CONV, Kind.LINEAR, Kind.ATTENTION, Kind.RECURRENT, Kind.EMBEDDING})


def _learned(node: fx.Node) -> bool:
    """A learned layer: counts towards a branch's weight (weighted ``other`` ops included)."""
    found = facts(node)
    return found.kind in _LEARNED or (found.kind is Kind.OTHER and found.params > 0)


def _name(node: fx.Node) -> str:
    return facts(node).name


def _scopes(node: fx.Node) -> tuple[Scope, ...]:
    return facts(node).scopes


def _operands(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    args = list(node.args[:2])
    if len(args) < 2 and "other" in node.kwargs:
        args.append(node.kwargs["other"])
    if len(args) == 2 and all(isinstance(a, fx.Node) for a in args):
        return args[0], args[1]  # type: ignore[return-value]
    return None


def _fed_by_inputs(nodes: list[fx.Node]) -> set[fx.Node]:
    """Nodes that the model's inputs flow into: the only ones that can be a fork.

    A parameter (a ``get_attr`` node, or a node computed from parameters alone) that
    two branches both read is their common ancestor but not where the data forks.
    """
    fed: set[fx.Node] = set()
    for node in nodes:
        if node.op == "placeholder" or any(p in fed for p in node.all_input_nodes):
            fed.add(node)
    return fed


def _residual_merge(add: fx.Node, index: Mapping[fx.Node, int], fed: set[fx.Node]) -> _Merge | None:
    operands = _operands(add)
    if operands is None:
        return None
    found = _fork(*operands, index, fed)
    if found is None:
        return None
    fork, branch_a, branch_b = found
    weight_a = sum(1 for n in branch_a if _learned(n))
    weight_b = sum(1 for n in branch_b if _learned(n))
    if weight_a == weight_b:
        return None  # a multi-branch merge (or no learned layers at all)
    main, shortcut = (branch_a, branch_b) if weight_a > weight_b else (branch_b, branch_a)
    shortcut_operand = operands[1] if weight_a > weight_b else operands[0]
    scope = _block_scope(add, main, shortcut)
    if scope is None:
        return None  # a long-range merge, not a block's residual
    return _Merge(
        add=add,
        fork=fork,
        main=main,
        shortcut=shortcut,
        shortcut_operand=shortcut_operand,
        skip=_skip_kind(shortcut),
        block=scope[-1].name if scope else _name(add),
    )


def _block_scope(
    add: fx.Node, main: list[fx.Node], shortcut: list[fx.Node]
) -> tuple[Scope, ...] | None:
    """The module calls of the residual block around ``add``, or ``None`` for a long-range
    merge.

    Both branches must lie inside the module call that performs the add; or, for an
    identity skip handed to that call as an argument (transformers' ``BertSelfOutput``
    adds its ``input_tensor``), inside the call one level up.
    """
    scope = _scopes(add)
    if all(_inside(_scopes(n), scope) for n in (*main, *shortcut)):
        return scope
    parent = scope[:-1]
    if not shortcut and parent and all(_inside(_scopes(n), parent) for n in main):
        return parent
    return None


def _fork(
    a: fx.Node, b: fx.Node, index: Mapping[fx.Node, int], fed: set[fx.Node]
) -> tuple[fx.Node, list[fx.Node], list[fx.Node]] | None:
    """The latest common ancestor of ``a`` and ``b`` that the inputs flow into, and each
    operand's branch."""
    tags: dict[fx.Node, int] = {a: 1}
    tags[b] = tags.get(b, 0) | 2
    heap = [(-index[n], index[n]) for n in tags]
    heapq.heapify(heap)
    by_index = {index[n]: n for n in tags}
    popped: list[fx.Node] = []
    while heap:
        _, i = heapq.heappop(heap)
        node = by_index[i]
        tag = tags[node]
        if tag == 3 and node in fed:
            branch_a = _branch(node, [n for n in reversed(popped) if tags[n] == 1])
            branch_b = _branch(node, [n for n in reversed(popped) if tags[n] == 2])
            return node, branch_a, branch_b
        popped.append(node)
        for parent in node.all_input_nodes:
            if parent not in tags:
                tags[parent] = tag
                by_index[index[parent]] = parent
                heapq.heappush(heap, (-index[parent], index[parent]))
            else:
                tags[parent] |= tag
    return None


def _edge_roles(merges: list[_Merge]) -> dict[tuple[str, str], str]:
    """Edges along each shortcut: ``skip`` for identity skips, ``shortcut`` otherwise."""
    roles: dict[tuple[str, str], str] = {}
    for merge in merges:
        role = ROLE_SKIP if merge.skip is SkipKind.IDENTITY else ROLE_SHORTCUT
        allowed = {merge.fork, *merge.shortcut}
        for node in merge.shortcut:
            for parent in node.all_input_nodes:
                if parent in allowed:
                    roles[(_name(parent), _name(node))] = role
        roles[(_name(merge.shortcut_operand), _name(merge.add))] = role
    return roles


def _branch(fork: fx.Node, ancestors: list[fx.Node]) -> list[fx.Node]:
    """Of one operand's ancestors (in execution order), those reachable from ``fork``."""
    reached = {fork}
    for node in ancestors:
        if any(parent in reached for parent in node.all_input_nodes):
            reached.add(node)
    return [n for n in ancestors if n in reached]


def _inside(inner: tuple[Scope, ...], outer: tuple[Scope, ...]) -> bool:
    return inner[: len(outer)] == outer


def _skip_kind(shortcut: list[fx.Node]) -> SkipKind:
    if any(_learned(n) for n in shortcut):
        return SkipKind.PROJECTION
    if all(facts(n).kind in _TRANSPARENT or _is_identity_module(n) for n in shortcut):
        return SkipKind.IDENTITY
    return SkipKind.PARAMETER_FREE


def _is_identity_module(node: fx.Node) -> bool:
    """A call of an ``nn.Identity`` (the usual empty shortcut in timm), whose kind is ``other``."""
    owner = node.graph.owning_module
    if node.op != "call_module" or owner is None:
        return False
    return isinstance(owner.get_submodule(str(node.target)), nn.Identity)


def _blocks(
    nodes: list[fx.Node], merges: list[_Merge], shortcut_nodes: set[fx.Node], fed: set[fx.Node]
) -> tuple[Block, ...]:
    """Residual blocks (calls that perform a residual add) and main-path sequential calls.

    A residual merge in the model's own forward has no module call around it; its
    block is named after the add and holds the merge's two branches, and the parameter
    nodes those read. Each node's innermost block is written into its facts.
    """
    members: dict[Scope, list[fx.Node]] = {}
    for node in nodes:
        for scope in _scopes(node):
            members.setdefault(scope, []).append(node)
    residual = {m.block for m in merges}
    main_path = fed - shortcut_nodes  # a parameter's node lies on no path
    kinds: dict[str, BlockKind] = {}
    types: dict[str, str] = {}
    for scope, inside in members.items():
        if scope.name in residual:
            kinds[scope.name] = BlockKind.RESIDUAL
        elif issubclass(scope.module_type, nn.Sequential) and any(n in main_path for n in inside):
            kinds[scope.name] = BlockKind.SEQUENTIAL
        else:
            continue
        types[scope.name] = scope.module_type.__name__
    scope_names = {scope.name for scope in members}
    root = [m for m in merges if m.block not in scope_names]
    parameters = [n for n in reversed(nodes) if n not in fed]  # users before what they read
    root_members = {
        m.block: _with_parameters({*m.main, *m.shortcut, m.add}, parameters) for m in root
    }
    root_order = sorted(root_members, key=lambda name: -len(root_members[name]))  # outer first
    for name in root_order:
        kinds[name] = BlockKind.RESIDUAL
        types[name] = "add"
    chains = {
        node: [b for b in root_order if node in root_members[b]]
        + [s.name for s in _scopes(node) if s.name in kinds]
        for node in nodes
    }
    for node, chain in chains.items():
        note(node, block=chain[-1] if chain else None)
    return _block_records(nodes, chains, kinds, types, fed)


def _with_parameters(members: set[fx.Node], parameters: list[fx.Node]) -> set[fx.Node]:
    """``members`` and the parameter nodes (not fed by the inputs) that only members read."""
    for node in parameters:
        if node.users and all(user in members for user in node.users):
            members.add(node)
    return members


def _block_records(
    nodes: list[fx.Node],
    chains: Mapping[fx.Node, list[str]],
    kinds: Mapping[str, BlockKind],
    types: Mapping[str, str],
    fed: set[fx.Node],
) -> tuple[Block, ...]:
    """One record a block, in order of first node, outer blocks before inner ones.

    Parents come from the nodes the inputs flow into: a parameter shared by two
    blocks is in the scope where it was first read, which need not nest the same way.
    """
    layers: dict[str, list[str]] = {name: [] for name in kinds}
    parents: dict[str, str | None] = {}
    for node in nodes:
        chain = chains[node]
        for depth, name in enumerate(chain):
            layers[name].append(_name(node))
            if node in fed:
                parents.setdefault(name, chain[depth - 1] if depth else None)
    return tuple(
        Block(name, kinds[name], types[name], tuple(layers[name]), parents[name])
        for name in parents  # first reached first; a parent is reached before its children
    )
