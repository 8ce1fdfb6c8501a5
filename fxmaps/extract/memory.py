"""How many bytes the chosen maps will take, and the limit they must stay under.

The bytes come from the maps' shapes, before the model runs: the graph's own
output shapes when it was analysed with inputs of the same per-sample shape,
else a run on the meta device (nothing computed, the model untouched). The
default limit is :data:`MEMORY_FRACTION` of the memory free where the maps go.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fxmaps.classify import Layout
from fxmaps.errors import OptionError
from fxmaps.extract.transforms import MapOptions
from fxmaps.graph import Layer, ModelGraph
from fxmaps.trace.meta import MetaFailure, meta_values

__all__ = [
    "MEMORY_FRACTION",
    "byte_count",
    "byte_size",
    "estimate_bytes",
    "max_bytes_option",
    "memory_limit",
    "memory_message",
    "number",
]

MEMORY_FRACTION = 0.5
"""The default memory limit: this fraction of the memory available where the maps go."""


def estimate_bytes(
    graph: ModelGraph,
    layers: Sequence[Layer],
    options: MapOptions,
    inputs: Sequence[torch.Tensor],
) -> list[tuple[str, int]] | None:
    """Bytes each chosen map will take for ``inputs``, after the memory controls.

    The shapes are the graph's own output shapes when it was analysed with
    inputs of the same per-sample shape (scaled to the batch); otherwise they
    come from running the graph on the meta device (no values are computed and
    the model is not touched). ``None`` when neither can tell (code that needs
    real values).
    """
    known = _estimate_from_graph(graph, layers, options, inputs)
    if known is not None:
        return known
    nodes = {layer.name: graph.fx_node(layer.name) for layer in layers}
    try:
        values = meta_values(graph.graph_module, inputs, nodes.values(), train=graph.train)
    except MetaFailure:
        return None
    sizes = []
    for layer in layers:
        value = values.get(nodes[layer.name])
        if isinstance(value, torch.Tensor):
            shape, dtype = tuple(value.shape), value.dtype
            sizes.append((layer.name, _map_bytes(shape, dtype, layer.layout, options)))
    return sizes


def _estimate_from_graph(
    graph: ModelGraph, layers: Sequence[Layer], options: MapOptions, inputs: Sequence[torch.Tensor]
) -> list[tuple[str, int]] | None:
    known = graph.input_shapes
    given = [tuple(t.shape) for t in inputs]
    if known is None or len(known) != len(given):
        return None
    if any(not isinstance(k, tuple) or k[1:] != g[1:] for k, g in zip(known, given, strict=True)):
        return None
    old, new = known[0][0], given[0][0]  # type: ignore[index]
    dtype = next((p.dtype for p in graph.model.parameters() if p.is_floating_point()), None)
    sizes = []
    for layer in layers:
        shape = layer.out_shape
        if shape and all(isinstance(d, int) for d in shape):
            dims = tuple(int(d) for d in shape)  # type: ignore[arg-type]
            dims = (new, *dims[1:]) if dims[0] == old else dims
            sizes.append(
                (layer.name, _map_bytes(dims, dtype or torch.float32, layer.layout, options))
            )
    return sizes


def _map_bytes(
    shape: tuple[int, ...], dtype: torch.dtype, layout: Layout, options: MapOptions
) -> int:
    """Bytes of one map after ``spatial``, ``channels``, ``reduce`` and ``dtype``."""
    dims = list(shape)
    if options.spatial and layout is Layout.CHANNELS_LAST and len(dims) in (3, 4):
        dims, layout = [dims[0], dims[-1], *dims[1:-1]], Layout.CHANNELS_FIRST
    axis = len(dims) - 1 if layout is Layout.CHANNELS_LAST else 1
    if options.channels is not None and len(dims) >= 2:
        dims[axis] = _kept_channels(dims[axis], options.channels)
    if options.reduce is not None and len(dims) >= 2:
        if options.reduce[1] == "channels":
            dims[axis] = 1
        elif len(dims) > 2:
            dims = [dims[0], dims[axis]]
    return math.prod(dims) * (options.dtype or dtype).itemsize


def _kept_channels(size: int, spec: tuple[Any, ...]) -> int:
    if spec[0] == "slice":
        return len(range(size)[slice(*spec[1:])])
    if spec[0] == "top":
        return min(int(spec[1]), size)
    return len(spec) - 1


def memory_limit(device: torch.device) -> tuple[int, str] | None:
    """The default limit where maps go, and how it was found; ``None`` when unknown."""
    available = _available_bytes(device)
    if available is None:
        return None
    share = "half" if MEMORY_FRACTION == 0.5 else f"{MEMORY_FRACTION:.0%}"
    return int(
        available * MEMORY_FRACTION
    ), f"{share} of the {byte_size(available)} free on {device}"


def _available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: CUDA's own count, or MemAvailable of /proc/meminfo
    (read at most every :data:`_REREAD` seconds: a file read costs a small model's run)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    now = time.monotonic()
    with _LOCK:
        if _LAST_READ and now - _LAST_READ[0] < _REREAD:
            remembered: int | None = _LAST_READ[1]
            return remembered
    found = _free_ram()
    with _LOCK:
        _LAST_READ[:] = [now, found]
    return found


_REREAD = 0.5
_LOCK = threading.Lock()
_LAST_READ: list[Any] = []
"""When free RAM was last read, and what it was."""


def _free_ram() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)


def byte_count(text: str) -> float | None:
    """``2G``, ``512M``, ``1.5G``, ``1000000`` as bytes (K, M, G, T are powers of 1024),
    ``inf`` (or ``off``, ``none``) as ``math.inf``; ``None`` for text that is not a size.

    Example:
        >>> byte_count("2G"), byte_count("512 MiB"), byte_count("inf"), byte_count("lots")
        (2147483648.0, 536870912.0, inf, None)
    """
    if text.strip().lower() in ("inf", "off", "none"):
        return math.inf
    found = _SIZE.fullmatch(text)
    return None if found is None else float(found.group(1)) * _UNITS[found.group(2).upper()]


def max_bytes_option(value: object) -> float | None:
    """The ``max_bytes=`` option as a number of bytes: ``None``, a number >= 0, or a size
    as the command line takes it (``"2G"``, :func:`byte_count`); else ``OptionError``."""
    if value is None:
        return None
    size = byte_count(value) if isinstance(value, str) else value
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not size >= 0:
        raise OptionError(
            f"max_bytes={value!r} must be a number of bytes >= 0, a size like '512M' or '2G', "
            f"math.inf for no limit, or None for the default",
            option="max_bytes",
            value=value,
            valid=("a number of bytes >= 0", "'512M', '2G' (powers of 1024)", "math.inf", "None"),
        )
    return size


def number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def byte_size(count: float) -> str:
    """``count`` bytes in words: ``512 B``, ``1.5 KiB``, ``2.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def memory_message(sizes: list[tuple[str, int]], batch: int, limit: float, why: str) -> str:
    total = sum(size for _, size in sizes)
    largest = sorted(sizes, key=lambda item: -item[1])[:3]
    listed = ", ".join(f"{name!r} {byte_size(size)}" for name, size in largest)
    return (
        f"the {len(sizes)} maps asked for would take about {byte_size(total)} for a batch of "
        f"{batch}, more than the limit of {byte_size(limit)} ({why}); the largest: {listed}. "
        "Keep less with channels='top:16' or slice(0, 16), reduce='mean', "
        "dtype=torch.float16, fewer layers or a smaller batch; or raise the limit with "
        "max_bytes= (command line: --max-bytes), max_bytes=math.inf to turn the check off"
    )
