"""fxmaps: see what a neural network sees.

Trace any PyTorch model with torch.fx, classify its graph (convs, downsample
convs, residual and sequential blocks, ...), and look at the result.
"""

# ruff: noqa: E402 (one call runs before the imports, see below)

__version__ = "0.1.0"

# Before anything heavy (torch): in the fxmaps command, Ctrl-C while it starts is one line.
from fxmaps.cli.signals import quiet_start_up

quiet_start_up()

from fxmaps.attribute import CamResult, cam
from fxmaps.bench import ExtractionBenchmark, benchmark_extraction
from fxmaps.classify import (
    Block,
    BlockKind,
    Kind,
    Layout,
    Residual,
    SkipKind,
    register_function_kind,
    register_module_kind,
    reset_kind_rules,
)
from fxmaps.errors import (
    DeviceError,
    FxmapsError,
    FxmapsWarning,
    GraphvizNotFoundError,
    ImageError,
    InputError,
    MemoryLimitError,
    ModelLoadError,
    NodeNotFoundError,
    OptionError,
    OutputError,
    ShapeError,
    TraceError,
)
from fxmaps.extract import FeatureExtractor, FeatureMaps, extract
from fxmaps.graph import Layer, ModelGraph, Module, analyze, format_shape
from fxmaps.render.cam import plot_cam
from fxmaps.render.filters import plot_filters
from fxmaps.render.graph import render_graph, save_graph
from fxmaps.render.maps import mosaic, plot_feature_maps, plot_layers
from fxmaps.render.save import save_figure
from fxmaps.render.stats import plot_channel_stats, plot_top_images
from fxmaps.report import report
from fxmaps.sources import load_image
from fxmaps.stats import ChannelStats, LayerStats, channel_stats
from fxmaps.trace import EagerRegion, Inputs, OpaqueModule

__all__ = [
    "Block",
    "BlockKind",
    "CamResult",
    "ChannelStats",
    "DeviceError",
    "EagerRegion",
    "ExtractionBenchmark",
    "FeatureExtractor",
    "FeatureMaps",
    "FxmapsError",
    "FxmapsWarning",
    "GraphvizNotFoundError",
    "ImageError",
    "InputError",
    "Inputs",
    "Kind",
    "Layer",
    "LayerStats",
    "Layout",
    "MemoryLimitError",
    "ModelGraph",
    "ModelLoadError",
    "Module",
    "NodeNotFoundError",
    "OpaqueModule",
    "OptionError",
    "OutputError",
    "Residual",
    "ShapeError",
    "SkipKind",
    "TraceError",
    "__version__",
    "analyze",
    "benchmark_extraction",
    "cam",
    "channel_stats",
    "extract",
    "format_shape",
    "load_image",
    "mosaic",
    "plot_cam",
    "plot_channel_stats",
    "plot_feature_maps",
    "plot_filters",
    "plot_layers",
    "plot_top_images",
    "register_function_kind",
    "register_module_kind",
    "render_graph",
    "report",
    "reset_kind_rules",
    "save_figure",
    "save_graph",
]
