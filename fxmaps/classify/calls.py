"""Which module call each node's value is the return of: module paths as selections.

A leaf module call is one node, and its value is the call's return. The return of a
module fxmaps traced through (``layer1``, a timm stage) is the node inside that
call whose value leaves it: the node, among those the call's nodes (its own and
those of the calls nested in it), that a node outside the call, or the model's
output, reads. A call whose value nothing reads (its result unused) returns its
last node that nothing inside reads. Written into each node's facts as
``returned_by``: the calls, innermost first, whose return value the node is.
"""

from __future__ import annotations

from torch import fx

from fxmaps.facts import CallKey, Scope, facts, note

__all__ = ["call_key", "call_members", "note_returns"]


def call_key(scope: Scope) -> CallKey:
    """The module call a scope stands for: ``layer1_1`` of ``layer1`` is ``("layer1", 1)``."""
    if scope.name == scope.qualname:
        return (scope.qualname, 0)
    suffix = scope.name[len(scope.qualname) + 1 :]
    return (scope.qualname, int(suffix) if suffix.isdigit() else 0)


def call_members(nodes: list[fx.Node]) -> dict[CallKey, list[fx.Node]]:
    """The nodes of each module call (nested calls' nodes included), in graph order."""
    members: dict[CallKey, list[fx.Node]] = {}
    leaf_calls: dict[str, int] = {}
    for node in nodes:
        found = facts(node)
        keys = [call_key(scope) for scope in found.scopes]
        if node.op == "call_module":
            origin = found.origin
            if origin is not None and origin.call is not None and origin.call[0] == found.target:
                keys.append(origin.call)
            else:
                count = leaf_calls.get(found.target, 0)
                leaf_calls[found.target] = count + 1
                keys.append((found.target, count))
        for key in keys:
            members.setdefault(key, []).append(node)
    return members


def note_returns(module: fx.GraphModule) -> None:
    """Write ``returned_by`` into the facts of every node that a module call returns."""
    nodes = [n for n in module.graph.nodes if n.op != "output" and not facts(n).hidden]
    returned: dict[fx.Node, list[CallKey]] = {}
    for key, inside in call_members(nodes).items():
        for node in _returns(inside):
            returned.setdefault(node, []).append(key)
    for node, keys in returned.items():
        note(node, returned_by=tuple(sorted(keys, key=lambda key: -_depth(key, node))))


def _returns(inside: list[fx.Node]) -> list[fx.Node]:
    """The nodes of one call whose values leave it (or its last unread node)."""
    members = set(inside)
    leaving = [
        node
        for node in inside
        if any(user.op == "output" or user not in members for user in _users(node))
    ]
    if leaving:
        return leaving
    unread = [node for node in inside if not any(user in members for user in _users(node))]
    return unread[-1:]


def _users(node: fx.Node) -> list[fx.Node]:
    return [user for user in node.users if user.op == "output" or not facts(user).hidden]


def _depth(key: CallKey, node: fx.Node) -> int:
    """How deep the call is: its scope's place among the node's scopes (a leaf: deepest)."""
    for index, scope in enumerate(facts(node).scopes):
        if call_key(scope) == key:
            return index
    return len(facts(node).scopes)
