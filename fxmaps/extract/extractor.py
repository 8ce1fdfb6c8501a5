"""``fxmaps.extract`` and ``FeatureExtractor``: the maps of any chosen nodes, in one pass.

The extractor is built from fxmaps's own traced graph, the way torchvision's
``create_feature_extractor`` builds one (same node names; the chosen nodes are
returned from the output node, dead code dropped, the module recompiled), with
three differences:

* nodes inside ``torchvision.ops`` modules (every conv of EfficientNet and
  MobileNet, the linears of ViT) are there to choose;
* each map is what its node produced, even when a later in-place op overwrites
  it: those maps, and only those, are copied when produced (see :mod:`.aliases`, :mod:`.rewrite`),
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

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from fxmaps.errors import (
    FxmapsError,
    FxmapsWarning,
    InputError,
    MemoryLimitError,
)
from fxmaps.extract import cache
from fxmaps.extract.failures import checked_inputs, explain_failure, non_finite_maps
from fxmaps.extract.maps import FeatureMaps
from fxmaps.extract.memory import (
    estimate_bytes,
    max_bytes_option,
    memory_limit,
    memory_message,
    number,
)
from fxmaps.extract.resident import release
from fxmaps.extract.rewrite import Plan, build_extraction
from fxmaps.extract.runner import CapturedExtraction
from fxmaps.extract.transforms import MapOptions, map_options
from fxmaps.facts import Layout
from fxmaps.graph import (
    Layer,
    ModelGraph,
    Selection,
    analyze,
    graph_for_inputs,
    renames,
    require_layers,
)
from fxmaps.graph.checks import (
    check_module,
    non_finite_input_note,
)
from fxmaps.trace.inputs import ExampleInput, Inputs, as_inputs
from fxmaps.trace.shapes import all_finite
from fxmaps.trace.state import model_lock, preserved_state
from fxmaps.trace.variants import graph_inputs

__all__ = ["FeatureExtractor", "extract"]

_Found = tuple[dict[str, Any], dict[str, int], dict[str, Any]]
_Run = Callable[[Inputs], _Found]
_Extraction = tuple[_Run, nn.Module, Plan, frozenset[str]]

_TRANSFORM_PREFIX = "fxmaps_map_"
_OUT_OF_PLACE_PREFIX = "fxmaps_out_of_place_"


class FeatureExtractor(nn.Module):
    """An ``nn.Module`` that returns the maps of the chosen nodes; build once, call often.

    It shares the analysed model's submodules (and so its parameters and modes):
    calling it runs the model's own layers in whatever mode they are in. Its
    parameters, buffers and submodules are the model's, under the model's names
    (``named_parameters()``, ``state_dict()``; ``load_state_dict`` takes the model's
    state dict and loads it into the model). Use it
    inside a training loop as it is; :func:`extract` puts the model in the mode
    the graph was traced in and turns gradients off.

    Args:
        graph: The analysed model, or a model, which is analysed first with
            ``fxmaps.analyze(model)``: symbolically, as no input is known yet, so
            parts torch.fx cannot trace stay opaque (pass ``fxmaps.analyze(model,
            example_input)`` to capture those). Anything else: ``InputError``.
        layers: A kind, node names, glob patterns, modules (``fxmaps.Module("layer1")``
            or ``"module:layer1"``), a list of those, a predicate, or a dict of those to
            new names (the maps come back under the new names, as
            ``create_feature_extractor``'s ``return_nodes``).
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
            CUDA memory), read at each call; ``math.inf`` turns the check off. A size
            as the command line takes it (``"512M"``, ``"2G"``: powers of 1024) works too.

    Calling it checks the inputs as :func:`fxmaps.analyze` does (device, dtype,
    a missing batch dimension), estimates the maps' bytes from their shapes on
    the meta device (once per input shape) and explains a failing run with the
    node that failed (``ShapeError``).

    One extractor may be called from several threads: each call runs the model
    holding the model's lock, as every fxmaps call that runs it does, so calls
    take turns and none sees another's temporary mode.

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
        graph: ModelGraph | nn.Module,
        layers: Selection = "conv",
        *,
        channels: Any = None,
        reduce: str | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        spatial: bool = False,
        max_bytes: float | str | None = None,
    ) -> None:
        super().__init__()
        self._graph = _graph_of(graph)
        self._layers = require_layers(self._graph, layers)
        self._renames = renames(self._graph, layers)
        self._options = map_options(
            channels=channels, reduce=reduce, dtype=dtype, device=device, spatial=spatial
        )
        self.max_bytes = max_bytes_option(max_bytes)
        self._estimates: dict[Any, list[tuple[str, int]] | None] = {}
        self._by_name = {layer.name: layer for layer in self._layers}
        self._key = (tuple(self.names), self._options)
        with model_lock(self._graph.model):  # the model's lock first, then the cache's
            self._hold(cache.cached(self._graph, ("extraction", self._key), self._build))
        self._share_state(self._graph.model)

    graph_module: nn.Module
    """What runs: the rewritten graph (over the model's own layers), or for a captured
    model the model itself."""
    _runner: _Run
    _plan: Plan
    _forced: frozenset[str]

    def _hold(self, extraction: _Extraction) -> None:
        """Keep how to run; the module that runs is not registered as a submodule (the
        extractor's submodules and parameters are the model's, see :meth:`_share_state`)."""
        runner, module, plan, forced = extraction
        vars(self).update(_runner=runner, graph_module=module, _plan=plan, _forced=forced)

    def _share_state(self, model: nn.Module) -> None:
        """The extractor's parameters, buffers and submodules are the model's, under the
        model's names: ``named_parameters()``, ``state_dict()`` and ``load_state_dict()``
        of the model's state dict are the model's, and ``.to()`` moves the model."""
        for registry in ("_parameters", "_buffers", "_non_persistent_buffers_set", "_modules"):
            vars(self)[registry] = getattr(model, registry)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Set the mode of the model, as its own ``train`` does, and of the copies of its
        layers that the rewritten graph runs (layers run out of place)."""
        super().train(mode)
        self._graph.model.train(mode)
        self.graph_module.train(mode)
        return self

    def release_memory(self) -> None:
        """Let go of the memory kept for the next call.

        An in-place ReLU that would overwrite a chosen map runs out of place, and its
        output (a map too) is written into the memory of the previous call's output,
        once nothing of that result is held any more (:mod:`fxmaps.extract.resident`):
        on the CPU that saves mapping fresh pages on every call. The extractor (and the
        graph's cache, for :func:`extract`) keeps that memory between calls; this lets
        it go. The next call takes fresh memory again.
        """
        release(self.graph_module)
        if isinstance(self._runner, CapturedExtraction):
            self._runner.release_memory()

    def _build(self, forced: frozenset[str] = frozenset()) -> _Extraction:
        """How to run, and the module that holds the layers it runs (so that the
        extractor's parameters are the model's): the rewritten graph; for a captured
        model, the captured run and the model."""
        model = self._graph.model
        if self._graph.capture is not None:
            captured = CapturedExtraction(self._graph, self._layers, self._options, forced)
            return captured, model, Plan(forced, ()), forced
        module, plan = build_extraction(self._graph, self._layers, self._options, forced)

        def run(inputs: Inputs) -> _Found:
            found: _Found = module(*graph_inputs(model, inputs))
            return found

        return run, module, plan, forced

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

    def forward(self, *args: Any, **kwargs: Any) -> FeatureMaps:
        """The maps for the model called with ``args`` and ``kwargs``."""
        inputs = as_inputs(Inputs(args, kwargs), self._graph.model, argument="inputs")
        assert inputs is not None  # an Inputs is never None
        inputs, notes = checked_inputs(self._graph, inputs)
        for note in notes:
            warnings.warn(note, FxmapsWarning, stacklevel=4)  # past nn.Module's __call__
        with model_lock(self._graph.model):
            return self._run(inputs)

    def _run(self, inputs: Inputs) -> FeatureMaps:
        """Extract from inputs that :func:`checked_inputs` already checked."""
        batch = inputs.tensors()
        self._check_memory(batch)
        try:
            maps, versions, kept = self._runner(inputs)
        except FxmapsError:
            raise
        except Exception as err:
            explained = explain_failure(self._graph, inputs, err)
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
            rebuilt = self._build(self._forced | mutated)
            cache.store(self._graph, ("extraction", self._key), rebuilt)
            self._hold(rebuilt)
            return self._run(inputs)
        return _feature_maps(maps, kept, self._by_name, self._renames, self._options)

    def _check_memory(self, batch: Sequence[torch.Tensor]) -> None:
        """Refuse (``MemoryLimitError``) inputs whose maps would take more than the limit."""
        if self.max_bytes == math.inf or not batch:
            return
        shapes = tuple((tuple(t.shape), t.dtype, t.device) for t in batch)
        sizes = self._estimates.get(shapes)
        if sizes is None:  # the graph's cache shares one estimate among extractors
            sizes = self._estimates[shapes] = cache.cached(
                self._graph,
                ("estimate", self._key, shapes),
                lambda: estimate_bytes(self._graph, self._layers, self._options, batch),
            )
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
            raise MemoryLimitError(
                memory_message(sizes, int(batch[0].shape[0]), limit, why),
                needed=sum(size for _, size in sizes),
                limit=limit,
            )


def _feature_maps(
    maps: dict[str, Any],
    kept: dict[str, Any],
    layers: dict[str, Layer],
    renamed: list[tuple[str, str]] | None,
    options: MapOptions,
) -> FeatureMaps:
    """The maps under their keys: a node's name (or its new name), and for a node whose
    output is a tuple, list or dict, ``name[0]``, ``name[1][0]``, ``name['key']`` for each
    tensor in it. Nodes with no tensor at all are skipped, with a warning naming them."""
    keys = renamed if renamed is not None else [(name, name) for name in maps]
    tensors: dict[str, torch.Tensor] = {}
    by_key: dict[str, Layer] = {}
    channels: dict[str, torch.Tensor] = {}
    for name, key in keys:
        for part, tensor, indices in _parts(key, maps[name], kept.get(name)):
            tensors[part], by_key[part] = tensor, _as_returned(layers[name], tensor, options)
            if indices is not None:
                channels[part] = indices
    skipped = [name for name in maps if not _parts(name, maps[name], None)]
    if skipped:
        shown = ", ".join(repr(name) for name in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(
            f"no map for {shown}{more}: the output holds no tensor (a size, a flag, None); "
            "they are listed in maps.skipped",
            FxmapsWarning,
            stacklevel=4,
        )
    return FeatureMaps(tensors, by_key, channels=channels, skipped=skipped)


def _as_returned(layer: Layer, tensor: torch.Tensor, options: MapOptions) -> Layer:
    """The layer record of a map as it was returned: its shape (after ``spatial``, ``channels``,
    ``reduce``, or another batch than the example input's) and, where ``spatial=True`` turned
    channels-last tokens or grids into ``(N, C, H, W)``, a channels-first layout."""
    layout = layer.layout
    spatial = options.spatial and options.reduce is None and layout is Layout.CHANNELS_LAST
    if spatial and tensor.dim() == 4:  # to_spatial made it (N, C, H, W); other shapes stay
        layout = Layout.CHANNELS_FIRST
    shape = tuple(tensor.shape)
    if shape == layer.out_shape and layout is layer.layout:
        return layer
    return dataclasses.replace(layer, out_shape=shape, layout=layout)


def _parts(key: str, value: Any, kept: Any) -> list[tuple[str, torch.Tensor, Any]]:
    """The tensors in ``value`` with their keys, and their kept channels (same structure)."""
    if isinstance(value, torch.Tensor):
        return [(key, value, kept if isinstance(kept, torch.Tensor) else None)]
    if isinstance(value, (tuple, list)):
        indexed: Sequence[Any] = kept if isinstance(kept, (tuple, list)) else [None] * len(value)
        return [p for i, v in enumerate(value) for p in _parts(f"{key}[{i}]", v, indexed[i])]
    if isinstance(value, dict):
        keyed: dict[Any, Any] = kept if isinstance(kept, dict) else {}
        items = value.items()
        return [p for k, v in items for p in _parts(f"{key}[{k!r}]", v, keyed.get(k))]
    return []


def _graph_of(given: object) -> ModelGraph:
    """The graph a :class:`FeatureExtractor` is built on: ``given``, or its analysis."""
    if isinstance(given, ModelGraph):
        return given
    model = check_module(
        given,
        "FeatureExtractor()",
        argument="graph",
        wanted="a ModelGraph (from fxmaps.analyze) or a torch.nn.Module",
        stacklevel=4,
    )
    return analyze(model)


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
    max_bytes: float | str | None = None,
) -> FeatureMaps:
    """The maps of the chosen nodes for ``inputs``, in one forward pass.

    Passing a model analyses it first (a trace each call); pass the
    :class:`ModelGraph` from :func:`fxmaps.analyze` to reuse it. What extraction
    builds for a graph and a selection is kept while the graph lives, so repeated
    calls do not rebuild it. The model runs in the mode its graph was traced in
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
    model = model_or_graph.model if isinstance(model_or_graph, ModelGraph) else model_or_graph
    model = check_module(model, "extract()")
    given = as_inputs(inputs, model, argument="inputs")
    if given is None:
        raise InputError(
            "extract() needs inputs: a tensor or a tuple of tensors", argument="inputs", got="None"
        )
    if isinstance(model_or_graph, ModelGraph):
        graph = model_or_graph
    else:
        graph = graph_for_inputs(model, given)
    extractor = FeatureExtractor(
        graph,
        layers,
        channels=channels,
        reduce=reduce,
        dtype=dtype,
        device=device,
        spatial=spatial,
        max_bytes=max_bytes,
    )
    given, notes = checked_inputs(graph, given)
    bad_input = non_finite_input_note(given.tensors(), "input")
    for note in [*notes, bad_input]:
        if note:
            warnings.warn(note, FxmapsWarning, stacklevel=2)
    with preserved_state(graph.model, train=graph.train), torch.no_grad():
        maps: FeatureMaps = extractor._run(given)
        if bad_input is None and not all_finite(list(maps.values())):
            warnings.warn(non_finite_maps(graph, given, maps), FxmapsWarning, stacklevel=2)
    return maps
