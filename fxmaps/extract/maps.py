"""``FeatureMaps``: extracted maps by node name, each with the :class:`Layer` it came from.

Saved files hold the tensors and the layer metadata, never pickled objects:
``.safetensors`` files through safetensors, anything else through ``torch.save``
of plain containers, which :meth:`FeatureMaps.load` reads with ``weights_only=True``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fxmaps.classify import Kind, Layout
from fxmaps.errors import FxmapsError, InputError, NodeNotFoundError, close_matches
from fxmaps.files import atomic_path, output_file
from fxmaps.graph import Layer, format_shape

__all__ = ["FeatureMaps"]

_FORMAT = "fxmaps.FeatureMaps"
_VERSION = 1
_CHANNELS = "channels/"


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
        ``torch.save`` of plain containers.
        """
        path = output_file(path)
        tensors = {name: t.detach().cpu().contiguous() for name, t in self._maps.items()}
        channels = {name: t.detach().cpu() for name, t in self._channels.items()}
        meta = {
            "format": _FORMAT,
            "version": _VERSION,
            "layers": [_layer_dict(self._layers[name]) for name in self],
            "skipped": list(self._skipped),
        }
        with atomic_path(path) as tmp:
            if path.suffix == ".safetensors":
                _safetensors().save_file(
                    {**tensors, **{_CHANNELS + k: v for k, v in channels.items()}},
                    str(tmp),
                    metadata={"fxmaps": json.dumps(meta)},
                )
            else:
                torch.save({**meta, "maps": tensors, "channels": channels}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> FeatureMaps:
        """Read maps written by :meth:`save`; never executes pickled code."""
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"no feature-maps file at {str(path)!r}", argument="path", got=str(path)
            )
        try:
            if path.suffix == ".safetensors":
                meta, maps, channels = _read_safetensors(path)
            else:
                content = torch.load(path, map_location="cpu", weights_only=True)
                meta, maps, channels = content, content["maps"], content["channels"]
            if meta.get("format") != _FORMAT:
                raise KeyError("format")
        except FxmapsError:
            raise
        except Exception as err:
            raise InputError(
                f"{str(path)!r} is not a feature-maps file written by fxmaps: {err}",
                argument="path",
                got=str(path),
            ) from err
        layers = {entry["name"]: _layer_from_dict(entry) for entry in meta["layers"]}
        ordered = {entry["name"]: maps[entry["name"]] for entry in meta["layers"]}
        return cls(ordered, layers, channels=channels, skipped=meta.get("skipped", ()))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}: {format_shape(tuple(t.shape))}" for name, t in list(self._maps.items())[:6]
        )
        more = f", ... ({len(self) - 6} more)" if len(self) > 6 else ""
        return f"<FeatureMaps {len(self)} maps, {self.nbytes / 2**20:.1f} MiB: {shown}{more}>"


def _layer_dict(layer: Layer) -> dict[str, Any]:
    return {
        "name": layer.name,
        "kind": layer.kind.value,
        "target": layer.target,
        "out_shape": layer.out_shape,
        "params": layer.params,
        "block": layer.block,
        "opaque": layer.opaque,
        "layout": layer.layout.value,
        "returned_by": [list(key) for key in layer.returned_by],
        "alias": layer.alias,
    }


def _layer_from_dict(entry: Mapping[str, Any]) -> Layer:
    return Layer(
        name=entry["name"],
        kind=Kind(entry["kind"]),
        target=entry["target"],
        module=None,
        out_shape=_tuples(entry["out_shape"]),
        params=int(entry["params"]),
        block=entry["block"],
        opaque=bool(entry["opaque"]),
        layout=Layout(entry["layout"]),
        returned_by=tuple((str(p), int(c)) for p, c in entry.get("returned_by", ())),
        alias=entry.get("alias"),
    )


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _read_safetensors(
    path: Path,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    module = _safetensors()
    with module.safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {})["fxmaps"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    channels = {k.removeprefix(_CHANNELS): v for k, v in tensors.items() if k.startswith(_CHANNELS)}
    maps = {k: v for k, v in tensors.items() if not k.startswith(_CHANNELS)}
    return meta, maps, channels


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError as err:
        raise InputError(
            "saving .safetensors files needs the safetensors package: pip install safetensors"
        ) from err
    return safetensors.torch
