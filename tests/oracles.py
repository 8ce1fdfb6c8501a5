"""Oracles fxmaps does not share: what the model does when it runs by itself.

Tests compare fxmaps's answers with these: outputs and shapes that forward hooks see,
module calls counted by hooks, modules counted in the module tree, the module that
fails or first produces NaN on a plain forward pass, and a snapshot of everything
fxmaps must leave as it was. Nothing here imports fxmaps.
"""

from __future__ import annotations

import copy
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as torch_module

ShapeTree = tuple[Any, ...]
"""A tensor's shape, or a tuple of shape trees for an output of several tensors."""

GLOBAL_HOOKS = sorted(k for k in vars(torch_module) if k.startswith("_global_") and "hook" in k)
"""torch's process-wide module hooks (``register_module_forward_hook`` and friends)."""


# -- forward hooks ---------------------------------------------------------------------------


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _clone(v)) for k, v in value.items())
    return value


@contextmanager
def hooked(model: nn.Module, names: Iterable[str] | None = None) -> Iterator[dict[str, list[Any]]]:
    """Forward hooks on the named modules (default: every submodule) while the block runs.

    Yields ``{qualified name: [output of each call]}``, each output cloned the moment its
    hook runs, so later in-place ops cannot change it. The hooks are removed afterwards.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> with hooked(model, ["0"]) as seen:
        ...     _ = model(torch.zeros(1, 2))
        >>> [tuple(out.shape) for out in seen["0"]]
        [(1, 3)]
    """
    chosen = [name for name, _ in model.named_modules() if name] if names is None else names
    seen: dict[str, list[Any]] = defaultdict(list)
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: seen[name].append(_clone(out))
        )
        for name in chosen
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def hook_outputs(
    model: nn.Module, *inputs: torch.Tensor, names: Iterable[str] | None = None
) -> dict[str, list[Any]]:
    """Each module's output per call (see :func:`hooked`), from one plain forward pass
    without gradients.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> seen = hook_outputs(model, torch.ones(1, 2))
        >>> sorted(seen), len(seen["1"])
        (['0', '1'], 1)
    """
    with hooked(model, names) as seen, torch.no_grad():
        model(*inputs)
    return seen


def shape_of(value: Any) -> ShapeTree | None:
    """A tensor's shape, the shapes of a non-empty tuple or list of tensors, else ``None``.

    Example:
        >>> shape_of((torch.zeros(1, 2), torch.zeros(3)))
        ((1, 2), (3,))
    """
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and value:
        shapes = tuple(shape_of(v) for v in value)
        if all(s is not None for s in shapes):
            return shapes
    return None


def hook_shapes(model: nn.Module, *inputs: torch.Tensor) -> dict[str, list[ShapeTree | None]]:
    """Each module's output shape per call, as forward hooks see them.

    Example:
        >>> hook_shapes(nn.Sequential(nn.Conv2d(3, 4, 3)), torch.zeros(2, 3, 8, 8))
        {'0': [(2, 4, 6, 6)]}
    """
    return {
        name: [shape_of(out) for out in outs] for name, outs in hook_outputs(model, *inputs).items()
    }


def module_calls(
    model: nn.Module, seen: Mapping[str, list[Any]], kind: type | tuple[type, ...]
) -> Counter[str]:
    """How often the hooks behind ``seen`` (:func:`hook_outputs`) saw each module of type
    ``kind`` called; modules never called are left out.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
        >>> module_calls(model, hook_outputs(model, torch.ones(1, 2)), nn.Linear)
        Counter({'0': 1, '2': 1})
    """
    return Counter(
        {n: len(seen[n]) for n, m in model.named_modules() if isinstance(m, kind) and seen.get(n)}
    )


# -- the module tree -------------------------------------------------------------------------


def count_modules(
    model: nn.Module, kind: type | tuple[type, ...], *, exclude: type | tuple[type, ...] = ()
) -> int:
    """How many modules of type ``kind`` (and not of type ``exclude``) the model holds.

    Example:
        >>> count_modules(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)), nn.Conv2d)
        2
    """
    return sum(isinstance(m, kind) and not isinstance(m, exclude) for m in model.modules())


# -- plain forward passes --------------------------------------------------------------------


def smallest_side(model: nn.Module, channels: int = 3) -> int:
    """The smallest square input the model's own forward pass accepts (up to 255).

    Example:
        >>> smallest_side(nn.Sequential(nn.Conv2d(3, 4, 5)))
        5
    """
    for side in range(1, 256):
        try:
            with torch.no_grad():
                model(torch.zeros(1, channels, side, side))
        except RuntimeError:
            continue
        return side
    raise AssertionError("no size up to 255 works")


def runs(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether the model's own forward pass goes through on zeros of ``shape``, in the
    model's mode (a copy of it, so a model in training mode keeps its statistics).

    Example:
        >>> runs(nn.Sequential(nn.Conv1d(2, 4, 5)), (1, 2, 4)), runs(nn.Conv1d(2, 4, 5), (1, 2, 5))
        (False, True)
    """
    try:
        with torch.no_grad():
            copy.deepcopy(model)(torch.zeros(shape))
    except (RuntimeError, ValueError):
        return False
    return True


def smallest_sides(
    model: nn.Module, shape: tuple[int, ...], groups: list[list[int]], found: tuple[int, ...]
) -> tuple[int, ...]:
    """For each group of dimensions, the smallest size at which the model runs, counted
    up from ``shape``'s (which it keeps where they are larger), the other dimensions at
    ``found``: one size for the group's dimensions together (an image's height and
    width, a clip's frames). Equal to ``found`` when no group of it can be smaller.

    Example:
        >>> smallest_sides(nn.Conv1d(2, 4, 5), (1, 2, 3), [[2]], (1, 2, 9))
        (1, 2, 5)
    """
    sides = list(found)
    for group in groups:
        size = min(shape[d] for d in group)
        while not runs(model, tuple(max(shape[d], size) if d in group else s
                                    for d, s in enumerate(found))):  # fmt: skip
            size += 1
            if size > 512:
                raise AssertionError(f"no size up to 512 of dimensions {group} works")
        for d in group:
            sides[d] = max(shape[d], size)
    return tuple(sides)


def failing_module(model: nn.Module, x: torch.Tensor) -> str:
    """The module that raises when the model runs by itself on ``x`` (the last one entered).

    Example:
        >>> failing_module(nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 5)), torch.zeros(1, 3, 4, 4))
        '1'
    """
    entered: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda *_, name=name: entered.append(name))
        for name, module in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            model(x)
    except RuntimeError:
        return entered[-1]
    finally:
        for handle in handles:
            handle.remove()
    raise AssertionError("the model runs on this input")


def first_non_finite_module(model: nn.Module, x: torch.Tensor) -> str:
    """The first module, in call order, whose output holds NaN or inf.

    Example:
        >>> nan_below_half = nn.Threshold(0.5, float("nan"))  # x if x > 0.5 else NaN
        >>> first_non_finite_module(nn.Sequential(nn.Tanh(), nan_below_half), torch.zeros(2))
        '1'
    """
    for name, outputs in hook_outputs(model, x).items():
        if any(not torch.isfinite(out).all() for out in outputs):
            return name
    raise AssertionError("every output is finite")


# -- the model left as it was ----------------------------------------------------------------


@dataclass
class Snapshot:
    """What fxmaps must leave unchanged, taken from a model by :func:`snapshot`."""

    training: dict[str, bool]
    state: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    hooks: dict[str, dict[str, Any]]
    attrs: dict[str, set[str]]
    global_hooks: dict[str, Any]


def _hooks(namespace: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: list(value.items()) if isinstance(value, dict) else value
        for key, value in namespace.items()
        if "hook" in key
    }


def snapshot(model: nn.Module) -> Snapshot:
    """Modes, parameter and buffer objects and values, gradients, hooks (the module's
    own and torch's global ones) and attributes of every module.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> before = snapshot(model)
        >>> assert_unchanged(model, before)
    """
    modules = dict(model.named_modules(remove_duplicate=False))
    state = model.state_dict(keep_vars=True)
    return Snapshot(
        training={name: m.training for name, m in modules.items()},
        state=dict(state),
        values={k: v.detach().clone() for k, v in state.items() if v.device.type != "meta"},
        grads={name: p.grad for name, p in model.named_parameters()},
        hooks={name: _hooks(vars(m)) for name, m in modules.items()},
        attrs={name: set(vars(m)) for name, m in modules.items()},
        global_hooks=_hooks({k: getattr(torch_module, k) for k in GLOBAL_HOOKS}),
    )


def assert_unchanged(model: nn.Module, before: Snapshot) -> None:
    """The model is as :func:`snapshot` found it: the same Parameter and buffer objects
    with the same values (meta tensors hold none), gradients, modes, hooks, attributes."""
    after = snapshot(model)
    assert after.training == before.training, "train/eval modes changed"
    assert after.attrs == before.attrs, "module attributes added or removed"
    assert after.hooks == before.hooks, "module hooks changed"
    assert after.global_hooks == before.global_hooks, "global module hooks changed"
    assert after.state.keys() == before.state.keys()
    for key, tensor in before.state.items():
        assert after.state[key] is tensor, f"{key} was replaced"
        assert (tensor.shape, tensor.dtype, tensor.device) == (
            after.state[key].shape,
            after.state[key].dtype,
            after.state[key].device,
        ), key
    for key, saved in before.values.items():
        assert torch.equal(after.state[key].detach(), saved), f"{key} changed"
    assert after.grads.keys() == before.grads.keys()
    for key, grad in before.grads.items():
        assert after.grads[key] is grad, f"the gradient of {key} changed"


# -- class activation maps: pytorch-grad-cam ------------------------------------------------

GRAD_CAM_CLASSES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}
"""pytorch-grad-cam's class for each method name."""


def tokens_to_grid(extra: int) -> Any:
    """The ``reshape_transform`` pytorch-grad-cam needs for ViT tokens ``(N, L, C)``:
    drop ``extra`` leading tokens, lay the rest on a square, channels first."""

    def transform(tokens: torch.Tensor) -> torch.Tensor:
        kept = tokens[:, extra:, :]
        side = math.isqrt(kept.shape[1])
        return kept.reshape(kept.shape[0], side, side, kept.shape[2]).permute(0, 3, 1, 2)

    return transform


def grid_last_to_first(grid: torch.Tensor) -> torch.Tensor:
    """The ``reshape_transform`` for channels-last grids ``(N, H, W, C)`` (Swin)."""
    return grid.permute(0, 3, 1, 2)


def grad_cam_maps(
    model: nn.Module,
    module: str,
    x: torch.Tensor,
    classes: list[int],
    method: str,
    reshape: Any = None,
) -> Any:
    """pytorch-grad-cam's ``(N, H, W)`` maps (NumPy, in [0, 1]) for ``classes`` at the
    output of the module at path ``module``."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    explainer = getattr(pytorch_grad_cam, GRAD_CAM_CLASSES[method])(
        model=model,
        target_layers=[model.get_submodule(module)],
        reshape_transform=reshape,
    )
    try:
        targets = [ClassifierOutputTarget(c) for c in classes]
        return explainer(input_tensor=x, targets=targets)
    finally:
        explainer.activations_and_grads.release()


def correlation(a: Any, b: Any) -> float:
    """Pearson correlation of two arrays, flattened."""
    first = torch.as_tensor(a, dtype=torch.float64).flatten()
    second = torch.as_tensor(b, dtype=torch.float64).flatten()
    return float(torch.corrcoef(torch.stack([first, second]))[0, 1])
