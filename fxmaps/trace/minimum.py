"""Too small an input: is it, and what is the smallest input that goes through?

A layer that runs out of input (a kernel larger than what is left, a pool's output
of size 0, a BatchNorm in training left with one value per channel) fails with one
of a few messages (:func:`is_too_small`). The smallest input that fits is found by
running the graph (:func:`input_minimum`), or for a model captured as it ran the
model's own ``forward`` (:func:`model_input_minimum`), on the meta device at larger
sizes: one side for all first, then a clip's frames apart from its height and width.
:func:`too_small_hint` says it in the words of the input's layout.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from fxmaps.trace.inputs import map_tensors, tensor_leaves
from fxmaps.trace.meta import MetaFailure, meta_like, meta_twin, meta_values

__all__ = [
    "Minimum",
    "input_minimum",
    "is_too_small",
    "minimum_input_size",
    "model_input_minimum",
    "too_small_hint",
]

_TOO_SMALL = re.compile(
    r"too small|can't be greater than actual input size|should be less than the corresponding "
    r"input dimension|sizes should be greater than 0|invalid computed output size|smaller than "
    r"kernel size|expected more than 1 value per channel when training",
    re.IGNORECASE,
)
_ONE_VALUE = re.compile(r"more than 1 value per channel", re.IGNORECASE)
_LARGEST_SIDE = 8192
_ADVICE_BY_DIMS = {
    1: " (length); pad or resample the signal to that length",
    2: "; resize it, for example with fxmaps.load_image(path, size={size})",
    3: " (frames×height×width); give the clip at least that many frames of that size",
}

Fits = Callable[[Mapping[int, tuple[int, ...]]], bool]
"""Whether a run goes through with each input's spatial sides raised to at least the
floors given for it (by ``id`` of the input tensor)."""


@dataclass(frozen=True)
class Minimum:
    """The smallest input that goes through.

    Attributes:
        side: The smallest ``s`` with every spatial side raised to at least ``s``.
        sides: Each spatial side's smallest size (the given size where that is
            enough), inputs in order: for a clip, fewer frames than ``side`` may do.
    """

    side: int
    sides: tuple[int, ...]


def is_too_small(err: BaseException) -> bool:
    """Whether a layer failed because its input's spatial size is too small: below its
    kernel (or padding), or a single value per channel for a BatchNorm in training."""
    return bool(_TOO_SMALL.search(str(err)))


def too_small_hint(tensors: Sequence[Any], minimum: Minimum | None, err: BaseException) -> str:
    """What to say about inputs found too small, given the smallest input that goes
    through (:func:`input_minimum`, :func:`model_input_minimum`) or ``None``.

    The advice follows the input's layout: a length (1-D signals), height × width
    (images), frames × height × width (video).
    """
    spatial = _spatial(tensors)
    given = "×".join(str(side) for t in spatial for side in t.shape[2:])
    batch = ", or a batch of more than one sample" if _ONE_VALUE.search(str(err)) else ""
    if minimum is None or not spatial:
        return f". The input ({given}) is too small for the model; try a larger one{batch}"
    needed = "×".join(map(str, minimum.sides))
    advice = _ADVICE_BY_DIMS.get(spatial[0].dim() - 2, "; resize it").format(size=minimum.side)
    return (
        f". The input ({given}) is too small: the model needs an input of at least "
        f"{needed}{advice}{batch}"
    )


def minimum_input_size(
    graph_module: fx.GraphModule, inputs: Sequence[Any], *, train: bool = False
) -> int | None:
    """The smallest spatial side ``s`` for which no layer runs out of input, or ``None``.

    Every spatial side (the dimensions after ``(N, C)``: a length, height and width,
    or frames, height and width) of each input is raised to at least ``s``; whether
    each size goes through is found by running the graph on the meta device (shapes
    only, nothing computed, the model untouched), doubling then bisecting. ``None``
    when the meta run cannot tell (it fails for another reason) or no side up to
    8192 is enough. ``inputs`` are the placeholders' values.
    """
    minimum = input_minimum(graph_module, inputs, train=train)
    return None if minimum is None else minimum.side


def input_minimum(
    graph_module: fx.GraphModule, inputs: Sequence[Any], *, train: bool = False
) -> Minimum | None:
    """:func:`minimum_input_size`, and each side's own minimum (frames apart from a
    clip's height and width)."""

    def fits(floors: Mapping[int, tuple[int, ...]]) -> bool:
        try:
            meta_values(graph_module, [_raised(t, floors) for t in inputs], (), train=train)
        except MetaFailure as failure:
            return not is_too_small(failure.cause)
        return True

    return _smallest([t for t in inputs if isinstance(t, torch.Tensor)], fits)


def model_input_minimum(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    train: bool = False,
) -> Minimum | None:
    """:func:`input_minimum` for a model without a graph (one fxmaps captured as it
    ran): its own ``forward`` runs on a twin of it whose tensors are meta tensors."""
    twin = meta_twin(model, {}, train)

    def fits(floors: Mapping[int, tuple[int, ...]]) -> bool:
        raise_to = functools.partial(_raised, floors=floors)
        try:
            with torch.no_grad():
                twin(*map_tensors(args, raise_to), **map_tensors(dict(kwargs), raise_to))
        except Exception as err:
            return not is_too_small(err)
        return True

    return _smallest(tensor_leaves((args, dict(kwargs))), fits)


def _spatial(values: Sequence[Any]) -> list[torch.Tensor]:
    """The inputs with spatial sides (after ``(N, C)``), each once."""
    found: dict[int, torch.Tensor] = {}
    for value in values:
        if isinstance(value, torch.Tensor) and value.dim() >= 3:
            found.setdefault(id(value), value)
    return list(found.values())


def _raised(value: Any, floors: Mapping[int, tuple[int, ...]]) -> Any:
    """A meta tensor like ``value``, its spatial sides raised to their floors."""
    if not isinstance(value, torch.Tensor):
        return value
    sides = tuple(
        max(d, f) for d, f in zip(value.shape[2:], floors.get(id(value), ()), strict=False)
    )
    return meta_like(value, (*value.shape[:2], *sides, *value.shape[2 + len(sides) :]))


def _smallest(tensors: Sequence[torch.Tensor], fits: Fits) -> Minimum | None:
    """The smallest input that ``fits``: one side for all (doubling, then bisecting),
    then the frames of a clip and its height and width each on their own."""
    spatial = _spatial(tensors)
    given = [side for t in spatial for side in t.shape[2:]]
    if not given:
        return None
    groups = _groups(spatial)
    every = [i for group in groups for i in group]

    def fits_at(floors: list[int]) -> bool:
        it = iter(floors)
        return fits({id(t): tuple(next(it) for _ in t.shape[2:]) for t in spatial})

    def raised(floors: list[int], group: list[int], side: int) -> list[int]:
        return [max(given[i], side) if i in group else f for i, f in enumerate(floors)]

    side = _doubling(min(given), lambda s: fits_at(raised(given, every, s)))
    if side is None:
        return None
    floors = raised(given, every, side)
    for group in groups if len(groups) > 1 else []:
        start = floors

        def fits_group(s: int, group: list[int] = group, start: list[int] = start) -> bool:
            return fits_at(raised(start, group, s))

        floors = raised(floors, group, _bisect(min(given[i] for i in group), side, fits_group))
    return Minimum(side, tuple(floors))


def _groups(spatial: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of the spatial sides found together: a clip's frames alone, then its
    height and width; an image's or a signal's sides together."""
    groups: list[list[int]] = []
    start = 0
    for t in spatial:
        count = t.dim() - 2
        sides = list(range(start, start + count))
        groups += [sides[:1], sides[1:]] if count == 3 else [sides]
        start += count
    return groups


def _doubling(low: int, fits: Callable[[int], bool]) -> int | None:
    """The smallest side above ``low`` that fits: doubling, then bisecting; ``None``
    when ``low`` fits already (the run does not see the failure: do not guess) or
    nothing up to 8192 does."""
    if fits(low):
        return None
    high = max(2 * low, 1)
    while not fits(high):
        low, high = high, 2 * high
        if high > _LARGEST_SIDE:
            return None
    return _bisect(low, high, fits)


def _bisect(low: int, high: int, fits: Callable[[int], bool]) -> int:
    """The smallest side in ``[low, high]`` that fits, given that ``high`` does."""
    if fits(low):
        return low
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high
