"""What a captured run is made of: module calls that ran traced, as Python, or as leaves.

When symbolic tracing cannot follow a module's own ``forward``, fxmaps runs the
model once and captures it call by call (:mod:`.capture`). Each module call is
one of:

* a **leaf** (a torch.nn layer, or one of ``leaf_modules``): called as it is;
* an **fx region**: the call traced with torch.fx (every traceable submodule
  inside it traced too, as usual), run as a graph module;
* an **eager region**: the module's own ``forward`` run as Python, the torch ops
  it calls recorded, each submodule it calls captured the same way.

The graph users see stitches them together; each of its nodes says where it comes
from (:class:`fxmaps.facts.Origin`), so extraction can run the model the same way again and take
each map where it is produced.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from torch import fx

from fxmaps.facts import CallKey

__all__ = ["Capture", "EagerRegion", "FxVariant"]


@dataclass(frozen=True)
class FxVariant:
    """One symbolic trace of a module, for calls with the same kinds of arguments.

    ``graph_module`` holds the module's own submodules. The children in
    ``dispatch`` are calls of their own: whoever runs the region calls their
    shadows instead, so that what they do is captured too.
    """

    path: str
    graph_module: fx.GraphModule
    dispatch: dict[str, str]
    """``call_module`` targets of this graph that are captured calls: their paths in the model."""


@dataclass(frozen=True)
class EagerRegion:
    """A module call whose own ``forward`` ran as Python, and why.

    Attributes:
        name: The call's public name (the module path, ``_1`` for a second call).
        module_type: The module's class name.
        reason: Why torch.fx could not follow it (``Type: message``).
        location: The source line where tracing failed, or ``""``.
    """

    name: str
    module_type: str
    reason: str
    location: str


@dataclass(frozen=True)
class Capture:
    """How a captured model ran, for running it the same way again.

    Attributes:
        calls: Each module call in the order they started, with what it was:
            ``"leaf"``, ``"eager"`` or the index of its :class:`FxVariant`.
        variants: The fx regions' traces.
        ops: For each eager call, the torch functions its ops called, in order
            (to notice a run that takes another path).
        fingerprints: For each traced region call, what its arguments were like
            (:func:`~fxmaps.trace.variants.fingerprint`): a call like it runs that trace.
        signatures: For each traced region call, its arguments bound to ``forward``
            (:func:`~fxmaps.trace.variants.signature_key`): a call given in another form
            (by keyword, not position) runs that trace if this is the same.
        finite: Whether the model's output held no NaN or inf.
        first_non_finite: The first node whose output held NaN or inf, if any.
    """

    calls: dict[CallKey, str | int]
    variants: tuple[FxVariant, ...]
    ops: dict[CallKey, tuple[str, ...]]
    fingerprints: dict[CallKey, Hashable]
    signatures: dict[CallKey, Hashable]
    finite: bool = True
    first_non_finite: str | None = None
