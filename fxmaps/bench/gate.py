"""The regression gate of ``fxmaps bench --baseline``: this run's ratio against a baseline's.

Ratios, not seconds, are compared (fxmaps's time over the plain forward's, paired by
round), so a baseline made on another machine still means something. A run regresses
when its ratio exceeds the baseline's by more than the tolerance, relative to the
baseline's ratio: ``current > baseline * (1 + tolerance)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fxmaps.errors import OptionError

__all__ = ["REGRESSION_EXIT_CODE", "Verdict", "compare_ratios", "parse_tolerance"]

REGRESSION_EXIT_CODE = 3
"""``fxmaps bench``'s exit code when the gate finds a regression (1 is a bug, 2 bad input)."""

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")
_FRACTION = re.compile(r"^\s*(0(\.\d*)?|\.\d+)\s*$")


@dataclass(frozen=True)
class Verdict:
    """This run's ratio against the baseline's, and whether it regressed.

    Example:
        >>> verdict = compare_ratios(1.32, 1.10, tolerance=0.10)
        >>> verdict.regressed, round(verdict.change, 3)
        (True, 0.2)
        >>> print(verdict.line())
        regression: fxmaps / forward 1.320x, baseline 1.100x: +20.0% (tolerance 10.0%)
    """

    current: float
    baseline: float
    tolerance: float

    @property
    def change(self) -> float:
        """This ratio over the baseline's, less one: +0.2 is 20% slower relative to forward."""
        return self.current / self.baseline - 1.0

    @property
    def regressed(self) -> bool:
        return self.change > self.tolerance

    def line(self) -> str:
        """One line that says what was compared, by how much it moved, and the verdict."""
        head = "regression" if self.regressed else "ok"
        return (
            f"{head}: fxmaps / forward {self.current:.3f}x, baseline {self.baseline:.3f}x: "
            f"{self.change * 100:+.1f}% (tolerance {self.tolerance * 100:.1f}%)"
        )


def compare_ratios(current: float, baseline: float, *, tolerance: float) -> Verdict:
    """This run's ratio against the baseline's (see the module docstring).

    Raises:
        OptionError: A ratio that is not positive, or a negative tolerance.
    """
    if not (current > 0 and baseline > 0) or tolerance < 0:
        raise OptionError(
            f"compare_ratios needs positive ratios and a tolerance >= 0, got {current!r}, "
            f"{baseline!r} and {tolerance!r}",
            option="tolerance",
            value=tolerance,
        )
    return Verdict(current, baseline, tolerance)


def parse_tolerance(text: str) -> float:
    """A tolerance as a fraction: ``"10%"`` or ``"0.1"`` both give 0.1.

    A bare number of 1 or more is refused (``10`` could mean 10% or 1000%): above 100%,
    write a percentage.

    Example:
        >>> parse_tolerance("10%"), parse_tolerance("0.25"), parse_tolerance("2.5%")
        (0.1, 0.25, 0.025)
    """
    percent = _PERCENT.match(text)
    if percent:
        return float(percent.group(1)) / 100
    if _FRACTION.match(text):
        return float(text)
    raise OptionError(
        f"--tolerance {text!r}: give a percentage such as 10% or a fraction such as 0.1",
        option="--tolerance",
        value=text,
        valid=("10%", "0.1"),
    )
