"""The layer table: rows, totals and the census of a :class:`~fxmaps.ModelGraph`, as text."""

from __future__ import annotations

import html
from typing import Any

from tabulate import tabulate

from fxmaps.graph import Layer, ModelGraph, Selection, format_shape
from fxmaps.graph.model_graph import HEADLINE

__all__ = [
    "NUMERIC_HEADERS",
    "SUMMARY_HEADERS",
    "Summary",
    "summary_footer",
    "summary_rows",
    "summary_table",
]

SUMMARY_HEADERS = ("name", "kind", "type", "output shape", "params", "MACs", "block")
NUMERIC_HEADERS = ("params", "MACs")
_ALIGN = ("left", "left", "left", "left", "right", "right", "left")


class Summary(str):
    """The layer table as text (a ``str``: it prints, compares and splits as the table does)
    that a notebook shows as an HTML table with its footer lines under it."""

    __slots__ = ("_footer", "_rows")

    _rows: list[list[str]]
    _footer: list[str]

    def __new__(cls, rows: list[list[str]], footer: list[str]) -> Summary:
        table = tabulate(
            rows, headers=list(SUMMARY_HEADERS), colalign=_ALIGN, disable_numparse=True
        )
        text = super().__new__(cls, "\n".join([table, *footer]))
        text._rows, text._footer = rows, footer
        return text

    def __reduce__(self) -> tuple[type[Summary], tuple[list[list[str]], list[str]]]:
        return Summary, (self._rows, self._footer)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))  # the table itself, not a quoted string

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(name)}</th>" for name in SUMMARY_HEADERS)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td style="text-align:{_CSS_ALIGN[align]}">{html.escape(cell)}</td>'
                for cell, align in zip(row, _ALIGN, strict=True)
            )
            + "</tr>"
            for row in self._rows
        )
        notes = "".join(f"<div>{html.escape(line)}</div>" for line in self._footer)
        return (
            '<div class="fxmaps-summary"><table><thead><tr>'
            f"{head}</tr></thead><tbody>{body}</tbody></table>{notes}</div>"
        )


_CSS_ALIGN = {"left": "left", "right": "right"}


def summary_table(graph: ModelGraph, kinds: Selection | None = None) -> Summary:
    """The table of :meth:`ModelGraph.summary`, with its footer lines."""
    return Summary(summary_rows(graph, kinds), summary_footer(graph))


def summary_rows(graph: ModelGraph, kinds: Selection | None = None) -> list[list[str]]:
    """One row of strings per layer (columns: :data:`SUMMARY_HEADERS`)."""
    return [
        [
            layer.name,
            layer.kind.value + _mark(layer),
            layer.module_type,
            format_shape(layer.out_shape),
            _params_cell(graph, layer),
            f"{layer.macs:,}" if layer.macs else "",
            layer.block or "",
        ]
        for layer in graph.layers(kinds)
    ]


def _mark(layer: Layer) -> str:
    """How a layer was seen: not traced into, or run as Python."""
    if layer.opaque:
        return " (opaque)"
    return " (eager)" if layer.region is not None else ""


def _params_cell(graph: ModelGraph, layer: Layer) -> str:
    first = graph.first_use_params(layer.name)
    if layer.params and not first:
        return "shared"
    return f"{first:,}" if first else ""


def summary_footer(graph: ModelGraph) -> list[str]:
    """Totals, the census, and what the traced graph does not show."""
    info = graph.info()
    lines = [
        f"Total params: {graph.total_params:,} (the model has {graph.model_params:,})",
        *_compute_lines(graph),
        "Layers: "
        + ", ".join(f"{k} {v}" for k, v in info.items() if k != "nodes" and (v or k in HEADLINE)),
    ]
    if graph.model_params != graph.total_params:
        lines.append(
            f"{graph.model_params - graph.total_params:,} parameters are not used by the traced "
            f"{'training' if graph.train else 'eval'}-mode graph"
        )
    if graph.opaque:
        lines.append(f"Opaque (not traced into): {_listed([o.name for o in graph.opaque])}")
    if graph.eager:
        calls = [f"{region.name} ({region.module_type})" for region in graph.eager]
        lines.append(f"Eager (ran as Python): {_listed(calls)}")
    return lines


def _compute_lines(graph: ModelGraph) -> list[str]:
    """Total multiply-accumulates and peak activation memory, where shapes are known."""
    if graph.input_shapes is None:
        return []
    macs = graph.macs()
    batch = _batch(graph)
    return [
        f"Total MACs: {macs:,} ({_scaled(macs, 1000, ('', ' K', ' M', ' G', ' T'))}"
        f"{batch}; convs, linears, matmuls, attention)",
        f"Peak activation memory: {_scaled(graph.activation_bytes(), 1024, _BYTES)}{batch}",
    ]


_BYTES = (" B", " KiB", " MiB", " GiB", " TiB")


def _batch(graph: ModelGraph) -> str:
    shapes = graph.input_shapes or ()
    first = shapes[0] if shapes else None
    if isinstance(first, tuple) and first and isinstance(first[0], int):
        return f" for a batch of {first[0]}"
    return " for the example input"


def _scaled(value: int, step: int, units: tuple[str, ...]) -> str:
    """``1814073344`` -> ``1.81 G`` (with ``step`` 1000)."""
    scaled, unit = float(value), units[0]
    for unit in units:
        if scaled < step or unit == units[-1]:
            break
        scaled /= step
    return f"{value}{units[0]}" if unit == units[0] else f"{scaled:.2f}{unit}"


def _listed(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
