"""Benchmarks: extraction timed against a plain forward pass and forward hooks."""

from fxmaps.bench.extraction import ExtractionBenchmark, Timing, benchmark_extraction

__all__ = ["ExtractionBenchmark", "Timing", "benchmark_extraction"]
