"""``fxmaps.extract`` and ``FeatureExtractor``: the maps of any chosen nodes, in one pass.

The extractor is built from fxmaps's own traced graph, the way torchvision's
``create_feature_extractor`` builds one (same node names; the chosen nodes are
returned from the output node, dead code dropped, the module recompiled), with
three differences:

* nodes inside ``torchvision.ops`` modules (every conv of EfficientNet and
  MobileNet, the linears of ViT) are there to choose;
* each map is what its node produced, even when a later in-place op overwrites
  it: those maps, and only those, are copied when produced (see ``_aliases``),
  and a version-counter check after each run catches any mutation the static
  analysis could not see, rebuilding the extractor to copy that map too;
* channel selection, reduction, dtype and device moves run right after each
  chosen node, inside the graph, so full-size maps are never kept.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from fxmaps._aliases import plan_liveness
from fxmaps._transforms import MapOptions, MapTransform, map_options
from fxmaps.analyze import ExampleInput, as_example_inputs, check_device, graph_for_inputs
from fxmaps.classify import Kind
from fxmaps.errors import FxmapsError, InputError
from fxmaps.graph import Layer, ModelGraph
from fxmaps.maps import FeatureMaps
from fxmaps.select import Selection, select_layers

__all__ = ["FeatureExtractor", "extract"]

_TRANSFORM_PREFIX = "fxmaps_map_"
_OUT_OF_PLACE_PREFIX = "fxmaps_out_of_place_"


class FeatureExtractor(nn.Module):
    """An ``nn.Module`` that returns the maps of the chosen nodes; build once, call often.

    It shares the analysed model's submodules (and so its parameters and modes):
    calling it runs the model's own layers in whatever mode they are in. Use it
    inside a training loop as it is; :func:`extract` puts the model in the mode
    the graph was traced in and turns gradients off.

    Args:
        graph: The analysed model.
        layers: A kind, node names, glob patterns, a list of those, or a predicate.
        channels: Channel indices, a ``slice``, or ``"top:k"``.
        reduce: ``"mean"``, ``"max"`` or ``"norm"`` over channels, or ``"mean:space"``
            (``"max:space"``, ``"norm:space"``) over the spatial or token axes.
        dtype: Store maps in this dtype (for example ``torch.float16``).
        device: Move each map here as soon as it is produced.
        spatial: Return channels-last tokens ``(N, L, C)`` and grids ``(N, H, W, C)`` as
            ``(N, C, H, W)``, dropping class and register tokens.

    Example:
        >>> import torch, torchvision, fxmaps
        >>> g = fxmaps.analyze(torchvision.models.resnet18())
        >>> extractor = fxmaps.FeatureExtractor(g, ["bn1", "relu"])
        >>> maps = extractor(torch.randn(1, 3, 64, 64))
        >>> bool(maps["bn1"].min() < 0), bool(maps["relu"].min() >= 0)  # bn1 is pre-ReLU
        (True, True)
    """

    def __init__(
        self,
        graph: ModelGraph,
        layers: Selection = "conv",
        *,
        channels: Any = None,
        reduce: str | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        spatial: bool = False,
    ) -> None:
        super().__init__()
        self._graph = graph
        self._layers = select_layers(graph, layers)
        self._options = map_options(
            channels=channels, reduce=reduce, dtype=dtype, device=device, spatial=spatial
        )
        self._forced: set[str] = set()
        self.graph_module, self._plan = _build(graph, self._layers, self._options, self._forced)

    @property
    def names(self) -> list[str]:
        """The chosen node names, in the order the maps come back."""
        return [layer.name for layer in self._layers]

    @property
    def snapshots(self) -> tuple[str, ...]:
        """Chosen nodes whose map is copied when produced because a later op overwrites it."""
        return tuple(name for name in self.names if name in self._plan.snapshots)

    @property
    def out_of_place(self) -> tuple[str, ...]:
        """In-place nodes this extractor runs out of place, so the maps before them stay intact.

        The model's own modules are not changed: a module is replaced by a copy of it.
        """
        return self._plan.out_of_place

    def forward(self, *inputs: torch.Tensor) -> FeatureMaps:
        maps, versions, kept = self.graph_module(*inputs)
        mutated = {
            name
            for name, value in maps.items()
            if isinstance(value, torch.Tensor) and versions[name] >= 0
            and value._version != versions[name]
        }  # fmt: skip
        if mutated:
            if mutated <= self._forced:
                raise FxmapsError(
                    f"maps {sorted(mutated)} changed after being copied; please report"
                )
            self._forced |= mutated
            self.graph_module, self._plan = _build(
                self._graph, self._layers, self._options, self._forced
            )
            return self.forward(*inputs)
        tensors = {name: v for name, v in maps.items() if isinstance(v, torch.Tensor)}
        layers = {layer.name: layer for layer in self._layers}
        channels = {name: k for name, k in kept.items() if k is not None}
        skipped = [name for name in maps if name not in tensors]
        return FeatureMaps(tensors, layers, channels=channels, skipped=skipped)


def extract(
    model_or_graph: nn.Module | ModelGraph,
    inputs: ExampleInput,
    *,
    layers: Selection = "conv",
    device: torch.device | str | None = None,
    reduce: str | None = None,
    channels: Any = None,
    dtype: torch.dtype | str | None = None,
    spatial: bool = False,
) -> FeatureMaps:
    """The maps of the chosen nodes for ``inputs``, in one forward pass.

    Passing a model analyses it first (a trace each call); pass the
    :class:`ModelGraph` from :func:`fxmaps.analyze` to reuse it. The extractor
    built for a graph and a selection is cached on the graph, so repeated calls
    do not trace again. The model runs in the mode its graph was traced in
    (eval by default), without gradients; its modes are restored afterwards.
    The options are those of :class:`FeatureExtractor`.

    Raises:
        NodeNotFoundError: A chosen name is not in the graph (close matches listed).
        OptionError: An empty selection or an invalid option.
        DeviceError: ``inputs`` are on another device than the model.

    Example:
        >>> import torch, torchvision, fxmaps
        >>> maps = fxmaps.extract(torchvision.models.resnet18(), torch.randn(2, 3, 64, 64),
        ...                       layers="layer1.*.conv*", channels="top:4")
        >>> list(maps), tuple(maps["layer1.0.conv1"].shape)
        (['layer1.0.conv1', 'layer1.0.conv2', 'layer1.1.conv1', 'layer1.1.conv2'], (2, 4, 16, 16))
    """
    batch = as_example_inputs(inputs)
    if batch is None:
        raise InputError("extract() needs inputs: a tensor or a tuple of tensors")
    if isinstance(model_or_graph, ModelGraph):
        graph = model_or_graph
    else:
        graph = graph_for_inputs(model_or_graph, len(batch))
    controls: dict[str, Any] = {
        "channels": channels, "reduce": reduce, "dtype": dtype, "device": device, "spatial": spatial
    }  # fmt: skip
    chosen = select_layers(graph, layers)
    key = ("fxmaps.extract", tuple(layer.name for layer in chosen), map_options(**controls))
    extractor = graph.cached(key, lambda: FeatureExtractor(graph, chosen, **controls))
    check_device(graph.model, batch)
    with _modes(graph.model, train=graph.train), torch.no_grad():
        maps: FeatureMaps = extractor(*batch)
    return maps


@contextlib.contextmanager
def _modes(model: nn.Module, *, train: bool) -> Iterator[None]:
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.train(train)
        yield
    finally:
        for module, mode in saved:
            module.training = mode


def _version_of(value: Any) -> int:
    """The tensor's version counter (bumped by every in-place op on it or its aliases)."""
    if isinstance(value, torch.Tensor) and not value.is_inference():
        return int(value._version)
    return -1


@dataclass(frozen=True)
class _Plan:
    snapshots: frozenset[str]
    out_of_place: tuple[str, ...]


def _build(
    graph: ModelGraph, layers: list[Layer], options: MapOptions, forced: set[str]
) -> tuple[fx.GraphModule, _Plan]:
    """A graph module returning ``(maps, versions, kept channels)`` for the chosen layers."""
    source = graph.graph_module
    nodes = [n for n in source.graph.nodes if n.op != "output"]
    modules = {n: source.get_submodule(str(n.target)) for n in nodes if n.op == "call_module"}
    by_fx = {graph.fx_node(layer.name): layer for layer in graph.layers()}
    kinds = {n: by_fx[n].kind if n in by_fx else Kind.OTHER for n in nodes}
    values = {layer.name: _value_node(graph.fx_node(layer.name)) for layer in layers}
    returned = {layer.name for layer in layers if layer.kind is Kind.OUTPUT}
    requested = {n for name, v in values.items() if name not in returned for n in _nodes_in(v)}
    at_end = {n for name in returned for n in _nodes_in(values[name])}
    plan = plan_liveness(nodes, requested, kinds, modules, read_at_end=at_end)
    snapshots = ({by_fx[n].name for n in plan.snapshots if n in by_fx} | forced) - returned

    position = {node: i for i, node in enumerate(nodes)}
    ready: dict[fx.Node | None, list[Layer]] = {}  # the node after which each map exists
    for layer in layers:
        inside = _nodes_in(values[layer.name])
        at_production = inside and layer.name not in returned
        last = max(inside, key=position.__getitem__) if at_production else None
        ready.setdefault(last, []).append(layer)
    new = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    root: dict[str, Any] = {}
    outputs: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
    for node in nodes:
        if node in plan.out_of_place:
            env[node] = _copy_out_of_place(new, root, node, modules.get(node), env)
        elif node.op == "placeholder" or node in plan.live:
            env[node] = new.node_copy(node, env.__getitem__)
            if node.op in ("call_module", "get_attr"):
                root[str(node.target)] = operator.attrgetter(str(node.target))(source)
        for layer in ready.get(node, []):
            value = fx.map_arg(values[layer.name], env.__getitem__)
            _emit(new, root, layer, value, options, layer.name in snapshots, outputs)
    for layer in ready.get(None, []):  # the model's output, after every op
        value = fx.map_arg(values[layer.name], env.__getitem__)
        _emit(new, root, layer, value, options, False, outputs)
    maps, versions, kept = outputs
    new.output(({n: maps[n] for n in values}, versions, kept))
    rewritten = tuple(by_fx[n].name for n in nodes if n in plan.out_of_place and n in by_fx)
    module = fx.GraphModule(root, new, "FeatureExtractorGraph")
    return module, _Plan(frozenset(snapshots), rewritten)


def _copy_out_of_place(
    new: fx.Graph,
    root: dict[str, Any],
    node: fx.Node,
    module: nn.Module | None,
    env: dict[fx.Node, fx.Node],
) -> fx.Node:
    """``node`` without its in-place write: the same values, its input left intact.

    A module is copied (shallowly, so its hooks still run) with ``inplace=False``;
    the user's own module is never changed.
    """
    args = fx.map_arg(node.args, env.__getitem__)
    kwargs = fx.map_arg(node.kwargs, env.__getitem__)
    if node.op == "call_module":
        twin = copy.copy(module)
        twin.inplace = False  # type: ignore[union-attr]
        target = f"{_OUT_OF_PLACE_PREFIX}{len(root)}"
        root[target] = twin
        return new.call_module(target, args, kwargs)
    if node.op == "call_method":
        return new.call_method(str(node.target)[:-1], args, kwargs)
    bound = inspect.signature(node.target).bind(*args, **kwargs)  # type: ignore[arg-type]
    bound.arguments["inplace"] = False
    return new.call_function(node.target, bound.args, bound.kwargs)  # type: ignore[arg-type]


def _emit(
    new: fx.Graph,
    root: dict[str, Any],
    layer: Layer,
    value: Any,
    options: MapOptions,
    snapshot: bool,
    outputs: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
) -> None:
    """Right where ``layer``'s map is produced: its transform and its version probe."""
    maps, versions, kept = outputs
    kept[layer.name] = None
    if snapshot or not options.identity:
        target = f"{_TRANSFORM_PREFIX}{len(maps)}"
        root[target] = MapTransform(options, layer.layout, snapshot)
        both = new.call_module(target, (value,))
        value = new.call_function(operator.getitem, (both, 0))
        kept[layer.name] = new.call_function(operator.getitem, (both, 1))
    maps[layer.name] = value
    versions[layer.name] = new.call_function(_version_of, (value,))


def _value_node(node: fx.Node) -> Any:
    """What a node's map is: its own output, or for the output node what it returns."""
    return node.args[0] if node.op == "output" else node


def _nodes_in(value: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.map_arg(value, lambda n: found.append(n) or n)  # type: ignore[func-returns-value]
    return found
