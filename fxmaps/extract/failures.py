"""Around an extraction run: the inputs checked before it, and a failed run or maps that are
not finite explained afterwards, naming the node or the smallest input that fits."""

from __future__ import annotations

import torch

from fxmaps.errors import DeviceError, FxmapsError, MemoryLimitError, ShapeError
from fxmaps.extract.maps import FeatureMaps
from fxmaps.graph import ModelGraph
from fxmaps.graph.checks import check_device, non_finite_maps_note, prepare_inputs
from fxmaps.trace.inputs import Inputs, describe_inputs
from fxmaps.trace.minimum import is_too_small, model_input_minimum, too_small_hint
from fxmaps.trace.shapes import all_finite, first_non_finite, is_allocation_failure, propagate
from fxmaps.trace.state import preserved_state
from fxmaps.trace.variants import placeholder_values

__all__ = ["checked_inputs", "explain_failure", "non_finite_maps"]


def checked_inputs(graph: ModelGraph, inputs: Inputs) -> tuple[Inputs, list[str]]:
    """The inputs checked against the graph's model (see :func:`fxmaps.analyze.prepare_inputs`);
    a model on the meta device is refused, since its maps would hold no values. For a
    captured model, only the devices are checked: its graph describes one run."""
    param = next(graph.model.parameters(), None)
    if param is not None and param.device.type == "meta":
        raise DeviceError(
            f"{type(graph.model).__name__}'s parameters are on the meta device and hold no "
            "values, so it has no maps to extract. Give it real weights first "
            "(model.to_empty(device='cpu'), then load_state_dict); analyze() with a meta "
            "input gives its shapes",
            got="meta",
        )
    if graph.capture is not None:
        check_device(graph.model, inputs.tensors(), argument="input")
        return inputs, []
    return prepare_inputs(graph.model, graph.graph_module, inputs, argument="input")


def explain_failure(graph: ModelGraph, inputs: Inputs, err: Exception) -> FxmapsError | None:
    """What made the run fail, as an fxmaps error; ``None`` when it is not the input's fault."""
    text = str(err)
    if is_allocation_failure(err):
        return MemoryLimitError(
            f"the model ran out of memory during extraction ({type(err).__name__}: "
            f"{text.strip().splitlines()[0] if text.strip() else ''}); keep less: a smaller "
            "batch, fewer layers, channels=, reduce= or dtype=torch.float16"
        )
    if graph.capture is not None:
        return _too_small(graph, inputs, err) if is_too_small(err) else None
    values = placeholder_values(graph.graph_module, graph.model, inputs)
    try:
        with preserved_state(graph.model, train=graph.train):
            propagate(graph.graph_module, values, train=graph.train)
    except ShapeError as shape_error:
        return shape_error
    return None


def _too_small(graph: ModelGraph, inputs: Inputs, err: Exception) -> ShapeError:
    """A captured model's run that failed on too small an input: the smallest that fits."""
    with torch.no_grad():  # on a meta twin of the model: the model does not run
        minimum = model_input_minimum(graph.model, inputs.args, inputs.kwargs, train=graph.train)
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return ShapeError(
        f"{type(graph.model).__name__} failed on the input ({describe_inputs(inputs)}): "
        f"{type(err).__name__}: {first}{too_small_hint(inputs.tensors(), minimum, err)}"
    )


def non_finite_maps(graph: ModelGraph, inputs: Inputs, maps: FeatureMaps) -> str:
    bad = [name for name, tensor in maps.items() if not all_finite(tensor)]
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    first = bad[0]
    if graph.capture is None:
        values = placeholder_values(graph.graph_module, graph.model, inputs)
        with preserved_state(graph.model, train=graph.train):
            first = first_non_finite(graph.graph_module, values) or first
    return non_finite_maps_note(first, f"the map of {bad[0]!r}{more}")
