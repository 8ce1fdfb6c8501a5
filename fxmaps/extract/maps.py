"""``FeatureMaps``: extracted maps by node name, each with the :class:`Layer` it came from.

Saved files hold the tensors and the layer metadata, never pickled objects:
``.safetensors`` files through safetensors, anything else through ``torch.save``
of plain containers, which :meth:`FeatureMaps.load` reads with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from fxmaps.errors import InputError, NodeNotFoundError, close_matches
from fxmaps.extract.stored import Stored, read_maps, write_maps
from fxmaps.files import output_file
from fxmaps.graph import Layer, format_shape

__all__ = ["FeatureMaps"]


class FeatureMaps(Mapping[str, torch.Tensor]):
    """Read-only mapping from node name to the map that node produced.

    A node whose output is a tuple, list or dict gives a map for each tensor in it,
    under ``name[0]``, ``name[1][0]``, ``name['key']``; a renaming dict
    (``layers={"layer1": "feat"}``) gives the new names. Iteration follows the order
    the layers were asked for. Besides the tensors
    it knows each map's :class:`Layer` (kind, block, layout), the channel indices
    kept by a ``channels=`` selection, and the requested nodes that produced no
    tensor (``skipped``).

    Example:
        >>> import torch, fxmaps
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> maps = fxmaps.extract(model, torch.randn(1, 3, 8, 8))
        >>> list(maps), maps["2"].shape, maps.layer("2").kind.value
        (['0', '2'], torch.Size([1, 2, 6, 6]), 'conv')
    """

    def __init__(
        self,
        maps: Mapping[str, torch.Tensor],
        layers: Mapping[str, Layer],
        *,
        channels: Mapping[str, torch.Tensor] | None = None,
        skipped: Sequence[str] = (),
    ) -> None:
        self._maps = dict(maps)
        self._layers = {name: layers[name] for name in self._maps}
        self._channels = dict(channels or {})
        self._skipped = tuple(skipped)

    def __getitem__(self, name: str) -> torch.Tensor:
        if isinstance(name, str) and name in self._maps:
            return self._maps[name]
        matches = close_matches(name, self._maps)
        hint = f"; did you mean {', '.join(map(repr, matches))}?" if matches else ""
        if not isinstance(name, str):
            hint = f"; maps are named by strings, like {next(iter(self._maps), 'conv1')!r}"
        raise NodeNotFoundError(
            f"no map named {name!r} among {len(self)}{hint}",
            name=name,
            candidates=tuple(matches),
        )

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._maps

    def __iter__(self) -> Iterator[str]:
        return iter(self._maps)

    def __len__(self) -> int:
        return len(self._maps)

    def layer(self, name: str) -> Layer:
        """The layer that produced the map ``name``."""
        self[name]
        return self._layers[name]

    def module(self, path: str, call: int = 0) -> torch.Tensor:
        """The map of what the ``call``-th call of the module at ``path`` returned (for a
        module that returns a tuple, such as an LSTM or attention, its first tensor:
        ``name[0]``; the others are ``name[1]``, ...).

        Raises:
            NodeNotFoundError: No map here is that call's return (the message lists
                the module calls that have maps).

        Example:
            >>> import torch, torchvision, fxmaps
            >>> maps = fxmaps.extract(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64),
            ...                       layers="module:layer2")
            >>> list(maps), tuple(maps.module("layer2").shape)
            (['layer2.1.relu_1'], (1, 128, 8, 8))
        """
        for name, layer in self._layers.items():
            if (path, call) in layer.returned_by:
                return self._maps[name]
        calls = {key for layer in self._layers.values() for key in layer.returned_by}
        have = sorted(f"{p}#{c}" if c else p for p, c in calls)
        similar = close_matches(path, have)
        hint = f"; did you mean {', '.join(map(repr, similar))}?" if similar else ""
        raise NodeNotFoundError(
            f"no map here is what module {path!r} returned"
            + (f" in its call {call}" if call else "")
            + f"{hint} (select it with layers=fxmaps.Module({path!r}) or 'module:{path}')",
            name=path,
            candidates=tuple(similar),
        )

    def channels(self, name: str) -> torch.Tensor | None:
        """The channel indices kept for ``name``, or ``None`` when all are kept."""
        self[name]
        return self._channels.get(name)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Requested nodes whose output held no tensor (sizes, flags, ``None``); a tuple, list
        or dict gives a map for each tensor in it instead (``name[0]``, ``name['key']``)."""
        return self._skipped

    @property
    def nbytes(self) -> int:
        """Bytes held by the maps."""
        return sum(t.numel() * t.element_size() for t in self._maps.values())

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> FeatureMaps:
        """A copy with every map moved to ``device`` and/or converted to ``dtype``."""
        maps = {name: t.to(device=device, dtype=dtype) for name, t in self._maps.items()}
        return FeatureMaps(maps, self._layers, channels=self._channels, skipped=self._skipped)

    def cpu(self) -> FeatureMaps:
        """A copy with every map on the CPU."""
        return self.to("cpu")

    def numpy(self) -> dict[str, np.ndarray]:
        """The maps as NumPy arrays (copied to the CPU, detached)."""
        return {name: t.detach().cpu().numpy() for name, t in self._maps.items()}

    # -- files -------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the maps and their layer metadata to ``path`` (atomically).

        ``.safetensors`` needs the safetensors package; any other suffix uses
        ``torch.save`` of plain containers. Every map name saves and loads back.
        """
        content = Stored(self._layers, self._maps, self._channels, self._skipped)
        write_maps(output_file(path), content)

    @classmethod
    def load(cls, path: str | Path) -> FeatureMaps:
        """Read maps written by :meth:`save`; never executes pickled code.

        Raises:
            InputError: No file at ``path``, or one whose content is not what ``save``
                writes (the message names the bad entry).
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"no feature-maps file at {str(path)!r}", argument="path", got=str(path)
            )
        stored = read_maps(path)
        return cls(stored.maps, stored.layers, channels=stored.channels, skipped=stored.skipped)

    def _repr_html_(self) -> str:
        """A table of the maps with thumbnails of the first few, for Jupyter."""
        from fxmaps.render.notebook import maps_html  # a display method: drawing is render's

        return maps_html(self)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}: {format_shape(tuple(t.shape))}" for name, t in list(self._maps.items())[:6]
        )
        more = f", ... ({len(self) - 6} more)" if len(self) > 6 else ""
        return f"<FeatureMaps {len(self)} maps, {self.nbytes / 2**20:.1f} MiB: {shown}{more}>"
