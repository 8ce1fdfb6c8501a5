"""The analysed model: :class:`Layer` records and the :class:`ModelGraph` that holds them.

A :class:`ModelGraph` is built by :func:`fxmaps.analyze`; it is read-only. Its
``nx`` attribute is a ``networkx.DiGraph`` keyed by node name, whose node and
edge attributes are named by the ``ATTR_*`` constants of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import networkx as nx
from tabulate import tabulate
from torch import fx, nn
from torch.nn.parameter import UninitializedParameter

from fxmaps.classify import Block, BlockKind, Kind, Layout, Residual
from fxmaps.errors import NodeNotFoundError, OptionError, close_matches
from fxmaps.trace.shapes import ShapeTree
from fxmaps.trace.tracer import OpaqueModule

__all__ = [
    "ATTR_BLOCK",
    "ATTR_KIND",
    "ATTR_LAYER",
    "ATTR_OPAQUE",
    "ATTR_OUT_SHAPE",
    "ATTR_PARAMS",
    "ATTR_ROLE",
    "ATTR_TARGET",
    "ATTR_TYPE",
    "ROLE_DATA",
    "SUMMARY_HEADERS",
    "Layer",
    "ModelGraph",
    "count_parameters",
    "format_shape",
]

ATTR_LAYER = "layer"
ATTR_KIND = "kind"
ATTR_TARGET = "target"
ATTR_TYPE = "module_type"
ATTR_OUT_SHAPE = "out_shape"
ATTR_PARAMS = "params"
ATTR_BLOCK = "block"
ATTR_OPAQUE = "opaque"
ATTR_ROLE = "role"
ROLE_DATA = "data"

T = TypeVar("T")
SUMMARY_HEADERS = ("name", "kind", "type", "output shape", "params", "block")
_HEADLINE = ("conv", "downsample", "linear", "sequential", "residual")


@dataclass(frozen=True)
class Layer:
    """One node of the analysed graph.

    Attributes:
        name: The node name ``create_feature_extractor`` accepts
            (``layer1.0.conv1``; ``_1`` for a second call of a module).
        kind: What the node does.
        target: The module's qualified path for a module call, the function's
            or method's name otherwise.
        module: The called module, or ``None`` for functions and methods.
        out_shape: The output shape, or ``None`` without an example input (or
            for non-tensor outputs).
        params: Number of parameters the node uses (shared ones included).
        block: The innermost enclosing residual or sequential block, if any.
        opaque: Whether the node is a module fxmaps did not trace into.
        layout: Whether the output keeps its channels first ``(N, C, ...)`` or last
            ``(N, ..., C)``.
    """

    name: str
    kind: Kind
    target: str
    module: nn.Module | None = field(compare=False, repr=False)
    out_shape: ShapeTree | None
    params: int
    block: str | None
    opaque: bool = False
    layout: Layout = Layout.UNKNOWN

    @property
    def module_type(self) -> str:
        """The class name of the called module, or the target for other nodes."""
        return type(self.module).__name__ if self.module is not None else self.target


def count_parameters(parameters: Iterable[nn.Parameter]) -> int:
    """Number of elements, with uninitialized (lazy) parameters counted as 0."""
    return sum(0 if isinstance(p, UninitializedParameter) else p.numel() for p in parameters)


def format_shape(shape: ShapeTree | None) -> str:
    """``(1, 64, 56, 56)`` -> ``'1×64×56×56'``; tuples of shapes joined by commas."""
    if shape is None:
        return ""
    if all(isinstance(d, int) for d in shape):
        return "×".join(str(d) for d in shape) or "scalar"
    return ", ".join(format_shape(s) for s in shape)  # type: ignore[arg-type]


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
        fx_nodes: Mapping[str, fx.Node],
        edges: Iterable[tuple[str, str, str]],
        blocks: Sequence[Block],
        residuals: Sequence[Residual],
        opaque: Sequence[OpaqueModule],
        autowrapped: Sequence[str],
        first_use_params: Mapping[str, int],
        input_shapes: tuple[ShapeTree | None, ...] | None,
        train: bool,
    ) -> None:
        self._model = model
        self._graph_module = graph_module
        self._layers = {layer.name: layer for layer in layers}
        self._fx_nodes = dict(fx_nodes)
        self._edges = tuple(edges)
        self._blocks = tuple(blocks)
        self._residuals = tuple(residuals)
        self._opaque = tuple(opaque)
        self._autowrapped = tuple(autowrapped)
        self._first_use_params = dict(first_use_params)
        self._input_shapes = input_shapes
        self._train = train
        self._memo: dict[Hashable, Any] = {}

    # -- records -------------------------------------------------------------------------

    def layers(self, kind: Kind | str | Iterable[Kind | str] | None = None) -> list[Layer]:
        """Layers in execution order, all of them or those of the given kind(s).

        Raises:
            OptionError: ``kind`` names no :class:`~fxmaps.Kind`.
        """
        if kind is None:
            return list(self._layers.values())
        wanted = _kinds(kind)
        return [layer for layer in self._layers.values() if layer.kind in wanted]

    def layer(self, name: str) -> Layer:
        """The layer called ``name``.

        Raises:
            NodeNotFoundError: No such node; the message lists close matches.
        """
        try:
            return self._layers[name]
        except KeyError:
            raise NodeNotFoundError(self._not_found(name)) from None

    def __getitem__(self, name: str) -> Layer:
        return self.layer(name)

    def __contains__(self, name: object) -> bool:
        return name in self._layers

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

    @property
    def opaque(self) -> tuple[OpaqueModule, ...]:
        """Modules traced as single nodes (auto-leaf or ``leaf_modules``), with reasons."""
        return self._opaque

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
        """The traced ``torch.fx.GraphModule``; it shares the model's submodules."""
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
        self.layer(name)
        return self._fx_nodes[name]

    def cached(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value built for ``key`` on this graph, built on first use.

        Later stages keep what they derive from a graph here (extraction keeps its
        built extractors), so the cache lives and dies with the graph.
        """
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]  # type: ignore[no-any-return]

    @property
    def total_params(self) -> int:
        """Parameters the traced graph uses, each shared parameter counted once."""
        return sum(self._first_use_params.values())

    # -- networkx --------------------------------------------------------------------------

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
                    ATTR_BLOCK: layer.block,
                    ATTR_OPAQUE: layer.opaque,
                },
            )
        for source, target, role in self._edges:
            graph.add_edge(source, target, **{ATTR_ROLE: role})
        return graph

    # -- counts and tables -----------------------------------------------------------------

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
        info = {key: counts[key] for key in _HEADLINE}
        info.update({k: v for k, v in kinds.items() if v and k not in info})
        info["opaque"] = len(self._opaque)
        info["nodes"] = len(self._layers)
        return info

    def summary(self, kinds: Kind | str | Iterable[Kind | str] | None = None) -> str:
        """A table of the layers: name, kind, type, output shape, parameters, block.

        Shared parameters are counted on the first node that uses them (later
        uses read ``shared``), so the parameter column adds up to the total.

        Args:
            kinds: Show only these kinds (the totals still cover every layer).
        """
        table = tabulate(
            self.summary_rows(kinds),
            headers=list(SUMMARY_HEADERS),
            colalign=("left", "left", "left", "left", "right", "left"),
            disable_numparse=True,
        )
        return "\n".join([table, *self.summary_footer()])

    def summary_rows(
        self, kinds: Kind | str | Iterable[Kind | str] | None = None
    ) -> list[list[str]]:
        """The rows of :meth:`summary`, one per layer, as strings (columns: ``SUMMARY_HEADERS``)."""
        return [
            [
                layer.name,
                layer.kind.value + (" (opaque)" if layer.opaque else ""),
                layer.module_type,
                format_shape(layer.out_shape),
                self._params_cell(layer),
                layer.block or "",
            ]
            for layer in self.layers(kinds)
        ]

    def _params_cell(self, layer: Layer) -> str:
        first = self._first_use_params.get(layer.name, 0)
        if layer.params and not first:
            return "shared"
        return f"{first:,}" if first else ""

    def summary_footer(self) -> list[str]:
        """The lines under the :meth:`summary` table: totals, the census, what was not seen."""
        model_params = count_parameters(self._model.parameters())
        info = self.info()
        lines = [
            f"Total params: {self.total_params:,} (the model has {model_params:,})",
            "Layers: "
            + ", ".join(
                f"{k} {v}" for k, v in info.items() if k != "nodes" and (v or k in _HEADLINE)
            ),
        ]
        if model_params != self.total_params:
            lines.append(
                f"{model_params - self.total_params:,} parameters are not used by the traced "
                f"{'training' if self._train else 'eval'}-mode graph"
            )
        if self._opaque:
            names = ", ".join(o.name for o in self._opaque[:5])
            more = f" and {len(self._opaque) - 5} more" if len(self._opaque) > 5 else ""
            lines.append(f"Opaque (not traced into): {names}{more}")
        return lines

    def _not_found(self, name: str) -> str:
        matches = close_matches(name, self._layers)
        hint = f"; did you mean {', '.join(map(repr, matches))}?" if matches else ""
        return (
            f"no node named {name!r} in the graph of {type(self._model).__name__} "
            f"({len(self._layers)} nodes){hint}"
        )

    def __repr__(self) -> str:
        info = self.info()
        counts = ", ".join(f"{k}={info[k]}" for k in _HEADLINE)
        return f"<ModelGraph of {type(self._model).__name__}: {len(self)} nodes, {counts}>"


def _kinds(kind: Kind | str | Iterable[Kind | str]) -> frozenset[Kind]:
    values = [kind] if isinstance(kind, str) else list(kind)
    try:
        return frozenset(Kind(value) for value in values)
    except ValueError:
        valid = ", ".join(k.value for k in Kind)
        raise OptionError(f"unknown kind in {kind!r}; kinds are: {valid}") from None
