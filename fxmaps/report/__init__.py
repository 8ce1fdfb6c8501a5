"""The report: analysis, extraction and drawings assembled into one offline HTML page."""

from fxmaps.report.page import report

__all__ = ["report"]
