"""Numbers from the user checked up front: finite, and within the range the option can use.

Why one helper: `--beta -5`, `--padding-mm -100`, `--jitter-mm inf` or `learning_rate: Infinity` used to
fail deep inside (IndexError, OverflowError) or, worse, train to NaN and report success. Every numeric CLI
option takes its type from :func:`number_option`, so argparse answers ``argument --beta: must be > 0, got -5``
(exit status 2) before anything is read; the range is also the text of the docs' table (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def bounds_text(minimum: float | None, maximum: float | None, *, exclusive_minimum: bool = False) -> str:
    """ "≥ 0 and ≤ 500", "> 0", "" (no bounds)."""
    lo = "" if minimum is None else f"{'>' if exclusive_minimum else '≥'} {_number(minimum)}"
    hi = "" if maximum is None else f"≤ {_number(maximum)}"
    return f"{lo}{' and ' if lo and hi else ''}{hi}"


def number_option(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    integer: bool = False,
    exclusive_minimum: bool = False,
) -> Callable[[str], float | int]:
    """An argparse ``type=`` that accepts only finite numbers in the range (whole numbers if ``integer``)."""
    bounds = bounds_text(minimum, maximum, exclusive_minimum=exclusive_minimum)
    text = f"{'a whole number' if integer else 'a number'} {bounds}".strip()

    def parse(value: str) -> float | int:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {text}, got {value!r}") from None
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
        if integer:
            if number != int(number):
                raise argparse.ArgumentTypeError(f"expected a whole number, got {value}")
            number = int(number)
        low_fail = minimum is not None and (number <= minimum if exclusive_minimum else number < minimum)
        if low_fail or (maximum is not None and number > maximum):
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return number

    parse.range_text = text  # type: ignore[attr-defined]  # read by the docs' table test
    parse.__name__ = "integer" if integer else "number"
    return parse
