"""The Pareto front of (cost, accuracy) pairs: the points no other beats on both a lower cost and a higher
accuracy. One definition for the deploy search, its report and the benchmarks, over plain numbers so that
each caller keeps its own records (candidates, table rows)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the front, by increasing cost: a point is kept when its accuracy is strictly higher than that of
    every point before it in (cost, then accuracy from the highest) order.

    Ties: of points with the same cost and accuracy only the first (in input order) is kept, and a point as
    accurate as a cheaper one is not on the front. A NaN cost sorts after every number and a NaN accuracy is never
    on the front (as pandas sorts them), so the order is defined for every input."""
    if len(costs) != len(accuracies):
        raise ValueError(
            f"pareto_front: {len(costs)} costs but {len(accuracies)} accuracies; give one of each per point"
        )

    def order(index: int) -> tuple:
        cost, accuracy = float(costs[index]), float(accuracies[index])
        return (
            math.isnan(cost),
            0.0 if math.isnan(cost) else cost,
            math.isnan(accuracy),
            0.0 if math.isnan(accuracy) else -accuracy,
            index,
        )

    front, best = [], -math.inf
    for index in sorted(range(len(costs)), key=order):
        if float(accuracies[index]) > best:
            front.append(index)
            best = float(accuracies[index])
    return front
