"""Percentiles, the way the report shows them."""

import math
from collections.abc import Sequence

PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between the closest ranks; `values` must be sorted and not empty."""
    if len(values) == 1:
        return values[0]
    rank = (len(values) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p90, p99 and max in milliseconds, with the count; None where there is nothing to measure."""
    ordered = sorted(seconds)
    if not ordered:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    result: dict[str, float | int | None] = {"n": len(ordered)}
    for p in PERCENTILES:
        result[f"p{p}"] = round(percentile(ordered, p) * 1000, 2)
    result["max"] = round(ordered[-1] * 1000, 2)
    return result
