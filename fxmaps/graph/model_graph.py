"""The analysed model: a read-only record of :class:`Layer` records, blocks and merges, with views.

A :class:`ModelGraph` is built by :func:`fxmaps.analyze`. Its ``nx`` attribute is a
``networkx.DiGraph`` keyed by node name, whose node and edge attributes are named
by the ``ATTR_*`` constants of this module. How it is shown (the summary table)
is drawn by :mod:`fxmaps.render.table`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property

import networkx as nx
from torch import fx, nn

from fxmaps.classify import Block, BlockKind, Kind, Residual, count_parameters
from fxmaps.errors import InputError, NodeNotFoundError, close_matches
from fxmaps.facts import ShapeTree, facts
from fxmaps.graph.layer import Layer
from fxmaps.graph.select import Selection, select_layers
from fxmaps.trace import OpaqueModule
from fxmaps.trace.regions import Capture, EagerRegion

__all__ = [
    "ATTR_BLOCK",
    "ATTR_KIND",
    "ATTR_LAYER",
    "ATTR_MACS",
    "ATTR_OPAQUE",
    "ATTR_OUT_SHAPE",
    "ATTR_PARAMS",
    "ATTR_ROLE",
    "ATTR_TARGET",
    "ATTR_TYPE",
    "HEADLINE",
    "ROLE_DATA",
    "ModelGraph",
]

ATTR_LAYER = "layer"
ATTR_KIND = "kind"
ATTR_TARGET = "target"
ATTR_TYPE = "module_type"
ATTR_OUT_SHAPE = "out_shape"
ATTR_PARAMS = "params"
ATTR_MACS = "macs"
ATTR_BLOCK = "block"
ATTR_OPAQUE = "opaque"
ATTR_ROLE = "role"
ROLE_DATA = "data"
HEADLINE = ("conv", "downsample", "linear", "sequential", "residual")
"""The counts :meth:`ModelGraph.info` always gives first, zero or not."""


class ModelGraph:
    """A traced, classified model. Built by :func:`fxmaps.analyze`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import fxmaps
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(288, 2))
        >>> g = fxmaps.analyze(model, torch.zeros(1, 3, 8, 8))
        >>> [layer.name for layer in g.layers("conv")]
        ['0']
        >>> g["0"].out_shape
        (1, 8, 6, 6)
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        graph_module: fx.GraphModule,
        layers: Sequence[Layer],
        edges: Iterable[tuple[str, str, str]],
        blocks: Sequence[Block],
        residuals: Sequence[Residual],
        opaque: Sequence[OpaqueModule],
        autowrapped: Sequence[str],
        first_use_params: Mapping[str, int],
        input_shapes: tuple[ShapeTree | None, ...] | None,
        train: bool,
        eager: Sequence[EagerRegion] = (),
        capture: Capture | None = None,
    ) -> None:
        self._model = model
        self._graph_module = graph_module
        self._layers = {layer.name: layer for layer in layers}
        self._fx_nodes: dict[str, fx.Node] = {
            facts(n).name: n for n in graph_module.graph.nodes if facts(n).name in self._layers
        }
        self._edges = tuple(edges)
        self._blocks = tuple(blocks)
        self._residuals = tuple(residuals)
        self._opaque = tuple(opaque)
        self._autowrapped = tuple(autowrapped)
        self._first_use_params = dict(first_use_params)
        self._input_shapes = input_shapes
        self._train = train
        self._eager = tuple(eager)
        self._capture = capture

    # -- records -------------------------------------------------------------------------

    def layers(self, selection: Selection | None = None) -> list[Layer]:
        """Layers in execution order: all of them, or those ``selection`` chooses.

        ``selection`` is what :func:`fxmaps.extract` takes as ``layers=``: a kind, a
        node name, a glob pattern, a list of those or of layers, or a predicate. A
        selection that matches nothing gives an empty list.

        Raises:
            NodeNotFoundError: A name or pattern matches no node (close matches listed).
            InputError: An entry is neither a string, a kind, a layer nor a predicate.
        """
        if selection is None:
            return list(self._layers.values())
        return select_layers(self, selection)

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (or whose ``alias``, torchvision's name, it is).

        Raises:
            NodeNotFoundError: No such node; the message lists close matches.
        """
        found = self._layers.get(name) if isinstance(name, str) else None
        if found is None and isinstance(name, str) and name in self.aliases:
            found = self._layers[self.aliases[name]]
        if found is None:
            raise self._not_found(name)
        return found

    @cached_property
    def aliases(self) -> dict[str, str]:
        """torchvision's names that differ from fxmaps's, each to the node it names (see
        ``Layer.alias``); an alias that is another node's name is left out."""
        return {
            layer.alias: layer.name
            for layer in self._layers.values()
            if layer.alias is not None and layer.alias not in self._layers
        }

    def module_calls(self, path: str) -> int:
        """How many calls of the module at ``path`` the graph holds (0: none, or not a
        module). ``fxmaps.Module(path, call)`` selects what each returns."""
        return self._calls.get(path, 0)

    @cached_property
    def _calls(self) -> dict[str, int]:
        calls: dict[str, int] = {}
        for layer in self._layers.values():
            for path, call in layer.returned_by:
                calls[path] = max(calls.get(path, 0), call + 1)
        return calls

    def __getitem__(self, name: str) -> Layer:
        return self.layer(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._layers

    def __len__(self) -> int:
        return len(self._layers)

    def blocks(self, kind: BlockKind | str | None = None) -> list[Block]:
        """Residual and sequential blocks in execution order, outer before inner."""
        if kind is None:
            return list(self._blocks)
        wanted = BlockKind(kind)
        return [block for block in self._blocks if block.kind is wanted]

    def residuals(self) -> list[Residual]:
        """Every residual merge: its add, fork, main and shortcut branches, downsample convs."""
        return list(self._residuals)

    def edges(self) -> list[tuple[str, str, str]]:
        """Every edge as ``(source, target, role)``; roles are ``data``, ``skip``, ``shortcut``."""
        return list(self._edges)

    @property
    def opaque(self) -> tuple[OpaqueModule, ...]:
        """Modules traced as single nodes (auto-leaf or ``leaf_modules``), with reasons."""
        return self._opaque

    @property
    def eager(self) -> tuple[EagerRegion, ...]:
        """Module calls whose own ``forward`` ran as Python, because torch.fx could not
        follow it, with the reason; everything they called is in the graph."""
        return self._eager

    @property
    def capture(self) -> Capture | None:
        """How a captured model ran (to run it that way again), or ``None`` when symbolic
        tracing made the whole graph (advanced use)."""
        return self._capture

    @property
    def autowrapped(self) -> tuple[str, ...]:
        """Helper functions recorded as single call nodes so that tracing could go on."""
        return self._autowrapped

    @property
    def model(self) -> nn.Module:
        """The analysed model (never modified by fxmaps)."""
        return self._model

    @property
    def graph_module(self) -> fx.GraphModule:
        """The traced ``torch.fx.GraphModule``; it shares the model's submodules, and its
        nodes carry what fxmaps knows of them in ``node.meta`` (see :mod:`fxmaps.facts`)."""
        return self._graph_module

    @property
    def input_shapes(self) -> tuple[ShapeTree | None, ...] | None:
        """Shapes of the example input, or ``None`` when none was given."""
        return self._input_shapes

    @property
    def train(self) -> bool:
        """Whether this is the training-mode graph."""
        return self._train

    def fx_node(self, name: str) -> fx.Node:
        """The ``torch.fx.Node`` behind a layer name (advanced use)."""
        return self._fx_nodes[self.layer(name).name]

    # -- parameters ------------------------------------------------------------------------

    @property
    def total_params(self) -> int:
        """Parameters the traced graph uses, each shared parameter counted once."""
        return sum(self._first_use_params.values())

    @property
    def model_params(self) -> int:
        """Parameters the model holds, used by the traced graph or not."""
        return count_parameters(self._model.parameters())

    def first_use_params(self, name: str) -> int:
        """Parameters first used by node ``name`` (0 when it uses none, or only shared ones)."""
        return self._first_use_params.get(name, 0)

    # -- compute and memory ----------------------------------------------------------------

    def macs(self) -> int:
        """Multiply-accumulates of one forward on the example input: the sum of ``Layer.macs``.

        Convolutions, linears, matrix products and attention count (see
        :mod:`fxmaps.classify.macs`); norms, pooling, activations and element-wise ops
        count 0. FLOPs, as ``torch.utils.flop_counter`` counts them, are twice this.
        Needs the graph of an example input (``analyze(model, example)``).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> import fxmaps
            >>> g = fxmaps.analyze(nn.Linear(8, 4), torch.zeros(2, 8))
            >>> g.macs()  # 2 rows x 4 outputs x 8 inputs
            64
        """
        self._need_shapes("macs()")
        return sum(layer.macs for layer in self._layers.values())

    def activation_bytes(self) -> int:
        """Peak bytes of the maps alive at once during one forward on the example input.

        Nodes run in the graph's (topological) order; each node's output is alive from
        the node until its last user has run (an output no node reads dies at once).
        The inputs count; parameters and buffers do not. Each node's output counts as
        its own map, views and in-place results included, as torchinfo's forward pass
        size counts them: an upper bound of what the allocator holds.
        Needs the graph of an example input (``analyze(model, example)``).
        """
        self._need_shapes("activation_bytes()")
        nodes = list(self._graph_module.graph.nodes)
        last_use = {node: index for index, node in enumerate(nodes)}
        for index, node in enumerate(nodes):
            for used in node.all_input_nodes:
                last_use[used] = index
        live, peak = 0, 0
        dying: dict[int, int] = {}
        for index, node in enumerate(nodes):
            size = facts(node).nbytes if node.op not in ("get_attr", "output") else None
            if size:
                live += size
                dying[last_use[node]] = dying.get(last_use[node], 0) + size
            peak = max(peak, live)
            live -= dying.pop(index, 0)
        return peak

    def _need_shapes(self, what: str) -> None:
        if self._input_shapes is None:
            raise InputError(
                f"{what} needs the shapes of an example input; analyse the model with one: "
                "fxmaps.analyze(model, example_input)",
                argument="example_input",
                got="no example input",
            )

    # -- views -----------------------------------------------------------------------------

    @cached_property
    def nx(self) -> nx.DiGraph[str]:
        """A ``networkx.DiGraph`` keyed by node name, attributes named by ``ATTR_*``."""
        graph: nx.DiGraph[str] = nx.DiGraph(name=type(self._model).__name__)
        for layer in self._layers.values():
            graph.add_node(
                layer.name,
                **{
                    ATTR_LAYER: layer,
                    ATTR_KIND: layer.kind,
                    ATTR_TARGET: layer.target,
                    ATTR_TYPE: layer.module_type,
                    ATTR_OUT_SHAPE: layer.out_shape,
                    ATTR_PARAMS: layer.params,
                    ATTR_MACS: layer.macs,
                    ATTR_BLOCK: layer.block,
                    ATTR_OPAQUE: layer.opaque,
                },
            )
        for source, target, role in self._edges:
            graph.add_edge(source, target, **{ATTR_ROLE: role})
        return graph

    def info(self) -> dict[str, int]:
        """Counts: conv, downsample, linear, sequential and residual blocks, then other kinds.

        ``conv`` excludes downsample convs; ``residual`` counts blocks whose add
        merges a skip connection; ``sequential`` counts ``nn.Sequential`` calls on
        the main path that hold layers. Counts are of graph nodes: a module called
        twice counts twice.
        """
        kinds = {kind.value: 0 for kind in Kind}
        for layer in self._layers.values():
            kinds[layer.kind.value] += 1
        blocks = {kind.value: 0 for kind in BlockKind}
        for block in self._blocks:
            blocks[block.kind.value] += 1
        counts = {**kinds, **blocks}
        info = {key: counts[key] for key in HEADLINE}
        info.update({k: v for k, v in kinds.items() if v and k not in info})
        info["opaque"] = len(self._opaque)
        if self._eager:
            info["eager"] = len(self._eager)
        info["nodes"] = len(self._layers)
        return info

    def summary(self, kinds: Selection | None = None) -> str:
        """A table of the layers: name, kind, type, output shape, parameters, MACs, block.

        Shared parameters are counted on the first node that uses them (later
        uses read ``shared``), so the parameter column adds up to the total. The
        MACs column adds up to :meth:`macs`; with an example input, the footer gives
        that total and :meth:`activation_bytes`.

        Args:
            kinds: Show only the layers this selects (the totals still cover every layer).
        """
        from fxmaps.render.table import summary_table  # a display method: drawing is render's

        return summary_table(self, kinds)

    def summary_rows(self, kinds: Selection | None = None) -> list[list[str]]:
        """The rows of :meth:`summary`, one per layer, as strings."""
        from fxmaps.render.table import summary_rows  # a display method: drawing is render's

        return summary_rows(self, kinds)

    def summary_footer(self) -> list[str]:
        """The lines under the :meth:`summary` table: totals, the census, what was not seen."""
        from fxmaps.render.table import summary_footer  # a display method: drawing is render's

        return summary_footer(self)

    def _not_found(self, name: object) -> NodeNotFoundError:
        matches = close_matches(name, self._layers)
        hint = f"; did you mean {', '.join(map(repr, matches))}?" if matches else ""
        if isinstance(name, str) and self.module_calls(name):
            returned = [
                layer.name for layer in self._layers.values() if (name, 0) in layer.returned_by
            ]
            hint = (
                f". {name!r} is a module: its call returns node {', '.join(map(repr, returned))}; "
                f"select it with fxmaps.Module({name!r}) or 'module:{name}'"
            )
        elif not isinstance(name, str):
            hint = f"; nodes are named by strings, like {next(iter(self._layers), 'x')!r}"
        return NodeNotFoundError(
            f"no node named {name!r} in the graph of {type(self._model).__name__} "
            f"({len(self._layers)} nodes){hint}",
            name=name,
            candidates=tuple(matches),
        )

    def _repr_html_(self) -> str:
        """Census chips and the graph collapsed by blocks (SVG), for Jupyter."""
        from fxmaps.render.notebook import graph_html  # a display method: drawing is render's

        return graph_html(self)

    def __repr__(self) -> str:
        info = self.info()
        counts = ", ".join(f"{k}={info[k]}" for k in HEADLINE)
        return f"<ModelGraph of {type(self._model).__name__}: {len(self)} nodes, {counts}>"
