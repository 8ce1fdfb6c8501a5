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

Before the model runs, the bytes the maps will take are estimated from their
shapes, found on the meta device (nothing computed, the model untouched), and a
request above the memory limit is refused with what to do (``max_bytes``). A
failure during the run is explained by shape propagation, which names the node.
"""

from __future__ import annotations

import copy
import inspect
import math
import operator
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from fxmaps.classify import Kind
from fxmaps.errors import (
    DeviceError,
    FxmapsError,
    FxmapsWarning,
    InputError,
    MemoryLimitError,
    OptionError,
    ShapeError,
)
from fxmaps.extract.aliases import plan_liveness
from fxmaps.extract.maps import FeatureMaps
from fxmaps.extract.memory import estimate_bytes, memory_limit, memory_message, number
from fxmaps.extract.transforms import MapOptions, MapTransform, map_options
from fxmaps.graph.analyze import graph_for_inputs
from fxmaps.graph.checks import (
    ExampleInput,
    as_example_inputs,
    check_module,
    non_finite_input_note,
    non_finite_maps_note,
    prepare_inputs,
)
from fxmaps.graph.model_graph import Layer, ModelGraph
from fxmaps.graph.select import Selection, select_layers
from fxmaps.trace.shapes import (
    all_finite,
    first_non_finite,
    preserved_state,
    propagate,
)

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
        max_bytes: Refuse (``MemoryLimitError``, before the model runs) a call whose
            maps would take more bytes than this. ``None``: half the memory
            available where the maps go (free RAM from ``/proc/meminfo``, or free
            CUDA memory), read at each call; ``math.inf`` turns the check off.

    Calling it checks the inputs as :func:`fxmaps.analyze` does (device, dtype,
    a missing batch dimension), estimates the maps' bytes from their shapes on
    the meta device (once per input shape) and explains a failing run with the
    node that failed (``ShapeError``).

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
        max_bytes: float | None = None,
    ) -> None:
        super().__init__()
        self._graph = graph
        self._layers = select_layers(graph, layers)
        self._options = map_options(
            channels=channels, reduce=reduce, dtype=dtype, device=device, spatial=spatial
        )
        if max_bytes is not None and not max_bytes >= 0:
            raise OptionError(f"max_bytes={max_bytes!r} must be a number of bytes >= 0, or None")
        self.max_bytes = max_bytes
        self._estimates: dict[Any, list[tuple[str, int]] | None] = {}
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
        batch = as_example_inputs(inputs, argument="inputs") or ()
        batch, notes = checked_inputs(self._graph, batch)
        for note in notes:
            warnings.warn(note, FxmapsWarning, stacklevel=4)  # past nn.Module's __call__
        return self._run(batch)

    def _run(self, batch: tuple[torch.Tensor, ...]) -> FeatureMaps:
        """Extract from inputs that :func:`checked_inputs` already checked."""
        self._check_memory(batch)
        try:
            maps, versions, kept = self.graph_module(*batch)
        except FxmapsError:
            raise
        except Exception as err:
            explained = _explain_failure(self._graph, batch, err)
            if explained is None:
                raise
            raise explained from err
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
            return self._run(batch)
        tensors = {name: v for name, v in maps.items() if isinstance(v, torch.Tensor)}
        layers = {layer.name: layer for layer in self._layers}
        channels = {name: k for name, k in kept.items() if k is not None}
        skipped = [name for name in maps if name not in tensors]
        return FeatureMaps(tensors, layers, channels=channels, skipped=skipped)

    def _check_memory(self, batch: Sequence[torch.Tensor]) -> None:
        """Refuse (``MemoryLimitError``) inputs whose maps would take more than the limit."""
        if self.max_bytes == math.inf or not batch:
            return
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in batch)
        if key not in self._estimates:
            self._estimates[key] = estimate_bytes(self._graph, self._layers, self._options, batch)
        sizes = self._estimates[key]
        if not sizes:
            return
        found = (
            memory_limit(torch.device(self._options.device or batch[0].device))
            if self.max_bytes is None
            else (self.max_bytes, f"max_bytes={number(self.max_bytes)}")
        )
        if found is None:
            return
        limit, why = found
        if sum(size for _, size in sizes) > limit:
            raise MemoryLimitError(memory_message(sizes, int(batch[0].shape[0]), limit, why))


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
    max_bytes: float | None = None,
) -> FeatureMaps:
    """The maps of the chosen nodes for ``inputs``, in one forward pass.

    Passing a model analyses it first (a trace each call); pass the
    :class:`ModelGraph` from :func:`fxmaps.analyze` to reuse it. The extractor
    built for a graph and a selection is cached on the graph, so repeated calls
    do not trace again. The model runs in the mode its graph was traced in
    (eval by default), without gradients; its modes and buffers are restored
    afterwards, so a training-mode graph leaves BatchNorm's running statistics
    as they were. (A :class:`FeatureExtractor` called directly runs as the model
    would, updating them in training mode.)
    The options are those of :class:`FeatureExtractor`, ``max_bytes`` included.

    The inputs are checked as :func:`fxmaps.analyze` checks them (NumPy arrays
    are made tensors, another float dtype is converted, a missing batch
    dimension is added, each with a warning). NaN or inf in the inputs, or in
    maps made from finite inputs, give an ``FxmapsWarning``; the latter names
    the first node that produced them (found with one more forward pass).

    Raises:
        NodeNotFoundError: A chosen name is not in the graph (close matches listed).
        OptionError: An empty selection or an invalid option.
        InputError: ``model_or_graph`` is not a model, or ``inputs`` are not tensors
            (or are integers where the model computes in floating point).
        DeviceError: ``inputs`` are on another device than the model.
        ShapeError: The inputs do not fit the model; the node that failed is named.
        MemoryLimitError: The maps would take more than ``max_bytes``.

    Example:
        >>> import torch, torchvision, fxmaps
        >>> maps = fxmaps.extract(torchvision.models.resnet18(), torch.randn(2, 3, 64, 64),
        ...                       layers="layer1.*.conv*", channels="top:4")
        >>> list(maps), tuple(maps["layer1.0.conv1"].shape)
        (['layer1.0.conv1', 'layer1.0.conv2', 'layer1.1.conv1', 'layer1.1.conv2'], (2, 4, 16, 16))
    """
    batch = as_example_inputs(inputs, argument="inputs")
    if batch is None:
        raise InputError("extract() needs inputs: a tensor or a tuple of tensors")
    if isinstance(model_or_graph, ModelGraph):
        graph = model_or_graph
    else:
        check_module(model_or_graph, "extract()")
        graph = graph_for_inputs(model_or_graph, len(batch))
    controls: dict[str, Any] = {
        "channels": channels, "reduce": reduce, "dtype": dtype, "device": device, "spatial": spatial
    }  # fmt: skip
    chosen = select_layers(graph, layers)
    key = ("fxmaps.extract", tuple(layer.name for layer in chosen), map_options(**controls))
    extractor = graph.cached(
        (*key, max_bytes),
        lambda: FeatureExtractor(graph, chosen, **controls, max_bytes=max_bytes),
    )
    batch, notes = checked_inputs(graph, batch)
    bad_input = non_finite_input_note(batch, "input")
    for note in [*notes, bad_input]:
        if note:
            warnings.warn(note, FxmapsWarning, stacklevel=2)
    with preserved_state(graph.model, train=graph.train), torch.no_grad():
        maps: FeatureMaps = extractor._run(batch)
        if bad_input is None and not all_finite(list(maps.values())):
            warnings.warn(_non_finite_maps(graph, batch, maps), FxmapsWarning, stacklevel=2)
    return maps


def checked_inputs(
    graph: ModelGraph, inputs: tuple[torch.Tensor, ...]
) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """The inputs checked against the graph's model (see :func:`fxmaps.analyze.prepare_inputs`);
    a model on the meta device is refused, since its maps would hold no values."""
    param = next(graph.model.parameters(), None)
    if param is not None and param.device.type == "meta":
        raise DeviceError(
            f"{type(graph.model).__name__}'s parameters are on the meta device and hold no "
            "values, so it has no maps to extract. Give it real weights first "
            "(model.to_empty(device='cpu'), then load_state_dict); analyze() with a meta "
            "input gives its shapes"
        )
    return prepare_inputs(graph.model, graph.graph_module, _node_names(graph), inputs,
                          argument="input")  # fmt: skip


def _node_names(graph: ModelGraph) -> dict[fx.Node, str]:
    return graph.cached(
        "fxmaps.node_names",
        lambda: {graph.fx_node(layer.name): layer.name for layer in graph.layers()},
    )


def _explain_failure(
    graph: ModelGraph, batch: tuple[torch.Tensor, ...], err: Exception
) -> FxmapsError | None:
    """What made the run fail, as an fxmaps error; ``None`` when it is not the input's fault."""
    text = str(err)
    if isinstance(err, MemoryError) or "out of memory" in text or "can't allocate" in text:
        return MemoryLimitError(
            f"the model ran out of memory during extraction ({type(err).__name__}: "
            f"{text.strip().splitlines()[0] if text.strip() else ''}); keep less: a smaller "
            "batch, fewer layers, channels=, reduce= or dtype=torch.float16"
        )
    try:
        with preserved_state(graph.model, train=graph.train):
            propagate(graph.graph_module, batch, _node_names(graph), train=graph.train)
    except ShapeError as shape_error:
        return shape_error
    return None


def _non_finite_maps(graph: ModelGraph, batch: tuple[torch.Tensor, ...], maps: FeatureMaps) -> str:
    bad = [name for name, tensor in maps.items() if not all_finite(tensor)]
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    with preserved_state(graph.model, train=graph.train):
        first = first_non_finite(graph.graph_module, batch, _node_names(graph))
    return non_finite_maps_note(first, f"the map of {bad[0]!r}{more}")


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
