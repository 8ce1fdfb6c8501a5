"""What other libraries register as not symbolically traceable (timm, through its public
getters ``timm.layers.get_notrace_modules`` and ``get_notrace_functions``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import CodeType, FunctionType

from torch import nn

__all__ = ["Untraceable", "known_untraceable"]


@dataclass(frozen=True)
class Untraceable:
    """Module classes and functions a library registered as not symbolically traceable."""

    classes: tuple[type[nn.Module], ...] = ()
    codes: frozenset[CodeType] = frozenset()
    """The code objects of the registered functions, to find them on a traceback."""


def known_untraceable() -> Untraceable:
    """What timm registered with ``register_notrace_module`` and ``register_notrace_function``.

    Read only when timm is already imported: a model built from timm modules has
    imported it, and any other model cannot hold a timm module, so fxmaps never
    imports timm itself.
    """
    layers = sys.modules.get("timm.layers")
    get_modules = getattr(layers, "get_notrace_modules", None)
    get_functions = getattr(layers, "get_notrace_functions", None)
    if get_modules is None or get_functions is None:
        return Untraceable()
    classes = {c for c in get_modules() if isinstance(c, type) and issubclass(c, nn.Module)}
    codes = {f.__code__ for f in get_functions() if isinstance(f, FunctionType)}
    return Untraceable(tuple(sorted(classes, key=lambda c: c.__qualname__)), frozenset(codes))
