"""Benchmarks: the harness every benchmark uses, and extraction timed against a forward pass."""

from fxmaps.bench.extraction import ExtractionBenchmark, benchmark_extraction
from fxmaps.bench.harness import Environment, Timing, record_environment, run_interleaved

__all__ = [
    "Environment",
    "ExtractionBenchmark",
    "Timing",
    "benchmark_extraction",
    "record_environment",
    "run_interleaved",
]
