"""Shadows: twins of a model's modules whose calls go through fxmaps, the model untouched.

A shadow is a shallow copy of a module: it shares the module's parameters,
buffers, hooks and attributes, but has its own ``forward`` (which hands the call to
a dispatcher with the module's path) and its own children, themselves shadows. An
eager ``forward`` run with a shadow as ``self`` reaches, through ``self.layer1``,
``self.blocks[3]`` or ``for block in self.blocks``, only shadows, so every module
call it makes is seen, while the user's modules are never changed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["Dispatch", "Shadows"]

Dispatch = Callable[[str, nn.Module, tuple[Any, ...], dict[str, Any]], Any]
"""Handles one module call: ``(path, the user's module, args, kwargs) -> output``."""


class Shadows:
    """The shadows of a model's modules, made on first use and kept."""

    def __init__(self, model: nn.Module, dispatch: Dispatch) -> None:
        self._model = model
        self._dispatch = dispatch
        self._made: dict[str, tuple[nn.Module, nn.Module]] = {}

    def of(self, path: str) -> nn.Module:
        """The shadow of the module at ``path`` (``""``: the model), with shadow children."""
        if path not in self._made:
            original = self._model.get_submodule(path)
            twin = _twin(original)
            self._made[path] = (original, twin)
            children = {
                name: None if child is None else self.of(_join(path, name))
                for name, child in original._modules.items()
            }
            twin.__dict__["_modules"] = children
            twin.__dict__["forward"] = functools.partial(self._call, path, original)
        return self._made[path][1]

    def sync(self) -> None:
        """Give every shadow its module's current train/eval mode."""
        for original, twin in self._made.values():
            twin.__dict__["training"] = original.training  # not nn.Module's slow __setattr__

    def _call(self, path: str, original: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return self._dispatch(path, original, args, kwargs)


def _twin(module: nn.Module) -> nn.Module:
    """A shallow copy: a new object of the same class sharing every attribute's value.

    Made without ``copy.copy``, which modules with parametrizations refuse.
    """
    twin = object.__new__(type(module))
    twin.__dict__.update(module.__dict__)
    return twin


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
