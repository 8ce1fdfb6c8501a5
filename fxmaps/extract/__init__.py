"""Extraction: the maps of any chosen nodes, exact, in one forward pass."""

from fxmaps.extract.maps import FeatureMaps

from fxmaps.extract.extractor import FeatureExtractor, extract  # isort: skip

__all__ = ["FeatureExtractor", "FeatureMaps", "extract"]
