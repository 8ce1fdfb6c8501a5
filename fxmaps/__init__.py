"""fxmaps: see what a neural network sees.

Trace any PyTorch model with torch.fx, classify its graph (convs, downsample
convs, residual and sequential blocks, ...), and look at the result.
"""

from fxmaps.analyze import analyze
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
    ModelLoadError,
    NodeNotFoundError,
    OptionError,
    ShapeError,
    TraceError,
)
from fxmaps.extract import FeatureExtractor, extract
from fxmaps.graph import Layer, ModelGraph, format_shape
from fxmaps.images import load_image
from fxmaps.maps import FeatureMaps
from fxmaps.tracing import OpaqueModule

__version__ = "0.1.0"

__all__ = [
    "Block",
    "BlockKind",
    "DeviceError",
    "ExtractionBenchmark",
    "FeatureExtractor",
    "FeatureMaps",
    "FxmapsError",
    "FxmapsWarning",
    "GraphvizNotFoundError",
    "ImageError",
    "InputError",
    "Kind",
    "Layer",
    "Layout",
    "ModelGraph",
    "ModelLoadError",
    "NodeNotFoundError",
    "OpaqueModule",
    "OptionError",
    "Residual",
    "ShapeError",
    "SkipKind",
    "TraceError",
    "__version__",
    "analyze",
    "benchmark_extraction",
    "extract",
    "format_shape",
    "load_image",
    "register_function_kind",
    "register_module_kind",
    "reset_kind_rules",
]
