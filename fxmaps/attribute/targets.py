"""What a map explains: a class per sample, or any score computed from the output."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fxmaps.errors import InputError

__all__ = ["Target", "Targets", "class_logits", "resolve_targets", "unscored"]

Target = int | Sequence[int] | Callable[[Any], torch.Tensor] | None
"""``None`` (each sample's top class), a class, a class per sample, or a callable
from the model's output to one score per sample."""


@dataclass(frozen=True)
class Targets:
    """What is explained: classes (``None`` where a callable gives the score) and how
    to score an output of any batch size (``rows`` picks the samples' classes)."""

    classes: tuple[int | None, ...]
    score: Callable[[Any, torch.Tensor], torch.Tensor]


def unscored(batch: int) -> Targets:
    """No target (Eigen-CAM on a model without class scores): no class, NaN scores."""

    def score(output: Any, rows: torch.Tensor) -> torch.Tensor:
        return torch.full((batch,), float("nan"))

    return Targets((None,) * batch, score)


def resolve_targets(target: Target, output: Any, batch: int) -> Targets:
    """``target`` checked against the model's ``output`` for ``batch`` samples.

    Raises:
        InputError: A class out of range, a list of the wrong length, an output that is
            not ``(N, classes)`` for a class target, or a callable that does not give
            one score per sample.
    """
    if callable(target):
        _check_callable(target, output, batch)
        return Targets((None,) * batch, lambda out, rows: _scores(target, out))
    logits = _logits(output, target)
    if target is None:
        classes = tuple(int(c) for c in logits.argmax(dim=1))
    elif isinstance(target, int) and not isinstance(target, bool):
        classes = (target,) * batch
    elif isinstance(target, Sequence) and not isinstance(target, str):
        classes = tuple(_class(c) for c in target)
        if len(classes) != batch:
            raise InputError(
                f"target={list(target)!r} names {len(classes)} classes for {batch} samples; "
                "give one class per sample, one int for all, or None for each top class",
                argument="target",
                got=repr(list(target)),
            )
    else:
        raise InputError(
            f"target={target!r} is not a target; use None (each sample's top class), a class "
            "index, a list of one per sample, or a callable from the output to scores",
            argument="target",
            got=type(target).__name__,
        )
    _check_range(classes, logits.shape[1])
    return Targets(classes, _class_scores)


def _class(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(
            f"target holds {value!r}; a class is an int index into the model's output",
            argument="target",
            got=repr(value),
        )
    return value


def class_logits(output: Any) -> torch.Tensor | None:
    """The ``(N, classes)`` scores a class target reads: the output itself, its
    ``logits`` (transformers' model outputs, a dict), or the first item of a tuple (a
    classifier with auxiliary heads); ``None`` when there is none."""
    candidates = [output]
    if isinstance(output, Mapping):
        candidates.append(output.get("logits"))
    else:
        candidates.append(getattr(output, "logits", None))
    if isinstance(output, tuple | list) and output:
        candidates.append(output[0])
    for candidate in candidates:
        if isinstance(candidate, torch.Tensor) and candidate.dim() == 2:
            return candidate
    return None


def _logits(output: Any, target: Target) -> torch.Tensor:
    logits = class_logits(output)
    if logits is not None:
        return logits
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    raise InputError(
        f"target={target!r} picks a class of an (N, classes) output (or its .logits), but "
        f"the model returns {shape}; pass target=callable(output) -> one score per sample",
        argument="target",
        got=repr(target),
    )


def _check_range(classes: Sequence[int | None], count: int) -> None:
    for value in classes:
        if value is not None and not 0 <= value < count:
            raise InputError(
                f"target={value} is out of range for a model with {count} classes; "
                f"use 0..{count - 1}",
                argument="target",
                got=str(value),
            )


def _class_scores(output: Any, rows: torch.Tensor) -> torch.Tensor:
    """Each row's score of its class: ``rows`` holds one class per row of the output's
    logits (:func:`class_logits`, found when the target was resolved)."""
    logits = class_logits(output)
    if logits is None:  # the same model gave logits when the target was resolved
        raise InputError(
            f"the model returned {type(output).__name__} on a later run, with no (N, classes) "
            "logits; pass target=callable(output) -> one score per sample",
            argument="target",
            got=type(output).__name__,
        )
    return logits.gather(1, rows[:, None])[:, 0]


def _scores(target: Callable[[Any], torch.Tensor], output: Any) -> torch.Tensor:
    return torch.as_tensor(target(output)).reshape(-1)


def _check_callable(target: Callable[[Any], torch.Tensor], output: Any, batch: int) -> None:
    found = target(output)
    if not isinstance(found, torch.Tensor) or found.numel() != batch:
        got = tuple(found.shape) if isinstance(found, torch.Tensor) else type(found).__name__
        raise InputError(
            f"target={getattr(target, '__name__', target)!r} returned {got}; a target "
            f"callable returns one score per sample, a tensor of {batch} values",
            argument="target",
            got=str(got),
        )
